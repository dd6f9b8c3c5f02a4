// Behaviour of queue::Client against a real Redis: enqueue (single, bulk,
// delayed, priority, unique), inspection, the per-queue admin controls and
// the durability check (warning, or refusal under strict).
#include <catch2/catch.hpp>

#include <optional>

#include "queue/client.h"
#include "queue/consumer.h"
#include "queue/handlers.h"
#include "queue/redis.h"
#include "tests/queue/loop_support.h"
#include "tests/support/servers.h"

namespace queue_client_test {

using namespace clusterd;
using namespace clusterd::queue;
using namespace std::chrono_literals;

namespace {

// Runs one asynchronous client call to completion.
template <typename T, typename F>
Result<T> await(test::TestLoop& loop, F&& call) {
  std::optional<Result<T>> out;
  call([&](Result<T> r) { out.emplace(std::move(r)); });
  REQUIRE(loop.runUntil([&] { return out.has_value(); }, 10s));
  return std::move(*out);
}

NewJob job(std::string name, nlohmann::json payload = nullptr, JobOptions o = {}) {
  return NewJob{std::move(name), payloadFromJson(payload), o};
}

struct Fixture {
  test::RedisServer redis;
  test::TestLoop loop;
  std::unique_ptr<Client> client = Client::create(loop.get(), {.redis_url = redis.url()}).value();

  std::string enqueue(const std::string& q, NewJob j) {
    auto r = await<Enqueued>(loop, [&](auto cb) { client->enqueue(q, std::move(j), cb); });
    REQUIRE(r);
    return r->id;
  }
  QueueCounts counts(const std::string& q) {
    auto r = await<QueueCounts>(loop, [&](auto cb) { client->counts(q, cb); });
    REQUIRE(r);
    return *r;
  }
  std::optional<Job> show(const std::string& q, const std::string& id) {
    auto r = await<std::optional<Job>>(loop, [&](auto cb) { client->job(q, id, cb); });
    REQUIRE(r);
    return *r;
  }
  int64_t admin(const std::string& q, AdminOp op, const std::string& arg = "") {
    auto r = await<int64_t>(loop, [&](auto cb) { client->admin(q, op, arg, cb); });
    REQUIRE(r);
    return *r;
  }
};

}  // namespace

TEST_CASE_METHOD(Fixture, "enqueue returns increasing ids and the job reads back with its payload") {
  std::string a = enqueue("orders", job("order.process", {{"order_id", 7}}));
  std::string b = enqueue("orders", job("order.process", {{"order_id", 8}}));
  CHECK(std::stoll(b) > std::stoll(a));
  auto j = show("orders", a);
  REQUIRE(j);
  CHECK(j->name == "order.process");
  CHECK(j->state == JobState::kWaiting);
  CHECK(j->payloadJson() == nlohmann::json{{"order_id", 7}});
  CHECK(j->attempts == 3);
  auto c = counts("orders");
  CHECK(c.waiting == 2);
  CHECK(c.enqueued_total == 2);
  auto qs = await<std::vector<std::string>>(loop, [&](auto cb) { client->queues(cb); });
  REQUIRE(qs);
  CHECK(*qs == std::vector<std::string>{"orders"});
}

TEST_CASE_METHOD(Fixture, "bulk enqueue of many jobs returns one id per job in order") {
  std::vector<NewJob> jobs;
  for (int i = 0; i < 1234; ++i) jobs.push_back(job("noop", {{"i", i}}));
  auto r = await<std::vector<Enqueued>>(loop, [&](auto cb) { client->enqueueBulk("bulk", std::move(jobs), cb); });
  REQUIRE(r);
  REQUIRE(r->size() == 1234);
  for (size_t i = 1; i < r->size(); ++i) REQUIRE(std::stoll((*r)[i].id) == std::stoll((*r)[i - 1].id) + 1);
  CHECK(counts("bulk").waiting == 1234);
  auto j = show("bulk", (*r)[1000].id);
  REQUIRE(j);
  CHECK(j->payloadJson()["i"] == 1000);
}

TEST_CASE_METHOD(Fixture, "a delayed job is in the delayed state with its run time") {
  std::string id = enqueue("mail", job("email.batch", nullptr, {.delay = 60s}));
  auto j = show("mail", id);
  REQUIRE(j);
  CHECK(j->state == JobState::kDelayed);
  CHECK(j->when_ms > nowMs() + 50'000);
  CHECK(counts("mail").delayed == 1);
}

TEST_CASE_METHOD(Fixture, "a second enqueue with the same unique key returns the first id") {
  std::string a = enqueue("orders", job("order.process", nullptr, {.unique_key = "order-42"}));
  auto r = await<Enqueued>(loop, [&](auto cb) {
    client->enqueue("orders", job("order.process", nullptr, {.unique_key = "order-42"}), cb);
  });
  REQUIRE(r);
  CHECK(r->id == a);
  CHECK_FALSE(r->created);
  CHECK(counts("orders").waiting == 1);
  // Deleting the job frees the key.
  CHECK(admin("orders", AdminOp::kDelete, a) == 1);
  std::string c = enqueue("orders", job("order.process", nullptr, {.unique_key = "order-42"}));
  CHECK(c != a);
}

TEST_CASE_METHOD(Fixture, "invalid enqueues are refused with a message") {
  auto r = await<Enqueued>(loop, [&](auto cb) { client->enqueue("bad name!", job("x"), cb); });
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("invalid queue name") != std::string::npos);
  CHECK_FALSE(await<Enqueued>(loop, [&](auto cb) { client->enqueue("a{b}", job("x"), cb); }));
  CHECK_FALSE(await<Enqueued>(loop, [&](auto cb) { client->enqueue(std::string(129, 'q'), job("x"), cb); }));
  // Every name the ecosystem file accepts works, ':' included.
  CHECK(await<Enqueued>(loop, [&](auto cb) { client->enqueue("shop:orders.v2", job("x"), cb); }));
  auto p = await<Enqueued>(loop, [&](auto cb) { client->enqueue("q", job("x", nullptr, {.priority = 5000}), cb); });
  REQUIRE_FALSE(p);
  CHECK(p.error().message.find("priority") != std::string::npos);
}

TEST_CASE_METHOD(Fixture, "pause, resume, drain and delete change the queue") {
  enqueue("q", job("noop"));
  enqueue("q", job("noop", nullptr, {.delay = 60s}));
  std::string p = enqueue("q", job("noop", nullptr, {.priority = 5}));
  admin("q", AdminOp::kPause);
  CHECK(counts("q").paused);
  admin("q", AdminOp::kResume);
  CHECK_FALSE(counts("q").paused);
  auto list = await<std::vector<Job>>(loop, [&](auto cb) { client->listJobs("q", JobState::kWaiting, 0, 10, cb); });
  REQUIRE(list);
  REQUIRE(list->size() == 2);
  CHECK((*list)[0].id == p);  // priority jobs are listed (and run) first
  CHECK(admin("q", AdminOp::kDrain) == 3);
  auto c = counts("q");
  CHECK(c.waiting == 0);
  CHECK(c.delayed == 0);
  CHECK_FALSE(show("q", p));
}

TEST_CASE("enqueue while redis is down fails fast with a clear error") {
  test::RedisServer redis;
  test::TestLoop loop;
  auto client = Client::create(loop.get(), {.redis_url = redis.url()}).value();
  auto first = await<Enqueued>(loop, [&](auto cb) { client->enqueue("q", job("noop"), cb); });
  REQUIRE(first);
  redis.kill();
  int failures = 0;
  std::string message;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) {
    auto r = await<Enqueued>(loop, [&](auto cb) { client->enqueue("q", job("noop"), cb); });
    if (!r) {
      ++failures;
      message = r.error().message;
    }
  }
  CHECK(failures == 3);
  CHECK(std::chrono::steady_clock::now() - t0 < 3s);
  CHECK(message.find("enqueue to queue 'q' failed") != std::string::npos);
  CHECK(message.find(std::to_string(redis.port())) != std::string::npos);
  redis.start();
  bool ok = false;
  REQUIRE(loop.runUntil([&] {
    client->enqueue("q", job("noop"), [&](Result<Enqueued> r) { ok = ok || r.ok(); });
    loop.runFor(50ms);
    return ok;
  }, 10s));
}

TEST_CASE("the durability check warns about a redis without AOF and refuses under strict") {
  test::RedisServer redis(test::RedisServer::Options{.appendonly = false});
  test::TestLoop loop;
  auto lax = Client::create(loop.get(), {.redis_url = redis.url()}).value();
  auto r = await<bool>(loop, [&](auto cb) { lax->checkDurability(cb); });
  REQUIRE(r);
  CHECK_FALSE(*r);
  auto strict = Client::create(loop.get(), {.redis_url = redis.url(), .strict = true}).value();
  auto s = await<bool>(loop, [&](auto cb) { strict->checkDurability(cb); });
  REQUIRE_FALSE(s);
  CHECK(s.error().message.find("appendonly") != std::string::npos);

  test::RedisServer good;  // AOF on; the default policy is noeviction
  auto g = Client::create(loop.get(), {.redis_url = good.url(), .strict = true}).value();
  auto ok = await<bool>(loop, [&](auto cb) { g->checkDurability(cb); });
  REQUIRE(ok);
  CHECK(*ok);
}

TEST_CASE("the durability check names an evicting maxmemory-policy, a strict consumer refuses to start") {
  test::RedisServer evicting(test::RedisServer::Options{.extra_args = {"--maxmemory-policy", "allkeys-lru"}});
  test::TestLoop loop;
  auto lax = Client::create(loop.get(), {.redis_url = evicting.url()}).value();
  auto r = await<bool>(loop, [&](auto cb) { lax->checkDurability(cb); });
  REQUIRE(r);
  CHECK_FALSE(*r);
  auto strict = Client::create(loop.get(), {.redis_url = evicting.url(), .strict = true}).value();
  auto s = await<bool>(loop, [&](auto cb) { strict->checkDurability(cb); });
  REQUIRE_FALSE(s);
  CHECK(s.error().message.find("maxmemory-policy is 'allkeys-lru'") != std::string::npos);
  CHECK(s.error().message.find("appendonly") == std::string::npos);  // AOF is on here

  // A consumer under strict refuses to start and takes no job; without
  // strict it warns and runs.
  auto enq = await<Enqueued>(loop, [&](auto cb) { lax->enqueue("sq", job("noop"), cb); });
  REQUIRE(enq);
  auto refusing = Consumer::create(loop.get(), {.redis_url = evicting.url(), .queues = {{"sq", 1}}, .strict = true})
                      .value();
  registerBuiltinHandlers(*refusing, loop.get());
  auto no = await<void>(loop, [&](auto cb) { refusing->start(cb); });
  REQUIRE_FALSE(no);
  CHECK(no.error().message.find("refusing") != std::string::npos);
  loop.runFor(200ms);
  CHECK(refusing->stats().reserved == 0);
  auto running = Consumer::create(loop.get(), {.redis_url = evicting.url(), .queues = {{"sq", 1}}}).value();
  registerBuiltinHandlers(*running, loop.get());
  REQUIRE(await<void>(loop, [&](auto cb) { running->start(cb); }));
  REQUIRE(loop.runUntil([&] { return running->stats().completed == 1; }));
}

}  // namespace queue_client_test
