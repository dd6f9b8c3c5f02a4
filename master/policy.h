// Restart policy: what to do when a worker exits without being asked to.
// Pure functions of the app's settings, the worker's history and the uptime,
// so backoff and crash-loop detection are unit-tested without processes.
//
// Design: an exit is "unstable" when the worker ran less than min_uptime;
// a healthy run (at least min_uptime) resets the unstable count and the
// exponential backoff. More than max_restarts unstable exits in a row mark
// the worker errored. With exp_backoff_restart_delay the delay starts at that
// value and grows ×1.5 per unstable exit up to 15 s; otherwise restart_delay.
#pragma once

#include <chrono>

namespace clusterd::master {

using Millis = std::chrono::milliseconds;

inline constexpr Millis kMaxBackoff{15'000};

struct RestartSettings {
  Millis min_uptime{1000};
  int max_restarts = 16;
  Millis restart_delay{0};
  Millis exp_backoff_restart_delay{0};
  bool autorestart = true;
};

// Per worker slot; survives restarts.
struct RestartHistory {
  int unstable = 0;      // unstable exits in a row
  Millis backoff{0};     // the last exponential delay used; 0 = none yet
};

struct RestartDecision {
  enum class Kind { kRestart, kGiveUp, kStayDown };
  Kind kind = Kind::kRestart;
  Millis delay{0};  // for kRestart
};

// Updates `history` for an unexpected exit after `uptime` and decides.
RestartDecision decideRestart(const RestartSettings& settings, RestartHistory& history,
                              Millis uptime);

// A process has run long enough to count as healthy: resets the history.
void noteHealthy(const RestartSettings& settings, RestartHistory& history, Millis uptime);

}  // namespace clusterd::master
