// worker::RateLimiter (see rate_limit.h).
#include "worker/rate_limit.h"

#include <algorithm>
#include <string_view>


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

RateLimiter::RateLimiter(uv_loop_t* loop, queue::RedisConnection& redis,
                         std::vector<config::RateLimitTier> tiers, std::chrono::milliseconds timeout)
    : loop_(loop), redis_(redis), tiers_(std::move(tiers)), timeout_(timeout) {
  uv_timer_init(loop_, expire_timer_.get());
  expire_timer_->data = this;
  uint64_t period = std::clamp<uint64_t>(static_cast<uint64_t>(timeout_.count()) / 4, 10, 250);
  uv_timer_start(
      expire_timer_.get(), [](uv_timer_t* t) { static_cast<RateLimiter*>(t->data)->expire(); },
      period, period);
  uv_unref(expire_timer_.handle());
  // After a reconnection the script cache may be empty: learn the SHA again.
  redis_.onReady([this, alive = std::weak_ptr<bool>(alive_)] {
    if (alive.expired()) return;
    sha_.clear();
  });
}

RateLimiter::~RateLimiter() { *alive_ = false; }

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
  auto p = std::make_shared<Pending>();
  p->done = std::move(done);
  p->limit = tier.limit;
  p->sent_ms = uv_now(loop_);
  pending_.push_back(p);
  std::string key = "clusterd:rl:{" + tier.name + ":" + client_ip + "}";
  eval({"1", std::move(key), std::to_string(tier.limit), std::to_string(tier.window.count())},
       std::move(p));
}

// `args` = numkeys, keys..., argv...; sent as EVALSHA when the SHA is
// known, else as EVAL (and the SHA is learned with SCRIPT LOAD).
void RateLimiter::eval(std::vector<std::string> args, std::shared_ptr<Pending> p) {
  std::weak_ptr<bool> alive = alive_;
  std::vector<std::string> argv;
  argv.reserve(args.size() + 2);
  if (sha_.empty()) {
    if (!loading_) {
      loading_ = true;
      redis_.command({"SCRIPT", "LOAD", kScript}, [this, alive](const queue::Reply& r) {
        if (alive.expired()) return;
        loading_ = false;
        if (!r.isError()) sha_ = r.str();
      });
    }
    argv.push_back("EVAL");
    argv.push_back(kScript);
    argv.insert(argv.end(), args.begin(), args.end());
    redis_.command(std::move(argv), [this, alive, p](const queue::Reply& r) {
      if (alive.expired()) return;
      answer(*p, r);
    });
    return;
  }
  argv.push_back("EVALSHA");
  argv.push_back(sha_);
  argv.insert(argv.end(), args.begin(), args.end());
  redis_.command(std::move(argv), [this, alive, p, args = std::move(args)](const queue::Reply& r) mutable {
    if (alive.expired()) return;
    if (r.isError() && r.error().substr(0, 8) == "NOSCRIPT") {
      sha_.clear();
      return eval(std::move(args), std::move(p));
    }
    answer(*p, r);
  });
}

void RateLimiter::answer(Pending& p, const queue::Reply& r) {
  if (p.answered) return;  // already failed open after the timeout
  if (r.isError() || !r.isArray() || r.size() != 4) return failOpen(p);
  p.answered = true;
  RateDecision d;
  d.limit = p.limit;
  d.allowed = r.at(0).integer() == 1;
  d.remaining = static_cast<uint64_t>(std::max(0LL, r.at(1).integer()));
  d.reset_s = ceilSeconds(r.at(2).integer());
  d.retry_after_s = std::max<uint64_t>(1, ceilSeconds(r.at(3).integer()));
  auto done = std::move(p.done);
  done(d);
}

void RateLimiter::failOpen(Pending& p) {
  if (p.answered) return;
  p.answered = true;
  ++failed_open_;
  RateDecision d;
  d.limit = p.limit;
  d.remaining = p.limit;
  d.failed_open = true;
  auto done = std::move(p.done);
  done(d);
}

void RateLimiter::expire() {
  uint64_t now = uv_now(loop_);
  while (!pending_.empty()) {
    Pending& p = *pending_.front();
    if (!p.answered) {
      if (now - p.sent_ms < static_cast<uint64_t>(timeout_.count())) break;
      failOpen(p);
    }
    pending_.pop_front();
  }
}

}  // namespace clusterd::worker
