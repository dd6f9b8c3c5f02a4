// worker::RateLimiter: per-client-IP rate limits shared by every worker and
// host through Redis, with tiers per route from the ecosystem file
// (`rate_limits`: name, path prefix, optional method, limit per window).
//
// Algorithm: a sliding window approximated by two fixed windows: the count
// of the current window plus the previous window's count weighted by how
// much of it still overlaps the sliding window. It needs two small counters
// per (tier, IP) instead of one entry per request, and one EVAL round trip
// per request; the clock is Redis' own (TIME), so hosts with skewed clocks
// agree. Keys: `clusterd:rl:{<tier>:<ip>}:<window number>`, expiring after
// two windows.
//
// Only the most specific tier applies to a request (the longest matching
// path prefix; a tier with a method beats one without). /health and
// /metrics are never limited. When Redis is unreachable the limiter fails
// open: requests pass (and are counted in /metrics), because refusing all
// traffic while Redis restarts would be worse than a short unlimited spell.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "config/spec.h"
#include "worker/http.h"

namespace clusterd::worker {

class QueueLink;

struct RateDecision {
  bool allowed = true;
  uint64_t limit = 0;
  uint64_t remaining = 0;
  uint64_t reset_s = 0;        // seconds until the current window ends
  uint64_t retry_after_s = 0;  // when refused: seconds until a request would pass
  bool failed_open = false;    // Redis did not answer
};

class RateLimiter {
 public:
  RateLimiter(QueueLink& link, std::vector<config::RateLimitTier> tiers);

  // The tier that applies to a request, or null.
  const config::RateLimitTier* tierFor(Method method, std::string_view path) const;
  void check(const config::RateLimitTier& tier, const std::string& client_ip,
             std::function<void(const RateDecision&)> done);

  uint64_t failedOpen() const { return failed_open_; }

 private:
  QueueLink& link_;
  std::vector<config::RateLimitTier> tiers_;
  uint64_t failed_open_ = 0;
};

}  // namespace clusterd::worker
