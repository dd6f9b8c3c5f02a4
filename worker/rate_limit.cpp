// worker::RateLimiter (see rate_limit.h).
#include "worker/rate_limit.h"

#include <algorithm>

#include "worker/queue_link.h"
#include "worker/redis_link.h"

namespace clusterd::worker {
namespace {

// KEYS[1] = key prefix; ARGV = limit, window ms.
// Returns {allowed, remaining, reset_ms, retry_ms}.
constexpr const char* kScript = R"LUA(
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local idx = math.floor(now / window)
local cur_key = KEYS[1] .. ':' .. idx
local cur = tonumber(redis.call('GET', cur_key) or '0')
local prev = tonumber(redis.call('GET', KEYS[1] .. ':' .. (idx - 1)) or '0')
local elapsed = now - idx * window
local reset = window - elapsed
local estimate = prev * (window - elapsed) / window + cur
if estimate + 1 > limit then
  local retry
  if cur + 1 <= limit and prev > 0 then
    retry = math.ceil((window - (limit - 1 - cur) * window / prev) - elapsed)
  else
    retry = reset + math.max(0, math.ceil(window - (limit - 1) * window / math.max(cur, 1)))
  end
  return {0, 0, reset, math.max(retry, 1)}
end
redis.call('INCR', cur_key)
redis.call('PEXPIRE', cur_key, window * 2)
return {1, math.floor(limit - estimate - 1), reset, 0}
)LUA";

bool startsWith(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

uint64_t ceilSeconds(long long ms) { return ms <= 0 ? 0 : static_cast<uint64_t>((ms + 999) / 1000); }

}  // namespace

RateLimiter::RateLimiter(QueueLink& link, std::vector<config::RateLimitTier> tiers)
    : link_(link), tiers_(std::move(tiers)) {}

const config::RateLimitTier* RateLimiter::tierFor(Method method, std::string_view path) const {
  if (tiers_.empty() || path == "/health" || path == "/metrics") return nullptr;
  const config::RateLimitTier* best = nullptr;
  for (const auto& t : tiers_) {
    if (t.limit == 0 || t.window.count() <= 0) continue;
    if (!startsWith(path, t.path_prefix)) continue;
    if (!t.method.empty() && t.method != methodName(method)) continue;
    if (!best || t.path_prefix.size() > best->path_prefix.size() ||
        (t.path_prefix.size() == best->path_prefix.size() && !t.method.empty() &&
         best->method.empty())) {
      best = &t;
    }
  }
  return best;
}

void RateLimiter::check(const config::RateLimitTier& tier, const std::string& client_ip,
                        std::function<void(const RateDecision&)> done) {
  uint64_t limit = tier.limit;
  std::string key = "clusterd:rl:{" + tier.name + ":" + client_ip + "}";
  link_.redis().eval(kScript, {key},
                     {std::to_string(limit), std::to_string(tier.window.count())},
                     [this, limit, done = std::move(done)](const std::string& err,
                                                           const RedisValue& v) {
                       RateDecision d;
                       d.limit = limit;
                       if (!err.empty() || v.type != RedisValue::Type::kArray ||
                           v.elements.size() != 4) {
                         ++failed_open_;
                         d.failed_open = true;
                         d.remaining = limit;
                         done(d);
                         return;
                       }
                       d.allowed = v.elements[0].integer == 1;
                       d.remaining = static_cast<uint64_t>(std::max(0LL, v.elements[1].integer));
                       d.reset_s = ceilSeconds(v.elements[2].integer);
                       d.retry_after_s = std::max<uint64_t>(1, ceilSeconds(v.elements[3].integer));
                       done(d);
                     });
}

}  // namespace clusterd::worker
