// The orphan reaper, both the process and the daemon's handle on it (see
// master/reaper.h).
//
// Design: the daemon's end of the pipe and the process handle live in one
// heap record freed when both are closed, so the record outlives the
// ReaperProcess that dropped it while libuv still holds its handles.
#include "master/reaper.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <thread>

#include "common/log.h"
#include "master/orphans.h"

namespace clusterd::master {

namespace {

constexpr std::string_view kReaperLog = "reaper";

template <typename T>
bool toNumber(const char* s, T& out) {
  const char* end = s + std::strlen(s);
  auto [p, ec] = std::from_chars(s, end, out);
  return ec == std::errc{} && p == end && p != s;
}

}  // namespace

bool isReaper(int argc, char** argv) { return argc >= 2 && std::strcmp(argv[1], "__reap") == 0; }

int runReaper(int argc, char** argv) {
  ProcessId daemon;
  if (argc != 5 || !toNumber(argv[3], daemon.pid) || !toNumber(argv[4], daemon.start_time)) {
    std::fprintf(stderr, "usage: %s __reap <home> <daemon pid> <daemon start time>\n", argv[0]);
    return 100;
  }
  std::string home = argv[2];
  char buf[256];
  for (;;) {
    ssize_t n = ::read(0, buf, sizeof buf);
    if (n > 0 || (n < 0 && errno == EINTR)) continue;
    break;  // end of file: the daemon is gone (an error means the same here)
  }
  auto file = readGroups(groupsPath(home));
  if (!file || !(file->daemon == daemon)) return 0;  // a clean stop, or a newer daemon's file
  auto pending = signalLeftovers(file->groups, SIGTERM, kOrphanGrace);
  if (pending.empty()) return 0;
  auto deadline = std::chrono::steady_clock::now() + kOrphanGrace;
  while (std::chrono::steady_clock::now() < deadline && anyLeftovers(pending))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  signalLeftovers(pending, SIGKILL, kOrphanGrace);
  return 0;
}

struct ReaperProcess::Child {
  uv_process_t process{};
  uv_pipe_t pipe{};
  ReaperProcess* owner = nullptr;  // null once the owner let go
  int open_handles = 2;

  void release() {
    if (--open_handles == 0) delete this;
  }
  void close() {
    owner = nullptr;
    for (uv_handle_t* h : {reinterpret_cast<uv_handle_t*>(&process), reinterpret_cast<uv_handle_t*>(&pipe)})
      if (!uv_is_closing(h)) uv_close(h, [](uv_handle_t* x) { static_cast<Child*>(x->data)->release(); });
  }
};

ReaperProcess::ReaperProcess(uv_loop_t* loop, std::string self_exe, std::string home)
    : loop_(loop), self_exe_(std::move(self_exe)), home_(std::move(home)) {
  uv_timer_init(loop_, restart_timer_.get());
  restart_timer_->data = this;
  uv_unref(restart_timer_.handle());
}

ReaperProcess::~ReaperProcess() {
  restart_timer_.reset();
  if (child_) child_->close();  // closing our end of the pipe tells the reaper
}

int ReaperProcess::pid() const { return child_ ? child_->process.pid : 0; }

void ReaperProcess::start() {
  auto self = selfProcessId();
  if (!self) {
    log::warn(kReaperLog, "cannot read /proc/self/stat; no orphan reaper (the next daemon's sweep remains)");
    return;
  }
  auto* c = new Child;
  c->owner = this;
  c->process.data = c;
  c->pipe.data = c;
  uv_pipe_init(loop_, &c->pipe, 0);
  std::string pid = std::to_string(self->pid), start_time = std::to_string(self->start_time);
  char verb[] = "__reap";
  char* args[] = {self_exe_.data(), verb, home_.data(), pid.data(), start_time.data(), nullptr};
  uv_stdio_container_t stdio[3];
  stdio[0].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_READABLE_PIPE);
  stdio[0].data.stream = reinterpret_cast<uv_stream_t*>(&c->pipe);
  stdio[1].flags = UV_INHERIT_FD;
  stdio[1].data.fd = 1;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  uv_process_options_t opt{};
  opt.file = self_exe_.c_str();
  opt.args = args;
  opt.stdio = stdio;
  opt.stdio_count = 3;
  // Its own session: a Ctrl-C at the daemon's terminal
  // must not reach it. No parent-death signal: outliving us is its job.
  opt.flags = UV_PROCESS_DETACHED;
  opt.exit_cb = [](uv_process_t* h, int64_t status, int sig) {
    auto* child = static_cast<Child*>(h->data);
    ReaperProcess* owner = child->owner;
    child->close();
    if (!owner) return;
    owner->child_ = nullptr;
    log::warn(kReaperLog, "the orphan reaper exited ({} {}); starting another in 1 s", sig ? "signal" : "exit",
              sig ? sig : status);
    uv_timer_start(owner->restart_timer_.get(), [](uv_timer_t* t) {
      if (t->data) static_cast<ReaperProcess*>(t->data)->start();
    }, 1000, 0);
  };
  int rc = uv_spawn(loop_, &c->process, &opt);
  if (rc != 0) {
    c->close();
    log::warn(kReaperLog, "cannot start the orphan reaper ({} __reap): {}; the next daemon's sweep remains",
              self_exe_, uv_strerror(rc));
    return;
  }
  child_ = c;
}

}  // namespace clusterd::master
