// The orphan reaper: a small process the daemon keeps beside it so that what
// its workers forked does not outlive a daemon killed with SIGKILL, even when
// no daemon is started on the home again.
//
//   <self> __reap <home> <daemon pid> <daemon start time>
//
// The reaper blocks reading its stdin, a pipe whose only writer is the
// daemon. End of file means the daemon is gone (or is stopping cleanly, in
// which case its workers have exited and it has removed its groups file). It
// then runs the orphan sweep (master/orphans.h) over <home>/workers.groups —
// SIGTERM, a grace period, SIGKILL — and exits. It acts only when the file
// still names its own daemon: if a new daemon has started on the home and
// rewritten the file, the groups in it are the new daemon's workers, and the
// new daemon has swept the old ones itself at start-up.
//
// Design: the reaper is started with setsid, like the workers, but without
// the parent-death signal, so it outlives the daemon by design; it holds no
// socket and no lock. If it exits while the daemon runs, the daemon starts
// another one after a second. The sweep at the next daemon's start stays
// the backstop for a reaper killed together with its daemon.
#pragma once

#include <uv.h>

#include <chrono>
#include <string>

#include "common/uv_handle.h"

namespace clusterd::master {

inline constexpr std::chrono::milliseconds kOrphanGrace{1000};

// True when argv is a reaper invocation (argv[1] == "__reap").
bool isReaper(int argc, char** argv);
// Runs the reaper; returns its exit code (0, or 100 for bad arguments).
int runReaper(int argc, char** argv);

// The daemon's side: starts the reaper and keeps one running.
class ReaperProcess {
 public:
  ReaperProcess(uv_loop_t* loop, std::string self_exe, std::string home);
  // Closes the pipe; the reaper wakes up and finds nothing of ours to sweep
  // once the daemon has removed its groups file.
  ~ReaperProcess();
  ReaperProcess(const ReaperProcess&) = delete;
  ReaperProcess& operator=(const ReaperProcess&) = delete;

  // Starts the reaper; a failure is logged (the next daemon's sweep remains).
  void start();
  // The reaper's pid, 0 when none runs.
  int pid() const;

  struct Child;  // heap record of one reaper process (public for the C callbacks)

 private:
  uv_loop_t* loop_;
  std::string self_exe_;
  std::string home_;
  Child* child_ = nullptr;
  UvHandle<uv_timer_t> restart_timer_;
};

}  // namespace clusterd::master
