// Implementation of queue/persistent.h.
//
// Design: a Child owns its process group, its stdin, stdout and stderr pipes
// and one timer (the job's timeout, then the kill grace, then the time left
// for the pipes to close once the leader has exited). It frees itself after
// every handle has closed, which happens only once its group is gone; the
// pool only lists it, and a child outliving its pool just finishes dying.
#include "queue/persistent.h"

#include <fmt/format.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <optional>

#include "common/log.h"
#include "common/nesting.h"
#include "common/uv_handle.h"
#include "queue/process_group.h"

namespace clusterd::queue {
namespace {

constexpr size_t kMaxStderrLine = 2048;

void allocPipeChunk(uv_handle_t*, size_t, uv_buf_t* b) {
  static thread_local char chunk[65536];
  *b = uv_buf_init(chunk, sizeof chunk);
}

std::string excerpt(std::string_view text) {
  std::string s(text.substr(0, 120));
  if (text.size() > 120) s += "…";
  return s;
}

// The outcome an answer line reports, or nullopt when it is not an answer.
std::optional<Outcome> parseAnswer(std::string_view line) {
  auto parsed = parseJsonLimited(line);
  if (!parsed || !parsed->is_object()) return std::nullopt;
  const nlohmann::json& j = *parsed;
  if (auto e = j.find("error"); e != j.end()) {
    if (!e->is_string()) return std::nullopt;
    auto p = j.find("permanent");
    bool permanent = p != j.end() && p->is_boolean() && p->get<bool>();
    std::string why = e->get<std::string>();
    return permanent ? Outcome{permanentFailure(why)} : Outcome{Error{std::move(why)}};
  }
  if (auto r = j.find("result"); r != j.end()) return withResult(*r);
  if (j.empty()) return Outcome{success()};
  return std::nullopt;
}

struct WriteReq {
  uv_write_t req{};
  std::string data;
};

}  // namespace

struct PersistentPool::Child {
  PersistentPool* pool;  // null once the pool is gone
  config::HandlerSpec spec;
  std::unique_ptr<ProcessGroup> group;
  pid_t pid = 0;
  uv_pipe_t in{}, out{}, err{};
  uv_timer_t timer{};
  int open_handles = 4;
  std::string line;                // the answer being read
  std::string err_line;            // the stderr line being read (bounded)
  std::string err_tail;            // the last stderr lines, for a mid-job death
  Done done;                       // the job in hand; empty while idle
  std::string label;               // "<name> job <queue>:<id>"
  std::optional<Outcome> outcome;  // decided while the process is being killed
  std::string died_mid_job;        // how the process ended with a job in hand
  bool exited = false, out_eof = false, err_eof = false, dying = false, stopping = false,
       finished = false;
  int64_t exit_status = 0;
  int term_signal = 0;
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);

  ~Child() { *alive = false; }

  void detach() {
    if (!pool) return;
    auto& idle = pool->idle_;
    idle.erase(std::remove(idle.begin(), idle.end(), this), idle.end());
    pool->all_.erase(this);
    pool = nullptr;
  }
  void closeOne(uv_handle_t* h) {
    if (uv_is_closing(h)) return;
    uv_close(h, [](uv_handle_t* h) {
      auto* self = static_cast<Child*>(h->data);
      if (--self->open_handles == 0) delete self;
    });
  }

  // The process is done for: no job goes to it again. `why` is the outcome
  // of the job in hand, if any.
  void kill(StopHow how, std::optional<Outcome> why) {
    detach();
    if (done && !outcome && why) outcome = std::move(why);
    dying = true;
    closeOne(reinterpret_cast<uv_handle_t*>(&in));  // EOF: a polite process exits
    if (exited) {
      if (how == StopHow::kNow) endPipes();
      return;
    }
    if (how == StopHow::kNow || spec.kill_grace.count() == 0) return group->signal(SIGKILL);
    if (stopping) return;
    stopping = true;
    group->signal(SIGTERM);
    uv_timer_start(
        &timer, [](uv_timer_t* t) { static_cast<Child*>(t->data)->group->signal(SIGKILL); },
        static_cast<uint64_t>(spec.kill_grace.count()), 0);
  }

  void onExit(int64_t status, int sig) {
    exited = true;
    exit_status = status;
    term_signal = sig;
    if (!dying) {
      std::string how = sig ? fmt::format("killed by signal {}", sig)
                            : fmt::format("exited with status {}", status);
      if (done) {
        died_mid_job = how;  // the error is made once stderr is read to its end
      } else {
        log::warn("handler",
                  "{}: persistent process {} {} while idle; a new one starts with the next job",
                  spec.job_name, pid, how);
      }
      kill(StopHow::kGraceful, std::nullopt);
    }
    uv_timer_start(
        &timer, [](uv_timer_t* t) { static_cast<Child*>(t->data)->endPipes(); },
        static_cast<uint64_t>(std::max<int64_t>(spec.kill_grace.count(), 100)), 0);
    maybeFinish();
  }
  void endPipes() {
    if (!out_eof) uv_read_stop(reinterpret_cast<uv_stream_t*>(&out)), out_eof = true;
    if (!err_eof) uv_read_stop(reinterpret_cast<uv_stream_t*>(&err)), err_eof = true;
    maybeFinish();
  }
  // The group is gone and the pipes are closed: the job in hand ends now.
  void maybeFinish() {
    if (!exited || !out_eof || !err_eof || finished) return;
    finished = true;
    if (!err_line.empty()) logStderr();
    auto d = std::move(done);
    done = nullptr;
    if (!died_mid_job.empty() && !outcome) {
      std::string tail = err_tail;
      while (!tail.empty() && tail.back() == '\n') tail.pop_back();
      outcome = Error{fmt::format("the handler process {} mid-job{}{}", died_mid_job,
                                  tail.empty() ? "" : ": ", tail)};
    }
    Outcome o = outcome ? std::move(*outcome) : Outcome{Error{"stopped"}};
    group.reset();
    for (uv_handle_t* h :
         {reinterpret_cast<uv_handle_t*>(&timer), reinterpret_cast<uv_handle_t*>(&in),
          reinterpret_cast<uv_handle_t*>(&out), reinterpret_cast<uv_handle_t*>(&err)})
      closeOne(h);
    if (d) d(std::move(o));
  }

  void onStdout(std::string_view data) {
    while (!data.empty() && !dying) {
      size_t nl = data.find('\n');
      std::string_view part = data.substr(0, nl);
      if (line.size() + part.size() > spec.max_line) {
        return protocolError(
            fmt::format("an answer line longer than max_line ({} bytes)", spec.max_line));
      }
      line.append(part);
      if (nl == std::string_view::npos) return;
      data.remove_prefix(nl + 1);
      std::string text = std::move(line);
      line.clear();
      if (!text.empty() && text.back() == '\r') text.pop_back();
      if (!done)
        return protocolError(fmt::format("a line while no job was in hand: {}", excerpt(text)));
      auto answer = parseAnswer(text);
      if (!answer)
        return protocolError(fmt::format(
            "an answer that is not {{\"result\": …}} or {{\"error\": \"…\"}}: {}", excerpt(text)));
      uv_timer_stop(&timer);
      auto d = std::move(done);
      done = nullptr;
      if (pool) pool->idle_.push_back(this);
      d(std::move(*answer));
    }
  }
  void protocolError(std::string what) {
    std::string text =
        fmt::format("handler '{}' wrote {} on stdout (log on stderr; the process is restarted)",
                    spec.job_name, what);
    log::warn("handler", "{}", text);
    kill(StopHow::kNow, Outcome{Error{std::move(text)}});
  }

  void onStderr(std::string_view data) {
    while (!data.empty()) {
      size_t nl = data.find('\n');
      std::string_view part = data.substr(0, nl);
      err_line.append(part.substr(0, kMaxStderrLine - std::min(kMaxStderrLine, err_line.size())));
      if (nl == std::string_view::npos) return;
      data.remove_prefix(nl + 1);
      logStderr();
    }
  }
  void logStderr() {
    log::info("handler", "{} [{}]: {}", spec.job_name, pid, err_line);
    err_tail += err_line + "\n";
    if (err_tail.size() > kMaxStderrLine) err_tail.erase(0, err_tail.size() - kMaxStderrLine);
    err_line.clear();
  }

  void send(const Job& job) {
    nlohmann::json request = {{"id", job.id},
                              {"queue", job.queue},
                              {"name", job.name},
                              {"attempt", job.attempt + 1},
                              {"payload", job.payloadJson()}};
    auto* w = new WriteReq;
    w->data = request.dump() + "\n";
    w->req.data = this;
    uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
    int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&in), &buf, 1,
                      [](uv_write_t* req, int status) {
                        std::unique_ptr<WriteReq> w(reinterpret_cast<WriteReq*>(req));
                        // EPIPE: the process died; its exit fails the job. A write cancelled
                        // by closing stdin needs nothing either.
                        (void)status;
                      });
    if (rc != 0) {
      delete w;
      kill(StopHow::kNow, Outcome{Error{fmt::format("cannot write the job to handler '{}': {}",
                                                    spec.job_name, uv_strerror(rc))}});
    }
  }
};

PersistentPool::PersistentPool(uv_loop_t* loop, config::HandlerSpec spec)
    : loop_(loop), spec_(std::move(spec)) {}

PersistentPool::~PersistentPool() {
  auto all = all_;
  for (Child* c : all) c->kill(StopHow::kGraceful, Outcome{Error{"the worker is stopping"}});
}

Stop PersistentPool::run(const Job& job, Done done) {
  Child* c = nullptr;
  if (!idle_.empty()) {
    c = idle_.back();
    idle_.pop_back();
  } else {
    int fds[3][2] = {{-1, -1}, {-1, -1}, {-1, -1}};
    for (auto& p : fds) {
      if (::pipe2(p, O_CLOEXEC) != 0) {
        int e = errno;
        for (auto& q : fds)
          for (int fd : q)
            if (fd >= 0) ::close(fd);
        done(Error{fmt::format("pipe2(): {}", std::strerror(e))});
        return nullptr;
      }
    }
    UniqueFd in_r(fds[0][0]), in_w(fds[0][1]), out_r(fds[1][0]), out_w(fds[1][1]), err_r(fds[2][0]),
        err_w(fds[2][1]);
    c = new Child;
    c->pool = this;
    c->spec = spec_;
    for (uv_pipe_t* p : {&c->in, &c->out, &c->err}) {
      uv_pipe_init(loop_, p, 0);
      p->data = c;
    }
    uv_timer_init(loop_, &c->timer);
    c->timer.data = c;
    auto group = ProcessGroup::spawn(loop_, spec_.command,
                                     childEnvironment({"CLUSTERD_HANDLER_MODE=persistent"}),
                                     {in_r.get(), out_w.get(), err_w.get()},
                                     [c](int64_t status, int sig) { c->onExit(status, sig); });
    if (!group) {
      c->pool = nullptr;
      c->exited = c->out_eof = c->err_eof = c->dying = true;
      c->maybeFinish();
      done(Error{fmt::format("cannot run handler command '{}': {}", spec_.command[0],
                             group.error().message)});
      return nullptr;
    }
    c->group = std::move(*group);
    c->pid = c->group->pid();
    uv_pipe_open(&c->in, in_w.release());
    uv_pipe_open(&c->out, out_r.release());
    uv_pipe_open(&c->err, err_r.release());
    uv_read_start(reinterpret_cast<uv_stream_t*>(&c->out), allocPipeChunk,
                  [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
                    auto* c = static_cast<Child*>(s->data);
                    if (n > 0) return c->onStdout({b->base, static_cast<size_t>(n)});
                    if (n < 0) {
                      uv_read_stop(s);
                      c->out_eof = true;
                      c->maybeFinish();
                    }
                  });
    uv_read_start(reinterpret_cast<uv_stream_t*>(&c->err), allocPipeChunk,
                  [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
                    auto* c = static_cast<Child*>(s->data);
                    if (n > 0) return c->onStderr({b->base, static_cast<size_t>(n)});
                    if (n < 0) {
                      uv_read_stop(s);
                      c->err_eof = true;
                      c->maybeFinish();
                    }
                  });
    all_.insert(c);
  }
  c->done = std::move(done);
  c->outcome.reset();
  c->label = fmt::format("{} job {}:{}", job.name, job.queue, job.id);
  if (spec_.timeout.count() > 0) {
    uv_timer_start(
        &c->timer,
        [](uv_timer_t* t) {
          auto* c = static_cast<Child*>(t->data);
          c->kill(StopHow::kGraceful,
                  Outcome{Error{fmt::format(
                      "timed out after {} ms (killed; a new process takes the next job)",
                      c->spec.timeout.count())}});
        },
        static_cast<uint64_t>(spec_.timeout.count()), 0);
  }
  c->send(job);
  std::weak_ptr<bool> alive = c->alive;
  return [c, alive](StopHow how) {
    if (!alive.expired() && c->done) c->kill(how, Outcome{Error{"stopped"}});
  };
}

}  // namespace clusterd::queue
