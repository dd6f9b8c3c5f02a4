// Command handlers in per-job mode (queue/handlers.h): one process group per
// job, the payload on stdin, the result on stdout.
//
// Design: the payload reaches stdin through a memfd written before the
// spawn, not a pipe: a command that exits without reading its input would
// otherwise raise SIGPIPE in the worker. A run owns its process group, its
// stdout and stderr pipes and one timer in one heap object. The timer is the
// handler's timeout, then the kill grace (SIGTERM to the group, SIGKILL when
// it ends), then, once the leader has exited, the time left for the pipes to
// reach EOF: a process that left the group (setsid) could keep them open for
// ever, so past that time they are closed on our side. The job completes
// once the leader has exited and both pipes are closed, so the result and
// the error text are whole and the slot frees only when the work has
// stopped; the run frees itself after every handle has closed. Stdout past
// kMaxResultBytes is read and counted but not kept, so a chatty command never
// blocks on a full pipe nor grows the worker's memory.
#include <fmt/format.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <string_view>

#include "common/log.h"
#include "common/nesting.h"
#include "common/uv_handle.h"
#include "queue/handlers.h"
#include "queue/process_group.h"

namespace clusterd::queue {
namespace {

constexpr size_t kMaxStderr = 2048;

// A successful command's result from its stdout: JSON when the whole output
// parses as JSON, else the text (without trailing newlines); none when empty.
Outcome resultFromStdout(const std::string& text, size_t total) {
  if (total > kMaxResultBytes) return withResult(oversizedResult(total));
  // Output nested deeper than the limit is kept as text: converting it to
  // msgpack would recurse once per level.
  if (auto parsed = parseJsonLimited(text)) return withResult(*parsed);
  std::string_view trimmed = text;
  while (!trimmed.empty() && (trimmed.back() == '\n' || trimmed.back() == '\r'))
    trimmed.remove_suffix(1);
  if (trimmed.empty()) return success();
  return withResult(nlohmann::json(std::string(trimmed)));
}

std::string trimmedTail(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return text;
}

void allocRunChunk(uv_handle_t*, size_t, uv_buf_t* b) {
  static thread_local char chunk[16384];
  *b = uv_buf_init(chunk, sizeof chunk);
}

struct CommandRun {
  config::HandlerSpec spec;
  std::unique_ptr<ProcessGroup> group;
  uv_pipe_t out{};
  uv_pipe_t err{};
  uv_timer_t timer{};
  std::string stdout_text;  // the first kMaxResultBytes
  size_t stdout_total = 0;  // every byte read
  std::string stderr_text;  // the last kMaxStderr bytes
  std::string label;        // "<name> job <queue>:<id>", for the log
  std::string stop_reason;  // why it was stopped; empty when it ended by itself
  Done done;
  int open_handles = 3;  // out, err, timer
  bool exited = false, err_eof = false, out_eof = false, stopping = false, completed = false;
  int64_t exit_status = 0;
  int term_signal = 0;
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);

  ~CommandRun() { *alive = false; }

  void closeOne(uv_handle_t* h) {
    if (uv_is_closing(h)) return;
    uv_close(h, [](uv_handle_t* h) {
      auto* self = static_cast<CommandRun*>(h->data);
      if (--self->open_handles == 0) delete self;
    });
  }
  void closePipe(uv_pipe_t* p, bool& eof) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(p));
    eof = true;
  }

  void stop(StopHow how, std::string reason) {
    if (completed) return;
    if (stop_reason.empty()) stop_reason = std::move(reason);
    if (exited) {  // only the pipes are left
      if (how == StopHow::kNow) endPipes();
      return;
    }
    if (how == StopHow::kNow || spec.kill_grace.count() == 0) {
      group->signal(SIGKILL);
      return;
    }
    if (stopping) return;
    stopping = true;
    group->signal(SIGTERM);
    uv_timer_start(
        &timer, [](uv_timer_t* t) { static_cast<CommandRun*>(t->data)->group->signal(SIGKILL); },
        static_cast<uint64_t>(spec.kill_grace.count()), 0);
  }

  void onExit(int64_t status, int sig) {
    exited = true;
    exit_status = status;
    term_signal = sig;
    // The group is gone (the rest of it was SIGKILLed); the pipes get a
    // grace to drain, then close on our side.
    uv_timer_start(
        &timer, [](uv_timer_t* t) { static_cast<CommandRun*>(t->data)->endPipes(); },
        static_cast<uint64_t>(std::max<int64_t>(spec.kill_grace.count(), 100)), 0);
    maybeComplete();
  }
  void endPipes() {
    if (!out_eof) closePipe(&out, out_eof);
    if (!err_eof) closePipe(&err, err_eof);
    maybeComplete();
  }

  void maybeComplete() {
    if (completed || !exited || !err_eof || !out_eof) return;
    completed = true;
    Outcome r = success();
    if (!stop_reason.empty()) {
      r = Error{stop_reason};
    } else if (exit_status != 0 || term_signal != 0) {
      std::string tail = trimmedTail(stderr_text);
      std::string how = term_signal ? fmt::format("killed by signal {}", term_signal)
                                    : fmt::format("exited with status {}", exit_status);
      std::string text = tail.empty() ? how : fmt::format("{}: {}", how, tail);
      // EX_DATAERR (sysexits.h): the input was wrong; retrying cannot help.
      r = term_signal == 0 && exit_status == kPermanentExit ? permanentFailure(text)
                                                            : Error{std::move(text)};
    } else {
      r = resultFromStdout(stdout_text, stdout_total);
      // Stdout is the result, so stderr is where a successful command logs;
      // it reaches the worker's log (and so the master's log files).
      std::string note = trimmedTail(stderr_text);
      if (!note.empty()) log::info("handler", "{} succeeded; its stderr: {}", label, note);
    }
    auto d = std::move(done);
    group.reset();
    closeOne(reinterpret_cast<uv_handle_t*>(&timer));
    closeOne(reinterpret_cast<uv_handle_t*>(&out));
    closeOne(reinterpret_cast<uv_handle_t*>(&err));
    d(std::move(r));
  }
};

// A pipe whose read end this process keeps (close-on-exec) and whose write
// end becomes one of the child's stdio.
Result<void> makePipe(UniqueFd& read_end, UniqueFd& write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Error{fmt::format("pipe2(): {}", std::strerror(errno))};
  read_end.reset(fds[0]);
  write_end.reset(fds[1]);
  return success();
}

}  // namespace

Stop runCommand(uv_loop_t* loop, const config::HandlerSpec& spec, const Job& job, Done done) {
  if (spec.command.empty()) {
    done(Error{fmt::format("handler '{}' has an empty command", spec.job_name)});
    return nullptr;
  }
  std::string input = job.payloadJson().dump() + "\n";
  UniqueFd in(memfd_create("clusterd-job-payload", MFD_CLOEXEC));
  if (!in || ::write(in.get(), input.data(), input.size()) != static_cast<ssize_t>(input.size()) ||
      ::lseek(in.get(), 0, SEEK_SET) != 0) {
    done(Error{
        fmt::format("cannot pass the payload to '{}': {}", spec.command[0], std::strerror(errno))});
    return nullptr;
  }
  UniqueFd out_r, out_w, err_r, err_w;
  if (auto p = makePipe(out_r, out_w); !p) return done(p.error()), nullptr;
  if (auto p = makePipe(err_r, err_w); !p) return done(p.error()), nullptr;
  auto env = childEnvironment({"CLUSTERD_QUEUE=" + job.queue, "CLUSTERD_JOB_ID=" + job.id,
                               "CLUSTERD_JOB_NAME=" + job.name,
                               fmt::format("CLUSTERD_JOB_ATTEMPT={}", job.attempt + 1)});

  auto* run = new CommandRun;
  run->spec = spec;
  run->done = std::move(done);
  run->label = fmt::format("{} job {}:{}", job.name, job.queue, job.id);
  uv_pipe_init(loop, &run->out, 0);
  uv_pipe_init(loop, &run->err, 0);
  uv_timer_init(loop, &run->timer);
  run->out.data = run->err.data = run->timer.data = run;
  auto group = ProcessGroup::spawn(loop, spec.command, env, {in.get(), out_w.get(), err_w.get()},
                                   [run](int64_t status, int sig) { run->onExit(status, sig); });
  if (!group) {
    auto d = std::move(run->done);
    run->completed = true;
    run->closeOne(reinterpret_cast<uv_handle_t*>(&run->timer));
    run->closeOne(reinterpret_cast<uv_handle_t*>(&run->out));
    run->closeOne(reinterpret_cast<uv_handle_t*>(&run->err));
    d(Error{fmt::format("cannot run handler command '{}': {}", spec.command[0],
                        group.error().message)});
    return nullptr;
  }
  run->group = std::move(*group);
  uv_pipe_open(&run->out, out_r.release());
  uv_pipe_open(&run->err, err_r.release());
  uv_read_start(reinterpret_cast<uv_stream_t*>(&run->out), allocRunChunk,
                [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
                  auto* run = static_cast<CommandRun*>(s->data);
                  if (n > 0) {
                    size_t got = static_cast<size_t>(n);
                    run->stdout_total += got;
                    if (run->stdout_text.size() < kMaxResultBytes)
                      run->stdout_text.append(
                          b->base, std::min(got, kMaxResultBytes - run->stdout_text.size()));
                    return;
                  }
                  if (n < 0) {
                    run->closePipe(&run->out, run->out_eof);
                    run->maybeComplete();
                  }
                });
  uv_read_start(reinterpret_cast<uv_stream_t*>(&run->err), allocRunChunk,
                [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
                  auto* run = static_cast<CommandRun*>(s->data);
                  if (n > 0) {
                    run->stderr_text.append(b->base, static_cast<size_t>(n));
                    if (run->stderr_text.size() > kMaxStderr)
                      run->stderr_text.erase(0, run->stderr_text.size() - kMaxStderr);
                    return;
                  }
                  if (n < 0) {
                    run->closePipe(&run->err, run->err_eof);
                    run->maybeComplete();
                  }
                });
  if (spec.timeout.count() > 0) {
    uv_timer_start(
        &run->timer,
        [](uv_timer_t* t) {
          auto* run = static_cast<CommandRun*>(t->data);
          run->stop(StopHow::kGraceful,
                    fmt::format("timed out after {} ms (killed)", run->spec.timeout.count()));
        },
        static_cast<uint64_t>(spec.timeout.count()), 0);
  }
  std::weak_ptr<bool> alive = run->alive;
  return [run, alive](StopHow how) {
    if (!alive.expired()) run->stop(how, "stopped");
  };
}

}  // namespace clusterd::queue
