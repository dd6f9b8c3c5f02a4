// The ecosystem's per-queue defaults (config::QueueDefaults) take effect:
// attempts/backoff/timeout on enqueue and for records that leave them out,
// the lease of a queue's reservations, and the retention and rate limit
// every consumer reads from Redis.
#include <fmt/format.h>

#include "queue/handlers.h"
#include "tests/queue/queue_fixture.h"

namespace queue_defaults_test {

using namespace clusterd;
using namespace clusterd::queue;
using namespace std::chrono_literals;
using test::newJob;

namespace {

// The deadline of the only lease of `queue`, minus now (ms); -1 if none.
int64_t leaseLeft(test::RedisServer& redis, const std::string& queue) {
  std::string s = redis.command({"ZRANGE", "cq:{" + queue + "}:leases", "0", "0", "WITHSCORES"});
  // The fixture prints a two-element reply as "token\nscore".
  auto nl = s.find('\n');
  if (nl == std::string::npos) return -1;
  return std::atoll(s.c_str() + nl + 1) - nowMs();
}

}  // namespace

TEST_CASE_METHOD(test::QueueFixture, "a client applies its queue's attempts, backoff and timeout to new jobs") {
  config::QueueDefaults d;
  d.attempts = 7;
  d.backoff = 250ms;
  d.backoff_type = "fixed";
  d.timeout = 1500ms;
  auto c = Client::create(loop.get(), {.redis_url = redis.url(), .defaults = {{"dq", d}}}).value();
  auto r = test::await<Enqueued>(loop, [&](auto cb) { c->enqueue("dq", newJob("x"), cb); });
  REQUIRE(r);
  auto j = show("dq", r->id);
  REQUIRE(j);
  CHECK(j->attempts == 7);
  CHECK(j->backoff_ms == 250);
  CHECK(j->backoff_type == BackoffType::kFixed);
  CHECK(j->timeout_ms == 1500);
  // A job's own options win; other queues keep the built-in defaults.
  auto r2 = test::await<Enqueued>(loop, [&](auto cb) { c->enqueue("dq", newJob("x", nullptr, {.attempts = 2}), cb); });
  REQUIRE(r2);
  CHECK(show("dq", r2->id)->attempts == 2);
  auto r3 = test::await<Enqueued>(loop, [&](auto cb) { c->enqueue("other", newJob("x"), cb); });
  REQUIRE(r3);
  CHECK(show("other", r3->id)->attempts == 3);
}

TEST_CASE_METHOD(test::QueueFixture, "a queue's lease from its defaults is the lease of its reservations") {
  config::QueueDefaults d;
  d.lease = 600ms;
  auto c = Consumer::create(loop.get(), {.redis_url = redis.url(),
                                         .queues = {{"short", 2}, {"long", 2}, {"own", 2, 900ms}},
                                         .lease = 20s,
                                         .defaults = {{"short", d}, {"own", d}}})
               .value();
  std::vector<Done> held;
  c->handle("hold", [&](const Job&, Done done) { held.push_back(std::move(done)); });
  enqueue("short", newJob("hold"));
  enqueue("long", newJob("hold"));
  enqueue("own", newJob("hold"));
  start(*c);
  REQUIRE(loop.runUntil([&] { return held.size() == 3; }));
  int64_t s = leaseLeft(redis, "short"), l = leaseLeft(redis, "long"), o = leaseLeft(redis, "own");
  CHECK(s > 0);
  CHECK(s <= 600);
  CHECK(l > 10'000);  // the consumer's lease: no defaults entry for "long"
  CHECK(o > 600);     // ConsumerQueue::lease wins over the defaults
  CHECK(o <= 900);
  // The short lease is extended while the job runs (every 200 ms), so it
  // outlives its first deadline.
  loop.runFor(1000ms);
  CHECK(leaseLeft(redis, "short") > 0);
  CHECK(show("short", "1")->state == JobState::kActive);
  for (auto& h : held) h(success());
  REQUIRE(loop.runUntil([&] { return c->stats().completed == 3; }));
  CHECK(show("short", "1")->stalls == 0);
}

TEST_CASE_METHOD(test::QueueFixture, "a lease below 100 ms in the defaults is refused") {
  config::QueueDefaults d;
  d.lease = 50ms;
  auto c = Consumer::create(loop.get(), {.redis_url = redis.url(), .queues = {{"q", 1}}, .defaults = {{"q", d}}});
  REQUIRE_FALSE(c);
  CHECK(c.error().message.find("queue.queues.q.lease") != std::string::npos);
}

TEST_CASE_METHOD(test::QueueFixture, "a record that leaves out attempts and timeout takes the queue's defaults") {
  // A minimal record as a client in another language would write it:
  // {"name": "hang"} and {"name": "fail"}.
  redis.command({"HSET", "cq:{fq}:jobs", "1", std::string("\x81\xa4name\xa4hang")});
  redis.command({"HSET", "cq:{fq}:jobs", "2", std::string("\x81\xa4name\xa4" "fail")});
  redis.command({"RPUSH", "cq:{fq}:wait", "1", "2"});
  config::QueueDefaults d;
  d.attempts = 1;
  d.timeout = 150ms;
  auto c = Consumer::create(loop.get(), {.redis_url = redis.url(), .queues = {{"fq", 2}}, .defaults = {{"fq", d}}})
               .value();
  int fails = 0;
  std::vector<Done> held;
  c->handle("hang", [&](const Job&, Done done) { held.push_back(std::move(done)); });
  c->handle("fail", [&](const Job&, Done done) { done(Error{fmt::format("no {}", ++fails)}); });
  start(*c);
  REQUIRE(loop.runUntil([&] { return counts("fq").dead == 2; }, 5s));
  CHECK(fails == 1);  // one attempt, not the built-in three
  CHECK(show("fq", "1")->reason.find("timed out after 150 ms") != std::string::npos);
}

TEST_CASE_METHOD(test::QueueFixture, "a consumer writes its queues' retention and rate limit to Redis at start") {
  config::QueueDefaults d;
  d.keep_completed = 4;
  d.keep_completed_age = 60s;
  d.keep_dead = 2;
  d.keep_dead_age = 120s;
  d.rate_limit = 50;
  d.rate_window = 5min;
  std::vector<NewJob> jobs;
  for (int i = 0; i < 12; ++i) jobs.push_back(newJob("noop"));
  enqueueMany("ret", std::move(jobs));
  auto c = Consumer::create(loop.get(), {.redis_url = redis.url(), .queues = {{"ret", 4}}, .max_stalls = 5,
                                         .defaults = {{"ret", d}}})
               .value();
  registerBuiltinHandlers(*c, loop.get());
  start(*c);
  REQUIRE(loop.runUntil([&] { return c->stats().completed == 12; }));
  const std::string key = "cq:{ret}:config";
  CHECK(redis.command({"HGET", key, "keep_completed"}) == "4");
  CHECK(redis.command({"HGET", key, "keep_completed_age"}) == "60000");
  CHECK(redis.command({"HGET", key, "keep_dead"}) == "2");
  CHECK(redis.command({"HGET", key, "keep_dead_age"}) == "120000");
  CHECK(redis.command({"HGET", key, "rate_limit"}) == "50");
  CHECK(redis.command({"HGET", key, "rate_window"}) == "300000");
  CHECK(redis.command({"HGET", key, "max_stalls"}) == "5");
  CHECK(counts("ret").completed == 4);
}

}  // namespace queue_defaults_test
