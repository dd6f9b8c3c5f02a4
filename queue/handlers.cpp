// Implementation of queue/handlers.h.
//
// Design: the payload reaches stdin through a memfd written before the
// spawn, not a pipe: a command that exits without reading its input would
// otherwise raise SIGPIPE in the worker. A command run owns its process, its
// stdout and stderr pipes and a timeout timer in one heap object; it completes
// the job once the process has exited and both pipes hit EOF (whichever comes
// last), so the result and the error text are complete, then frees itself
// after every handle has closed. Stdout past kMaxResultBytes is read and
// counted but not kept, so a chatty command never blocks on a full pipe nor
// grows the worker's memory.
#include "queue/handlers.h"

#include <fmt/format.h>

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <string_view>

#include "common/log.h"
#include "common/nesting.h"
#include "common/uv_handle.h"

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
  while (!trimmed.empty() && (trimmed.back() == '\n' || trimmed.back() == '\r')) trimmed.remove_suffix(1);
  if (trimmed.empty()) return success();
  return withResult(nlohmann::json(std::string(trimmed)));
}

struct CommandRun {
  uv_process_t proc{};
  uv_pipe_t out{};
  uv_pipe_t err{};
  uv_timer_t timer{};
  std::string stdout_text;   // the first kMaxResultBytes
  size_t stdout_total = 0;   // every byte read
  std::string stderr_text;   // the last kMaxStderr bytes
  std::string label;         // "<name> job <queue>:<id>", for the log
  Done done;
  int open_handles = 0;
  bool exited = false, eof = false, out_eof = false, timed_out = false, completed = false;
  int64_t exit_status = 0;
  int term_signal = 0;
  int64_t timeout_ms = 0;

  void closeOne(uv_handle_t* h) {
    if (uv_is_closing(h)) return;
    uv_close(h, [](uv_handle_t* h) {
      auto* self = static_cast<CommandRun*>(h->data);
      if (--self->open_handles == 0) delete self;
    });
  }
  void maybeComplete() {
    if (completed || !exited || !eof || !out_eof) return;
    completed = true;
    Outcome r = success();
    if (timed_out) {
      r = Error{fmt::format("timed out after {} ms (killed)", timeout_ms)};
    } else if (exit_status != 0 || term_signal != 0) {
      std::string tail = stderr_text;
      while (!tail.empty() && (tail.back() == '\n' || tail.back() == '\r')) tail.pop_back();
      std::string how = term_signal ? fmt::format("killed by signal {}", term_signal)
                                    : fmt::format("exited with status {}", exit_status);
      std::string text = tail.empty() ? how : fmt::format("{}: {}", how, tail);
      // EX_DATAERR (sysexits.h): the input was wrong; retrying cannot help.
      r = term_signal == 0 && exit_status == kPermanentExit ? permanentFailure(text) : Error{std::move(text)};
    } else {
      r = resultFromStdout(stdout_text, stdout_total);
      // Stdout is the result, so stderr is where a successful command logs;
      // it reaches the worker's log (and so the master's log files).
      std::string_view note = stderr_text;
      while (!note.empty() && (note.back() == '\n' || note.back() == '\r')) note.remove_suffix(1);
      if (!note.empty()) log::info("handler", "{} succeeded; its stderr: {}", label, note);
    }
    auto d = std::move(done);
    closeOne(reinterpret_cast<uv_handle_t*>(&timer));
    closeOne(reinterpret_cast<uv_handle_t*>(&proc));
    closeOne(reinterpret_cast<uv_handle_t*>(&out));
    closeOne(reinterpret_cast<uv_handle_t*>(&err));
    d(std::move(r));
  }
};

void allocChunk(uv_handle_t*, size_t, uv_buf_t* b) {
  static thread_local char chunk[16384];
  *b = uv_buf_init(chunk, sizeof chunk);
}

}  // namespace

void runCommand(uv_loop_t* loop, const config::HandlerSpec& spec, const Job& job, Done done) {
  if (spec.command.empty()) return done(Error{fmt::format("handler '{}' has an empty command", spec.job_name)});
  std::string input = job.payloadJson().dump() + "\n";
  UniqueFd in(memfd_create("clusterd-job-payload", MFD_CLOEXEC));
  if (!in || ::write(in.get(), input.data(), input.size()) != static_cast<ssize_t>(input.size()) ||
      ::lseek(in.get(), 0, SEEK_SET) != 0)
    return done(Error{fmt::format("cannot pass the payload to '{}': {}", spec.command[0], std::strerror(errno))});
  auto* run = new CommandRun;
  run->done = std::move(done);
  run->timeout_ms = spec.timeout.count();
  run->label = fmt::format("{} job {}:{}", job.name, job.queue, job.id);
  uv_pipe_init(loop, &run->out, 0);
  uv_pipe_init(loop, &run->err, 0);
  uv_timer_init(loop, &run->timer);
  run->out.data = run->err.data = run->timer.data = run->proc.data = run;
  run->open_handles = 3;  // out, err, timer; proc once spawned

  std::vector<std::string> env_store;
  for (char** e = environ; *e; ++e) env_store.emplace_back(*e);
  env_store.push_back("CLUSTERD_QUEUE=" + job.queue);
  env_store.push_back("CLUSTERD_JOB_ID=" + job.id);
  env_store.push_back("CLUSTERD_JOB_NAME=" + job.name);
  env_store.push_back(fmt::format("CLUSTERD_JOB_ATTEMPT={}", job.attempt + 1));
  std::vector<char*> envp;
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_store = spec.command;
  std::vector<char*> argv;
  for (auto& a : argv_store) argv.push_back(a.data());
  argv.push_back(nullptr);

  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_INHERIT_FD;
  stdio[0].data.fd = in.get();
  stdio[1].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[1].data.stream = reinterpret_cast<uv_stream_t*>(&run->out);  // the job's result
  stdio[2].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[2].data.stream = reinterpret_cast<uv_stream_t*>(&run->err);
  uv_process_options_t opts{};
  opts.file = argv[0];
  opts.args = argv.data();
  opts.env = envp.data();
  opts.stdio = stdio;
  opts.stdio_count = 3;
  opts.exit_cb = [](uv_process_t* p, int64_t status, int sig) {
    auto* run = static_cast<CommandRun*>(p->data);
    run->exited = true;
    run->exit_status = status;
    run->term_signal = run->timed_out ? 0 : sig;
    uv_timer_stop(&run->timer);
    run->maybeComplete();
  };
  int rc = uv_spawn(loop, &run->proc, &opts);
  if (rc != 0) {
    auto d = std::move(run->done);
    run->completed = true;
    run->closeOne(reinterpret_cast<uv_handle_t*>(&run->timer));
    run->closeOne(reinterpret_cast<uv_handle_t*>(&run->out));
    run->closeOne(reinterpret_cast<uv_handle_t*>(&run->err));
    return d(Error{fmt::format("cannot run handler command '{}': {}", spec.command[0], uv_strerror(rc))});
  }
  ++run->open_handles;
  uv_read_start(reinterpret_cast<uv_stream_t*>(&run->out), allocChunk, [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
    auto* run = static_cast<CommandRun*>(s->data);
    if (n > 0) {
      size_t got = static_cast<size_t>(n);
      run->stdout_total += got;
      if (run->stdout_text.size() < kMaxResultBytes)
        run->stdout_text.append(b->base, std::min(got, kMaxResultBytes - run->stdout_text.size()));
      return;
    }
    if (n < 0) {
      uv_read_stop(s);
      run->out_eof = true;
      run->maybeComplete();
    }
  });
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(&run->err), allocChunk,
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
        auto* run = static_cast<CommandRun*>(s->data);
        if (n > 0) {
          run->stderr_text.append(b->base, static_cast<size_t>(n));
          if (run->stderr_text.size() > kMaxStderr) run->stderr_text.erase(0, run->stderr_text.size() - kMaxStderr);
          return;
        }
        if (n < 0) {
          uv_read_stop(s);
          run->eof = true;
          run->maybeComplete();
        }
      });
  if (run->timeout_ms > 0) {
    uv_timer_start(
        &run->timer,
        [](uv_timer_t* t) {
          auto* run = static_cast<CommandRun*>(t->data);
          run->timed_out = true;
          uv_process_kill(&run->proc, SIGKILL);
        },
        static_cast<uint64_t>(run->timeout_ms), 0);
  }
}

void registerBuiltinHandlers(Consumer& consumer, uv_loop_t* loop) {
  consumer.handle("noop", [](const Job&, Done done) { done(success()); });
  consumer.handle("sleep", [loop](const Job& job, Done done) {
    auto p = job.payloadJson();
    int64_t ms = p.is_object() && p.contains("ms") && p["ms"].is_number() ? p["ms"].get<int64_t>() : 0;
    if (ms <= 0) return done(success());
    struct Sleep {
      uv_timer_t timer{};
      Done done;
    };
    auto* s = new Sleep{{}, std::move(done)};
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    uv_timer_start(
        &s->timer,
        [](uv_timer_t* t) {
          auto* s = static_cast<Sleep*>(t->data);
          auto d = std::move(s->done);
          uv_close(reinterpret_cast<uv_handle_t*>(t), [](uv_handle_t* h) { delete static_cast<Sleep*>(h->data); });
          d(success());
        },
        static_cast<uint64_t>(ms), 0);
  });
}

void registerCommandHandlers(Consumer& consumer, uv_loop_t* loop, const std::vector<config::HandlerSpec>& specs) {
  for (const auto& spec : specs) {
    consumer.handle(spec.job_name, [loop, spec](const Job& job, Done done) { runCommand(loop, spec, job, std::move(done)); });
  }
}

}  // namespace clusterd::queue
