// The real Platform on libuv and /proc (see master/uv_platform.h).
//
// Design: each timer and each process is a heap object whose uv handle is
// closed by its owner and freed in the close callback, so a callback that
// cancels its own timer or a process that exits while its pipes still drain
// never touches freed memory. A process object lives until its exit has been
// reported and both pipes reached EOF.
#include "master/uv_platform.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "master/orphans.h"

namespace clusterd::master {

struct UvPlatform::Timer {
  uv_timer_t handle{};
  std::function<void()> fn;
  UvPlatform* owner = nullptr;
  TimerId id = 0;
};

struct UvPlatform::Proc {
  uv_process_t process{};
  struct Pipe {
    uv_pipe_t handle{};
    std::unique_ptr<LineSplitter> lines;
    Proc* proc = nullptr;
    bool open = false;
  };
  Pipe out, err;
  std::function<void(int64_t, int)> on_exit;
  GroupLedger* ledger = nullptr;  // told about the exit
  std::shared_ptr<std::set<pid_t>> unreaped;  // the platform's, forgets the pid at the exit
  pid_t pid = 0;
  int open_handles = 0;

  void release() {
    if (--open_handles == 0) delete this;
  }
};

namespace {

void closeTimer(uv_timer_t* t) {
  uv_close(reinterpret_cast<uv_handle_t*>(t),
           [](uv_handle_t* h) { delete static_cast<UvPlatform::Timer*>(h->data); });
}

}  // namespace

UvPlatform::UvPlatform(uv_loop_t* loop) : loop_(loop) {}

UvPlatform::~UvPlatform() {
  for (auto& [id, t] : timers_) {
    uv_timer_stop(&t->handle);
    closeTimer(&t->handle);
  }
}

Millis UvPlatform::now() {
  return Millis{static_cast<int64_t>(uv_hrtime() / 1'000'000)};
}

TimerId UvPlatform::startTimer(Millis delay, std::function<void()> fn) {
  auto* t = new Timer;
  t->fn = std::move(fn);
  t->owner = this;
  t->id = next_timer_++;
  t->handle.data = t;
  uv_timer_init(loop_, &t->handle);
  uv_timer_start(
      &t->handle,
      [](uv_timer_t* h) {
        auto* self = static_cast<Timer*>(h->data);
        self->owner->timers_.erase(self->id);
        auto fn = std::move(self->fn);
        closeTimer(h);
        fn();
      },
      static_cast<uint64_t>(delay.count() < 0 ? 0 : delay.count()), 0);
  timers_[t->id] = t;
  return t->id;
}

void UvPlatform::cancelTimer(TimerId id) {
  if (id == 0) return;
  auto it = timers_.find(id);
  if (it == timers_.end()) return;
  Timer* t = it->second;
  timers_.erase(it);
  uv_timer_stop(&t->handle);
  closeTimer(&t->handle);
}

namespace {

void allocBuffer(uv_handle_t*, size_t, uv_buf_t* buf) {
  static thread_local char storage[64 * 1024];
  buf->base = storage;
  buf->len = sizeof storage;
}

void closePipe(UvPlatform::Proc::Pipe* p);

void onPipeRead(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  auto* p = static_cast<UvPlatform::Proc::Pipe*>(s->data);
  if (n > 0) {
    if (p->lines) p->lines->feed(std::string_view(buf->base, static_cast<size_t>(n)));
    return;
  }
  if (n < 0) closePipe(p);
}

}  // namespace

// Out of the anonymous namespace for access to Proc.
namespace {
void closePipe(UvPlatform::Proc::Pipe* p) {
  if (!p->open) return;
  p->open = false;
  if (p->lines) p->lines->finish();
  uv_close(reinterpret_cast<uv_handle_t*>(&p->handle),
           [](uv_handle_t* h) { static_cast<UvPlatform::Proc::Pipe*>(h->data)->proc->release(); });
}
}  // namespace

Result<pid_t> UvPlatform::spawn(const SpawnRequest& r,
                                std::function<void(int64_t status, int signal)> on_exit) {
  auto* proc = new Proc;
  proc->on_exit = std::move(on_exit);
  for (auto* p : {&proc->out, &proc->err}) {
    p->proc = proc;
    p->handle.data = p;
    uv_pipe_init(loop_, &p->handle, 0);
    p->open = true;
  }
  if (r.out) proc->out.lines = std::make_unique<LineSplitter>(r.out);
  if (r.err) proc->err.lines = std::make_unique<LineSplitter>(r.err);

  std::vector<std::string> argv_s;
  argv_s.push_back(r.file);
  argv_s.insert(argv_s.end(), r.args.begin(), r.args.end());
  std::vector<char*> argv, envp;
  for (auto& a : argv_s) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (auto& e : r.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  uv_stdio_container_t stdio[4];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[1].data.stream = reinterpret_cast<uv_stream_t*>(&proc->out.handle);
  stdio[2].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[2].data.stream = reinterpret_cast<uv_stream_t*>(&proc->err.handle);
  stdio[3].flags = UV_INHERIT_FD;
  stdio[3].data.fd = r.listen_fd;

  uv_process_options_t opt{};
  opt.file = r.file.c_str();
  opt.args = argv.data();
  opt.env = envp.data();
  opt.cwd = r.cwd.empty() ? nullptr : r.cwd.c_str();
  opt.stdio = stdio;
  opt.stdio_count = r.listen_fd >= 0 ? 4 : 3;
  // Every worker leads its own process group, so signals to the group reach
  // whatever it forks, and a Ctrl-C at the terminal of a foreground daemon
  // does not hit the workers directly. The trampoline does it with
  // setpgid() and stays in the master's session; without it, DETACHED
  // (setsid()) does, at the price of a session per worker, which Linux's
  // scheduler autogroups treat as one scheduling group each (see
  // master/trampoline.h).
  unsigned flags = r.trampoline_makes_group ? 0 : UV_PROCESS_DETACHED;
  if (r.uid >= 0) {
    flags |= UV_PROCESS_SETUID;
    opt.uid = static_cast<uv_uid_t>(r.uid);
  }
  if (r.gid >= 0) {
    flags |= UV_PROCESS_SETGID;
    opt.gid = static_cast<uv_gid_t>(r.gid);
  }
  opt.flags = flags;
  opt.exit_cb = [](uv_process_t* h, int64_t status, int sig) {
    auto* self = static_cast<Proc*>(h->data);
    if (self->ledger) self->ledger->remove(self->pid);
    self->unreaped->erase(self->pid);
    auto cb = std::move(self->on_exit);
    uv_close(reinterpret_cast<uv_handle_t*>(h),
             [](uv_handle_t* x) { static_cast<Proc*>(x->data)->release(); });
    if (cb) cb(status, sig);
  };
  proc->process.data = proc;
  proc->open_handles = 3;
  int rc = uv_spawn(loop_, &proc->process, &opt);
  if (rc != 0) {
    closePipe(&proc->out);
    closePipe(&proc->err);
    // A failed uv_spawn still initialised the handle; it must be closed too.
    proc->on_exit = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&proc->process),
             [](uv_handle_t* x) { static_cast<Proc*>(x->data)->release(); });
    return Error{"spawn " + r.file + ": " + uv_strerror(rc)};
  }
  for (auto* p : {&proc->out, &proc->err})
    uv_read_start(reinterpret_cast<uv_stream_t*>(&p->handle), allocBuffer, onPipeRead);
  proc->pid = static_cast<pid_t>(proc->process.pid);
  proc->unreaped = unreaped_;
  unreaped_->insert(proc->pid);
  if (ledger_) {
    proc->ledger = ledger_;
    ledger_->add(proc->pid);
  }
  return static_cast<pid_t>(proc->process.pid);
}

void UvPlatform::signalGroup(pid_t pid, int sig) {
  if (pid <= 0) return;
  // ESRCH: the trampoline has not made its group yet; it then runs nothing
  // else, and the signal to it alone is the signal to everything. The pid
  // alone is signalled only while it is our unreaped child (a zombie at
  // worst), so it cannot have been reused by another process.
  if (::kill(-pid, sig) != 0 && errno == ESRCH && unreaped_->count(pid)) ::kill(pid, sig);
}

void UvPlatform::killExitedGroup(pid_t pgid) {
  if (pgid > 0) ::kill(-pgid, SIGKILL);  // ESRCH: nothing was left
}

ProcSample parseProcStat(std::string_view stat, long page_size) {
  ProcSample s;
  // The command name may contain spaces and parentheses: fields restart after the last ')'.
  size_t close = stat.rfind(')');
  if (close == std::string_view::npos) return s;
  std::string rest(stat.substr(close + 2));
  std::vector<std::string> f;
  size_t start = 0;
  while (start < rest.size()) {
    size_t sp = rest.find(' ', start);
    if (sp == std::string::npos) sp = rest.size();
    f.push_back(rest.substr(start, sp - start));
    start = sp + 1;
  }
  // f[0] is field 3 (state); utime is field 14, stime 15, rss 24.
  if (f.size() < 22) return s;
  s.cpu_ticks = std::stoull(f[11]) + std::stoull(f[12]);
  s.rss_bytes = std::stoull(f[21]) * static_cast<uint64_t>(page_size);
  s.alive = f[0] != "Z";
  return s;
}

pid_t parseParentPid(std::string_view stat) {
  size_t close = stat.rfind(')');
  if (close == std::string_view::npos || close + 4 >= stat.size()) return -1;
  std::string_view rest = stat.substr(close + 4);  // ") S ppid …"
  pid_t ppid = 0;
  size_t i = 0;
  for (; i < rest.size() && rest[i] >= '0' && rest[i] <= '9' && ppid < 100'000'000; ++i)
    ppid = ppid * 10 + (rest[i] - '0');
  return i == 0 ? -1 : ppid;
}

namespace {

// The contents of /proc/<pid>/stat, or "" when the process is gone.
std::string readStat(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/stat";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return "";
  char buf[1024];
  ssize_t n = ::read(fd.get(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

}  // namespace

ProcSample UvPlatform::sample(pid_t pid) {
  std::string stat = readStat(pid);
  if (stat.empty()) return {};
  return parseProcStat(stat, ::sysconf(_SC_PAGESIZE));
}

pid_t UvPlatform::parentOf(pid_t pid) {
  if (pid <= 0) return -1;
  std::string stat = readStat(pid);
  return stat.empty() ? -1 : parseParentPid(stat);
}

long UvPlatform::ticksPerSecond() { return ::sysconf(_SC_CLK_TCK); }

pid_t UvPlatform::processGroupOf(pid_t pid) { return pid > 0 ? ::getpgid(pid) : -1; }

}  // namespace clusterd::master
