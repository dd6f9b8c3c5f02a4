// The restart policy: backoff growth and reset, crash-loop detection,
// autorestart: false.
#include <catch2/catch.hpp>

#include "master/policy.h"

namespace master_policy_test {

using namespace clusterd::master;
using K = RestartDecision::Kind;

TEST_CASE("a crash after a healthy run restarts after restart_delay and resets the count") {
  RestartSettings s;
  s.restart_delay = Millis{250};
  RestartHistory h;
  h.unstable = 5;
  auto d = decideRestart(s, h, Millis{5000});
  CHECK(d.kind == K::kRestart);
  CHECK(d.delay == Millis{250});
  CHECK(h.unstable == 0);
}

TEST_CASE("more than max_restarts unstable exits in a row give up") {
  RestartSettings s;
  s.max_restarts = 3;
  s.min_uptime = Millis{1000};
  RestartHistory h;
  for (int i = 0; i < 3; ++i) CHECK(decideRestart(s, h, Millis{10}).kind == K::kRestart);
  CHECK(decideRestart(s, h, Millis{10}).kind == K::kGiveUp);
}

TEST_CASE("max_restarts 0 gives up on the first unstable exit") {
  RestartSettings s;
  s.max_restarts = 0;
  RestartHistory h;
  CHECK(decideRestart(s, h, Millis{1}).kind == K::kGiveUp);
}

TEST_CASE("exponential backoff grows by half up to 15 s and resets after min_uptime") {
  RestartSettings s;
  s.exp_backoff_restart_delay = Millis{100};
  s.max_restarts = 100;
  RestartHistory h;
  CHECK(decideRestart(s, h, Millis{10}).delay == Millis{100});
  CHECK(decideRestart(s, h, Millis{10}).delay == Millis{150});
  CHECK(decideRestart(s, h, Millis{10}).delay == Millis{225});
  for (int i = 0; i < 20; ++i) (void)decideRestart(s, h, Millis{10});
  CHECK(decideRestart(s, h, Millis{10}).delay == kMaxBackoff);
  // A healthy run resets it.
  CHECK(decideRestart(s, h, Millis{2000}).delay == Millis{100});
}

TEST_CASE("autorestart false keeps the worker down") {
  RestartSettings s;
  s.autorestart = false;
  RestartHistory h;
  CHECK(decideRestart(s, h, Millis{5000}).kind == K::kStayDown);
}

}  // namespace master_policy_test
