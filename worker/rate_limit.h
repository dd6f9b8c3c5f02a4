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
// A Redis that accepts the command but does not answer within `timeout`
// (stopped, swapping) is treated the same way, so requests never hang on the
// limiter.
//
// The script runs on the queue client's connection (queue::RedisConnection),
// with EVALSHA once its SHA1 is known and EVAL otherwise (also after a
// NOSCRIPT reply, when Redis restarted without its script cache).
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/uv_handle.h"
#include "config/spec.h"
#include "queue/redis.h"
#include "worker/http.h"

namespace clusterd::worker {

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
  RateLimiter(uv_loop_t* loop, queue::RedisConnection& redis,
              std::vector<config::RateLimitTier> tiers, std::chrono::milliseconds timeout);
  ~RateLimiter();
  RateLimiter(const RateLimiter&) = delete;
  RateLimiter& operator=(const RateLimiter&) = delete;

  // The tier that applies to a request, or null.
  const config::RateLimitTier* tierFor(Method method, std::string_view path) const;
  void check(const config::RateLimitTier& tier, const std::string& client_ip,
             std::function<void(const RateDecision&)> done);

  uint64_t failedOpen() const { return failed_open_; }

 private:
  struct Pending {
    std::function<void(const RateDecision&)> done;
    uint64_t limit = 0;
    uint64_t sent_ms = 0;
    bool answered = false;
  };
  void eval(std::vector<std::string> args, std::shared_ptr<Pending> p);
  void answer(Pending& p, const queue::Reply& r);
  void failOpen(Pending& p);
  void expire();

  uv_loop_t* loop_;
  queue::RedisConnection& redis_;
  std::vector<config::RateLimitTier> tiers_;
  std::chrono::milliseconds timeout_;
  std::string sha_;          // the script's SHA1 once SCRIPT LOAD answered
  bool loading_ = false;
  std::deque<std::shared_ptr<Pending>> pending_;  // in send order (Redis answers in order)
  UvHandle<uv_timer_t> expire_timer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  uint64_t failed_open_ = 0;
};

}  // namespace clusterd::worker
