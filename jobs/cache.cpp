// Implementation of jobs/cache.h.
#include "jobs/cache.h"

#include <fmt/format.h>

namespace clusterd::jobs {

std::optional<std::string> LruCache::get(const std::string& key, uint64_t now_ms) {
  auto it = map_.find(key);
  if (it == map_.end()) return std::nullopt;
  if (it->second->expires_ms <= now_ms) {
    order_.erase(it->second);
    map_.erase(it);
    return std::nullopt;
  }
  order_.splice(order_.begin(), order_, it->second);
  return it->second->value;
}

void LruCache::put(const std::string& key, std::string value, uint64_t expires_ms) {
  if (capacity_ == 0) return;
  auto it = map_.find(key);
  if (it != map_.end()) {
    it->second->value = std::move(value);
    it->second->expires_ms = expires_ms;
    order_.splice(order_.begin(), order_, it->second);
    return;
  }
  order_.push_front(Entry{key, std::move(value), expires_ms});
  map_[key] = order_.begin();
  if (map_.size() > capacity_) {
    map_.erase(order_.back().key);
    order_.pop_back();
  }
}

void LruCache::erase(const std::string& key) {
  auto it = map_.find(key);
  if (it == map_.end()) return;
  order_.erase(it->second);
  map_.erase(it);
}

void LruCache::eraseprefix(const std::string& prefix) {
  for (auto it = order_.begin(); it != order_.end();) {
    if (it->key.rfind(prefix, 0) == 0) {
      map_.erase(it->key);
      it = order_.erase(it);
    } else {
      ++it;
    }
  }
}

ProductCache::ProductCache(uv_loop_t* loop, std::unique_ptr<queue::RedisConnection> redis,
                           CacheOptions options)
    : loop_(loop), redis_(std::move(redis)), options_(std::move(options)),
      local_(options_.local_capacity), self_(std::make_shared<ProductCache*>(this)) {
  if (redis_) redis_->connect();
}

ProductCache::~ProductCache() {
  self_.reset();
  redis_.reset();  // pending callbacks are dropped, never called
}

std::string ProductCache::listKey(int page, int limit) { return fmt::format("list:{}:{}", page, limit); }

std::string ProductCache::redisKey(const std::string& key) const {
  // All list pages share one hash so one DEL drops them all.
  if (key.rfind("list:", 0) == 0) return options_.prefix + "lists";
  return options_.prefix + key;
}

void ProductCache::get(const std::string& key,
                       std::function<void(std::optional<std::string>, CacheLayer)> done) {
  uint64_t now = uv_now(loop_);
  if (auto v = local_.get(key, now)) {
    ++stats_.local_hits;
    return done(std::move(v), CacheLayer::kLocal);
  }
  if (!redis_ || !redis_->ready()) {
    ++stats_.misses;
    return done(std::nullopt, CacheLayer::kNone);
  }
  std::vector<std::string> argv;
  if (key.rfind("list:", 0) == 0)
    argv = {"HGET", redisKey(key), key};
  else
    argv = {"GET", redisKey(key)};
  std::weak_ptr<ProductCache*> weak = self_;
  redis_->command(std::move(argv), [weak, key, done = std::move(done)](const queue::Reply& r) {
    auto self = weak.lock();
    if (!self) return;
    ProductCache* c = *self;
    if (!r.isError() && !r.isNil() && !r.isArray() && !r.isInteger()) {
      ++c->stats_.redis_hits;
      std::string body = r.str();
      c->local_.put(key, body, uv_now(c->loop_) + static_cast<uint64_t>(c->options_.local_ttl.count()));
      return done(std::move(body), CacheLayer::kRedis);
    }
    ++c->stats_.misses;
    done(std::nullopt, CacheLayer::kNone);
  });
}

void ProductCache::put(const std::string& key, const std::string& body) {
  local_.put(key, body, uv_now(loop_) + static_cast<uint64_t>(options_.local_ttl.count()));
  if (!redis_ || !redis_->ready()) return;
  std::string ttl = std::to_string(options_.redis_ttl.count());
  if (key.rfind("list:", 0) == 0) {
    // The hash expires as a whole, at most redis_ttl after its first page.
    redis_->command({"HSET", redisKey(key), key, body}, [](const queue::Reply&) {});
    redis_->command({"PEXPIRE", redisKey(key), ttl, "NX"}, [](const queue::Reply&) {});
  } else {
    redis_->command({"SET", redisKey(key), body, "PX", ttl}, [](const queue::Reply&) {});
  }
}

void ProductCache::invalidate(const std::vector<std::string>& skus) {
  ++stats_.invalidations;
  local_.eraseprefix("list:");
  std::vector<std::string> del{"DEL", options_.prefix + "lists"};
  for (const auto& sku : skus) {
    local_.erase(productKey(sku));
    del.push_back(redisKey(productKey(sku)));
  }
  if (redis_ && redis_->ready()) redis_->command(std::move(del), [](const queue::Reply&) {});
}

}  // namespace clusterd::jobs
