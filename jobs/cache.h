// The two-layer cache in front of the product catalogue: a small LRU with a
// TTL in each worker process, in front of Redis with a (longer) TTL, shared
// by every worker and host. Redis is reached through the queue module's
// connection (queue::RedisConnection), which reconnects on its own.
//
// Design: reads try the LRU, then Redis, then PostgreSQL, filling the layers
// on the way back. order.process and inventory.adjust call invalidate()
// after their COMMIT: it drops the SKUs' product entries and every cached
// list page, in Redis and in this process's LRU. Other processes' LRUs are
// not told; their entries die within the local TTL (1 s by default), which
// is the bound on a stale read there. Redis is optional: when it is down,
// reads fall through to PostgreSQL. The cache never holds a write: orders
// and stock live only in PostgreSQL.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "queue/redis.h"

namespace clusterd::jobs {

// A per-process LRU of strings with a TTL per entry.
class LruCache {
 public:
  explicit LruCache(size_t capacity) : capacity_(capacity) {}
  std::optional<std::string> get(const std::string& key, uint64_t now_ms);
  void put(const std::string& key, std::string value, uint64_t expires_ms);
  void erase(const std::string& key);
  // Drops every key starting with `prefix`.
  void eraseprefix(const std::string& prefix);
  size_t size() const { return map_.size(); }

 private:
  struct Entry {
    std::string key;
    std::string value;
    uint64_t expires_ms;
  };
  size_t capacity_;
  std::list<Entry> order_;  // most recent first
  std::unordered_map<std::string, std::list<Entry>::iterator> map_;
};

struct CacheOptions {
  size_t local_capacity = 10'000;
  std::chrono::milliseconds local_ttl{1000};
  std::chrono::milliseconds redis_ttl{10'000};
  std::string prefix = "clusterd:shop:";  // Redis key prefix
};

struct CacheStats {
  uint64_t local_hits = 0;
  uint64_t redis_hits = 0;
  uint64_t misses = 0;
  uint64_t invalidations = 0;
};

enum class CacheLayer { kLocal, kRedis, kNone };

class ProductCache {
 public:
  // `redis` may be null: then only the local layer is used. The cache
  // starts connecting it; while it is not ready, reads skip it.
  ProductCache(uv_loop_t* loop, std::unique_ptr<queue::RedisConnection> redis, CacheOptions options);
  ~ProductCache();

  // Keys: "product:<sku>" and "list:<page>:<limit>".
  static std::string productKey(const std::string& sku) { return "product:" + sku; }
  static std::string listKey(int page, int limit);

  // Looks the key up; `done` gets the cached body and the layer it came from.
  void get(const std::string& key,
           std::function<void(std::optional<std::string>, CacheLayer)> done);
  void put(const std::string& key, const std::string& body);
  void invalidate(const std::vector<std::string>& skus);

  const CacheStats& stats() const { return stats_; }
  const CacheOptions& options() const { return options_; }

 private:
  std::string redisKey(const std::string& key) const;

  uv_loop_t* loop_;
  std::unique_ptr<queue::RedisConnection> redis_;
  CacheOptions options_;
  LruCache local_;
  CacheStats stats_;
  std::shared_ptr<ProductCache*> self_;
};

}  // namespace clusterd::jobs
