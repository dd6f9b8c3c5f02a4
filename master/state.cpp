// The worker transition table (see master/state.h).
#include "master/state.h"

namespace clusterd::master {

std::optional<WorkerState> transition(WorkerState from, WorkerEvent event) {
  using S = WorkerState;
  using E = WorkerEvent;
  switch (event) {
    case E::kSpawned:
      // A process can only be started where none exists.
      if (from == S::kStopped || from == S::kWaiting || from == S::kErrored) return S::kLaunching;
      return std::nullopt;
    case E::kSpawnFailed:
      if (from == S::kStopped || from == S::kWaiting || from == S::kErrored) return S::kErrored;
      return std::nullopt;
    case E::kReady:
      if (from == S::kLaunching) return S::kOnline;
      return std::nullopt;
    case E::kStop:
      if (from == S::kLaunching || from == S::kOnline) return S::kStopping;
      // A pending restart is cancelled; an errored worker is parked as stopped.
      if (from == S::kWaiting || from == S::kErrored) return S::kStopped;
      return std::nullopt;
    case E::kCrashed:
      if (from == S::kLaunching || from == S::kOnline) return S::kWaiting;
      return std::nullopt;
    case E::kGaveUp:
      if (from == S::kLaunching || from == S::kOnline) return S::kErrored;
      return std::nullopt;
    case E::kExitedFinal:
      if (from == S::kLaunching || from == S::kOnline) return S::kStopped;
      return std::nullopt;
    case E::kExited:
      if (from == S::kStopping) return S::kStopped;
      return std::nullopt;
  }
  return std::nullopt;
}

std::string_view stateName(WorkerState s) {
  switch (s) {
    case WorkerState::kStopped: return "stopped";
    case WorkerState::kLaunching: return "launching";
    case WorkerState::kOnline: return "online";
    case WorkerState::kStopping: return "stopping";
    case WorkerState::kWaiting: return "waiting";
    case WorkerState::kErrored: return "errored";
  }
  return "?";
}

std::string_view eventName(WorkerEvent e) {
  switch (e) {
    case WorkerEvent::kSpawned: return "spawned";
    case WorkerEvent::kSpawnFailed: return "spawn-failed";
    case WorkerEvent::kReady: return "ready";
    case WorkerEvent::kStop: return "stop";
    case WorkerEvent::kCrashed: return "crashed";
    case WorkerEvent::kGaveUp: return "gave-up";
    case WorkerEvent::kExitedFinal: return "exited-final";
    case WorkerEvent::kExited: return "exited";
  }
  return "?";
}

}  // namespace clusterd::master
