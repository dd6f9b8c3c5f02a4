// The product cache: the per-process LRU alone, and both layers with a real
// redis-server (including Redis going away).
#include <catch2/catch.hpp>

#include "jobs/cache.h"
#include "tests/db/loop.h"
#include "tests/support/servers.h"

namespace jobs_cache_test {

using namespace clusterd;
using namespace clusterd::jobs;
using namespace std::chrono_literals;
using clusterd::test::RedisServer;
using clusterd::test::TestLoop;

namespace {
struct Got {
  std::optional<std::string> body;
  CacheLayer layer = CacheLayer::kNone;
  bool done = false;
};

Got lookup(TestLoop& loop, ProductCache& c, const std::string& key) {
  Got g;
  c.get(key, [&](std::optional<std::string> b, CacheLayer l) {
    g = {std::move(b), l, true};
  });
  REQUIRE(loop.runUntil([&] { return g.done; }));
  return g;
}
}  // namespace

TEST_CASE("the LRU evicts the least recently used entry and expires by TTL", "[jobs][cache]") {
  LruCache lru(2);
  lru.put("a", "1", 100);
  lru.put("b", "2", 100);
  CHECK(lru.get("a", 0) == "1");  // a is now the most recent
  lru.put("c", "3", 100);
  CHECK_FALSE(lru.get("b", 0).has_value());
  CHECK(lru.get("a", 0) == "1");
  CHECK_FALSE(lru.get("a", 100).has_value());  // expired
  lru.put("list:1:20", "x", 100);
  lru.eraseprefix("list:");
  CHECK_FALSE(lru.get("list:1:20", 0).has_value());
}

TEST_CASE("reads come from the local layer, then Redis, and invalidation drops both",
          "[jobs][cache][redis]") {
  RedisServer redis;
  TestLoop loop;
  CacheOptions o;
  o.local_ttl = 50ms;
  auto addr = queue::parseRedisUrl(redis.url());
  REQUIRE(addr.ok());
  ProductCache cache(loop.get(), std::make_unique<queue::RedisConnection>(loop.get(), *addr), o);
  // Wait for the link.
  loop.runUntil([&] { return false; }, 200ms);
  CHECK(lookup(loop, cache, "product:SKU-1").layer == CacheLayer::kNone);
  cache.put("product:SKU-1", "{\"stock\":1}");
  cache.put(ProductCache::listKey(1, 20), "[page]");
  loop.runFor(20ms);
  CHECK(lookup(loop, cache, "product:SKU-1").layer == CacheLayer::kLocal);
  loop.runFor(80ms);  // past the local TTL
  Got g = lookup(loop, cache, "product:SKU-1");
  CHECK(g.layer == CacheLayer::kRedis);
  CHECK(g.body == "{\"stock\":1}");
  CHECK(redis.command({"PTTL", "clusterd:shop:product:SKU-1"}) != "-1");
  CHECK(redis.command({"HGET", "clusterd:shop:lists", "list:1:20"}) == "[page]");

  cache.invalidate({"SKU-1"});
  loop.runFor(20ms);
  CHECK(lookup(loop, cache, "product:SKU-1").layer == CacheLayer::kNone);
  CHECK(lookup(loop, cache, ProductCache::listKey(1, 20)).layer == CacheLayer::kNone);
  CHECK(redis.command({"EXISTS", "clusterd:shop:lists"}) == "0");
  CHECK(cache.stats().local_hits == 1);
  CHECK(cache.stats().redis_hits == 1);
}

TEST_CASE("with Redis down the cache answers misses and recovers when it is back",
          "[jobs][cache][redis]") {
  RedisServer redis;
  TestLoop loop;
  CacheOptions o;
  o.local_ttl = 1ms;
  ProductCache cache(loop.get(),
                     std::make_unique<queue::RedisConnection>(loop.get(), *queue::parseRedisUrl(redis.url())),
                     o);
  loop.runFor(100ms);
  redis.stop();
  loop.runFor(100ms);
  cache.put("product:X", "1");
  loop.runFor(10ms);
  CHECK(lookup(loop, cache, "product:X").layer == CacheLayer::kNone);
  redis.start();
  // The link comes back within its reconnect backoff (at most a second).
  bool back = false;
  for (int i = 0; i < 100 && !back; ++i) {
    cache.put("product:X", "2");
    loop.runFor(30ms);
    back = lookup(loop, cache, "product:X").body == std::optional<std::string>("2");
  }
  CHECK(back);
}

}  // namespace jobs_cache_test
