// Restart policy (see master/policy.h).
#include "master/policy.h"

#include <algorithm>

namespace clusterd::master {

void noteHealthy(const RestartSettings& settings, RestartHistory& history, Millis uptime) {
  if (uptime >= settings.min_uptime) history = RestartHistory{};
}

RestartDecision decideRestart(const RestartSettings& settings, RestartHistory& history,
                              Millis uptime) {
  if (!settings.autorestart) return {RestartDecision::Kind::kStayDown, Millis{0}};
  if (uptime >= settings.min_uptime) {
    history = RestartHistory{};
  } else {
    ++history.unstable;
    if (history.unstable > settings.max_restarts) return {RestartDecision::Kind::kGiveUp, Millis{0}};
  }
  Millis delay = settings.restart_delay;
  if (settings.exp_backoff_restart_delay.count() > 0) {
    if (history.backoff.count() == 0) {
      history.backoff = settings.exp_backoff_restart_delay;
    } else {
      history.backoff = std::min(kMaxBackoff, Millis{history.backoff.count() * 3 / 2});
    }
    delay = std::max(delay, history.backoff);
  }
  return {RestartDecision::Kind::kRestart, delay};
}

}  // namespace clusterd::master
