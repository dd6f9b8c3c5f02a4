// Implementation of queue/process_group.h.
#include "queue/process_group.h"

#include <fmt/format.h>

#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>

extern char** environ;

namespace clusterd::queue {

struct ProcessGroup::State {
  uv_poll_t poll{};
  int pidfd = -1;
  pid_t pid = 0;
  bool exited = false;      // the leader was reaped; the group is never signalled again
  bool closed = false;      // the poll handle has closed
  bool owner_gone = false;  // the ProcessGroup was destroyed
  OnExit on_exit;

  void maybeFree() {
    if (closed && owner_gone) delete this;
  }
  // The pidfd is readable: the leader has exited (it is a zombie until the
  // waitpid below, so its group number cannot have been reused yet).
  void onLeaderExit() {
    ::kill(-pid, SIGKILL);  // whatever of its group is left
    int status = 0;
    pid_t r;
    do {
      r = ::waitpid(pid, &status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == 0) return;  // not yet (a spurious wake-up): keep polling
    exited = true;
    uv_poll_stop(&poll);
    uv_close(reinterpret_cast<uv_handle_t*>(&poll), [](uv_handle_t* h) {
      auto* s = static_cast<State*>(h->data);
      ::close(s->pidfd);
      s->closed = true;
      s->maybeFree();
    });
    int64_t code = r > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : 0;
    int sig = r > 0 && WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    if (r < 0) code = -1;  // someone else reaped it (never expected)
    auto cb = std::move(on_exit);
    on_exit = nullptr;
    if (!owner_gone && cb) cb(code, sig);
  }
};

Result<std::unique_ptr<ProcessGroup>> ProcessGroup::spawn(uv_loop_t* loop,
                                                          const std::vector<std::string>& argv,
                                                          const std::vector<std::string>& env,
                                                          Stdio stdio, OnExit on_exit) {
  if (argv.empty() || argv[0].empty()) return Error{"the command is empty"};
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, stdio.in, 0);
  posix_spawn_file_actions_adddup2(&actions, stdio.out, 1);
  posix_spawn_file_actions_adddup2(&actions, stdio.err, 2);
  // Only stdin, stdout and stderr reach the command, whatever this process
  // holds without close-on-exec.
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t defaults, mask;
  sigfillset(&defaults);  // also undoes an inherited SIG_IGN (the worker ignores SIGPIPE)
  sigemptyset(&mask);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setsigmask(&attr, &mask);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, args[0], &actions, &attr, args.data(), envp.data());
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return Error{fmt::format("cannot run '{}': {}", argv[0], std::strerror(rc))};

  // Through syscall(): glibc 2.36 declares pidfd_open() without C linkage.
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));  // close-on-exec always
  if (pidfd < 0) {
    int e = errno;
    ::kill(-pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return Error{fmt::format("pidfd_open({}): {}", pid, std::strerror(e))};
  }
  auto* s = new State;
  s->pid = pid;
  s->pidfd = pidfd;
  s->on_exit = std::move(on_exit);
  s->poll.data = s;
  uv_poll_init(loop, &s->poll, pidfd);
  uv_poll_start(&s->poll, UV_READABLE,
                [](uv_poll_t* p, int, int) { static_cast<State*>(p->data)->onLeaderExit(); });
  return std::unique_ptr<ProcessGroup>(new ProcessGroup(s));
}

ProcessGroup::~ProcessGroup() {
  if (!state_->exited) ::kill(-state_->pid, SIGKILL);
  state_->owner_gone = true;
  state_->on_exit = nullptr;
  state_->maybeFree();
}

void ProcessGroup::signal(int sig) {
  if (!state_->exited) ::kill(-state_->pid, sig);
}

pid_t ProcessGroup::pid() const {
  return state_->pid;
}
bool ProcessGroup::exited() const {
  return state_->exited;
}

std::vector<std::string> childEnvironment(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  auto overridden = [&](const char* entry) {
    for (const auto& x : extra) {
      size_t eq = x.find('=');
      if (std::strncmp(entry, x.c_str(), eq + 1) == 0) return true;
    }
    return false;
  };
  for (char** e = environ; *e; ++e)
    if (!overridden(*e)) env.emplace_back(*e);
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

}  // namespace clusterd::queue
