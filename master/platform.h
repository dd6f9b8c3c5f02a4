// The thin system interface of the supervisor: time, timers, spawning,
// signalling and sampling processes. The daemon uses UvPlatform (libuv and
// /proc); unit tests use a fake with a manual clock and pretend processes, so
// the supervision policy (backoff, memory limit, reload order) runs without
// forking.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "master/logs.h"

namespace clusterd::master {

using Millis = std::chrono::milliseconds;
using TimerId = uint64_t;

struct SpawnRequest {
  std::string file;                 // program to run (resolved with PATH by exec)
  std::vector<std::string> args;    // argv[1..]
  std::vector<std::string> env;     // KEY=VALUE, complete environment
  std::string cwd;
  int listen_fd = -1;               // passed as fd 3 when >= 0
  bool set_listen_pid = false;      // LISTEN_PID must equal the child's pid
  // The program is the exec trampoline, which makes itself a process group
  // leader in the master's session; otherwise the spawn starts a new session
  // (as for apps that run as another user: setpgid() can join only a group
  // of the caller's own session, so they cannot join another app's group).
  bool trampoline_makes_group = false;
  int uid = -1;                     // drop to this uid/gid when >= 0
  int gid = -1;
  std::shared_ptr<LogFile> out;     // stdout lines go here (null = discarded)
  std::shared_ptr<LogFile> err;     // stderr lines go here
};

struct ProcSample {
  uint64_t rss_bytes = 0;
  uint64_t cpu_ticks = 0;  // utime + stime, in clock ticks
  bool alive = false;
};

class Platform {
 public:
  virtual ~Platform() = default;
  // Monotonic time.
  virtual Millis now() = 0;
  // Runs `fn` once after `delay` unless cancelled first.
  virtual TimerId startTimer(Millis delay, std::function<void()> fn) = 0;
  virtual void cancelTimer(TimerId id) = 0;
  // Starts a process in its own process group (pgid == pid). `on_exit`
  // receives the exit status and the terminating signal (0 if none).
  virtual Result<pid_t> spawn(const SpawnRequest& request,
                              std::function<void(int64_t status, int signal)> on_exit) = 0;
  // Sends `sig` to the process group led by `pid`, a worker whose exit has
  // not been reported yet (so the pid is still its own).
  virtual void signalGroup(pid_t pid, int sig) = 0;
  // SIGKILLs what is left in the process group of a worker whose exit was
  // just reported. Only the group is signalled, never the pid: the process
  // was reaped and its pid may already name an unrelated process. The group
  // number stays reserved by the kernel while the group has members.
  virtual void killExitedGroup(pid_t pgid) = 0;
  virtual ProcSample sample(pid_t pid) = 0;
  // Clock ticks per second for cpu_ticks.
  virtual long ticksPerSecond() = 0;
  // The process group of `pid`, or -1 when it is gone.
  virtual pid_t processGroupOf(pid_t pid) = 0;
  // The parent of `pid`, or -1 when it is gone.
  virtual pid_t parentOf(pid_t pid) = 0;
};

}  // namespace clusterd::master
