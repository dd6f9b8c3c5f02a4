// The lifecycle of one worker process slot: its states, the events that move
// it, and the single transition function every part of the master goes
// through. A state change anywhere else is a bug.
//
// Design: the table is total over (state, event) pairs; a pair that makes no
// sense (a READY=1 from a worker already stopping, say) returns std::nullopt
// and the caller ignores the event. What to do on an exit (restart, give up
// or stay down) is decided by the restart policy (master/policy.h) and fed in
// as one of kCrashed / kGaveUp / kExitedFinal, so this table holds no policy.
#pragma once

#include <optional>
#include <string_view>

namespace clusterd::master {

enum class WorkerState {
  kStopped,    // no process; not wanted (initial state, after stop, autorestart:false)
  kLaunching,  // spawned; not yet ready (READY=1 or the start grace)
  kOnline,     // ready and serving
  kStopping,   // SIGTERM sent; waiting for exit (SIGKILL after kill_timeout)
  kWaiting,    // exited unexpectedly; a restart is scheduled after the backoff
  kErrored,    // too many unstable restarts, or cannot be spawned; left alone
};

enum class WorkerEvent {
  kSpawned,      // uv_spawn succeeded
  kSpawnFailed,  // uv_spawn failed (missing script, not executable, …)
  kReady,        // READY=1, or the start grace elapsed
  kStop,         // an operator (or the master) asked it to stop
  kCrashed,      // exited unexpectedly; the policy says restart after a delay
  kGaveUp,       // exited unexpectedly; the policy says too many restarts
  kExitedFinal,  // exited; the policy says stay down (autorestart: false)
  kExited,       // exited while stopping (the expected end of a stop)
};

inline constexpr WorkerState kAllStates[] = {
    WorkerState::kStopped, WorkerState::kLaunching, WorkerState::kOnline,
    WorkerState::kStopping, WorkerState::kWaiting, WorkerState::kErrored};
inline constexpr WorkerEvent kAllEvents[] = {
    WorkerEvent::kSpawned, WorkerEvent::kSpawnFailed, WorkerEvent::kReady,
    WorkerEvent::kStop,    WorkerEvent::kCrashed,     WorkerEvent::kGaveUp,
    WorkerEvent::kExitedFinal, WorkerEvent::kExited};

// The next state, or std::nullopt when the event does not apply in `from`.
std::optional<WorkerState> transition(WorkerState from, WorkerEvent event);

std::string_view stateName(WorkerState s);
std::string_view eventName(WorkerEvent e);

// True while a process exists for the worker.
inline bool hasProcess(WorkerState s) {
  return s == WorkerState::kLaunching || s == WorkerState::kOnline || s == WorkerState::kStopping;
}

}  // namespace clusterd::master
