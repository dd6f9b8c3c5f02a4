// The notify socket's per-sender budget (NotifyRateLimit): a flood from one
// sender is cut at the budget for the rest of its one-second window, other
// senders keep theirs, and the number of senders tracked per window is
// bounded.
#include <catch2/catch.hpp>

#include "master/notify.h"

namespace master_notify_test {

using clusterd::master::NotifyRateLimit;

TEST_CASE("a sender over its budget is dropped for the rest of the second and heard again after") {
  NotifyRateLimit limit(3);
  bool first_drop = false;
  uint64_t t = 5'000;
  for (int i = 0; i < 3; ++i) CHECK(limit.allow(100, t + 10 * i, first_drop));
  CHECK_FALSE(limit.allow(100, t + 500, first_drop));
  CHECK(first_drop);  // the first drop is reported, for one log line
  CHECK_FALSE(limit.allow(100, t + 600, first_drop));
  CHECK_FALSE(first_drop);
  CHECK(limit.allow(200, t + 700, first_drop));    // another sender has its own budget
  CHECK(limit.allow(100, t + 1'000, first_drop));  // a new window
}

TEST_CASE("the senders tracked in one window are bounded and the extra ones are dropped") {
  NotifyRateLimit limit(10, 4);
  bool first_drop = false;
  for (pid_t p = 1; p <= 4; ++p) CHECK(limit.allow(p, 0, first_drop));
  CHECK_FALSE(limit.allow(5, 0, first_drop));
  CHECK(limit.allow(1, 0, first_drop));  // known senders keep their budget
  CHECK(limit.allow(5, 1'000, first_drop));
}

}  // namespace master_notify_test
