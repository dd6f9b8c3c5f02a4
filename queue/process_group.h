// A handler command in a process group of its own: spawned with only its
// stdin, stdout and stderr open, its exit watched on the loop, and the whole
// group (the command and everything it started) signalled at once.
//
// Design: the child is started with posix_spawn (glibc clones with
// CLONE_VFORK, so no page tables are copied however large the worker is),
// made the leader of a new process group (it stays in the worker's session,
// so the scheduler's autogroup still treats the cluster as one), with every
// descriptor past stderr closed (closefrom(3): a descriptor the worker got
// without close-on-exec, such as the listening socket passed as fd 3, never
// reaches a command), signal dispositions reset and an empty signal mask.
// Its exit is watched through a pidfd polled on the loop, not SIGCHLD.
// The group is signalled only while its leader is not yet reaped: a zombie
// leader keeps the group's number in use, so kill(-pgid) cannot reach a
// group that reused the number. When the leader exits, what is left of its
// group is SIGKILLed (a job's work is its whole group), then the leader is
// reaped.
#pragma once

#include <sys/types.h>
#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"

namespace clusterd::queue {

class ProcessGroup {
 public:
  // The child's stdin, stdout and stderr (descriptors of this process; the
  // caller keeps them and closes its copies after spawn()).
  struct Stdio {
    int in = -1;
    int out = -1;
    int err = -1;
  };
  // Runs once on the loop when the leader has exited and was reaped:
  // its exit status, or the signal that ended it (0 if none).
  using OnExit = std::function<void(int64_t status, int signal)>;

  // `argv[0]` is looked up in PATH; `env` is the child's whole environment.
  static Result<std::unique_ptr<ProcessGroup>> spawn(uv_loop_t* loop,
                                                     const std::vector<std::string>& argv,
                                                     const std::vector<std::string>& env,
                                                     Stdio stdio, OnExit on_exit);
  // SIGKILLs the group if its leader still runs; the exit is still reaped
  // on the loop, without calling on_exit.
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  // Sends `sig` to every process of the group; a no-op once the leader exited.
  void signal(int sig);
  pid_t pid() const;
  bool exited() const;

  struct State;

 private:
  explicit ProcessGroup(State* state) : state_(state) {}
  State* state_;  // freed by the loop once the exit is reaped and this object is gone
};

// The worker's environment plus `extra` ("NAME=value" entries), for a child.
std::vector<std::string> childEnvironment(const std::vector<std::string>& extra);

}  // namespace clusterd::queue
