// Behaviour of queue::Consumer in this process against a real Redis:
// processing, wake-up, delays, priorities, retries, dead jobs, timeouts,
// malformed jobs, rate limits, pause, drain and retention.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>

#include "queue/handlers.h"
#include "tests/queue/queue_fixture.h"

namespace queue_consumer_test {

using namespace clusterd;
using namespace clusterd::queue;
using namespace std::chrono_literals;
using test::newJob;

TEST_CASE_METHOD(test::QueueFixture, "enqueued jobs run once each and are counted as completed") {
  std::vector<NewJob> jobs;
  for (int i = 0; i < 300; ++i) jobs.push_back(newJob("count", {{"i", i}}));
  enqueueMany("work", std::move(jobs));
  auto c = consumer("work", 20);
  std::multiset<int> seen;
  c->handle("count", [&](const Job& j, Done done) {
    seen.insert(j.payloadJson()["i"].get<int>());
    done(success());
  });
  start(*c);
  REQUIRE(loop.runUntil([&] { return c->stats().completed == 300; }));
  CHECK(seen.size() == 300);
  CHECK(std::set<int>(seen.begin(), seen.end()).size() == 300);
  auto k = counts("work");
  CHECK(k.waiting == 0);
  CHECK(k.active == 0);
  CHECK(k.completed_total == 300);
  CHECK(k.per_min == 300);
}

TEST_CASE_METHOD(test::QueueFixture, "a consumer never runs more jobs of a queue at once than its concurrency") {
  std::vector<NewJob> jobs;
  for (int i = 0; i < 200; ++i) jobs.push_back(newJob("hold", {{"i", i}}));
  enqueueMany("work", std::move(jobs));
  auto c = consumer("work", 5);
  int running = 0, most = 0;
  size_t most_active = 0;
  c->handle("hold", [&](const Job&, Done done) {
    most = std::max(most, ++running);
    // Finish on a later loop turn, so that jobs overlap and reservations
    // are sent while others run.
    auto* t = new uv_timer_t;
    uv_timer_init(loop.get(), t);
    t->data = new Done([&, done](Outcome o) {
      --running;
      done(std::move(o));
    });
    uv_timer_start(
        t,
        [](uv_timer_t* h) {
          auto* d = static_cast<Done*>(h->data);
          (*d)(success());
          delete d;
          uv_close(reinterpret_cast<uv_handle_t*>(h), [](uv_handle_t* x) { delete reinterpret_cast<uv_timer_t*>(x); });
        },
        1 + static_cast<uint64_t>(most % 3), 0);
  });
  start(*c);
  REQUIRE(loop.runUntil([&] {
    most_active = std::max(most_active, static_cast<size_t>(counts("work").active));
    return c->stats().completed == 200;
  }, 30s));
  CHECK(most <= 5);
  CHECK(most >= 2);
  // Redis never had more of them leased to this consumer than it may run.
  CHECK(most_active <= 5);
}

TEST_CASE_METHOD(test::QueueFixture, "the consumer counts completed, failed, dead and running jobs per queue") {
  for (int i = 0; i < 3; ++i) enqueue("ok", newJob("ok"));
  enqueue("bad", newJob("bad", nullptr, {.attempts = 1}));
  enqueue("bad", newJob("hold"));
  auto c = Consumer::create(loop.get(), {.redis_url = redis.url(), .queues = {{"ok", 2}, {"bad", 2}, {"idle", 1}}})
               .value();
  c->handle("ok", [](const Job&, Done done) { done(success()); });
  c->handle("bad", [](const Job&, Done done) { done(Error{"no"}); });
  std::vector<Done> held;
  c->handle("hold", [&](const Job&, Done done) { held.push_back(std::move(done)); });
  start(*c);
  REQUIRE(loop.runUntil([&] { return c->stats().completed == 3 && c->stats().dead == 1 && held.size() == 1; }));
  ConsumerStats s = c->stats();
  REQUIRE(s.by_queue.size() == 3);
  CHECK(s.by_queue["ok"].completed == 3);
  CHECK(s.by_queue["ok"].failed == 0);
  CHECK(s.by_queue["ok"].in_flight == 0);
  CHECK(s.by_queue["bad"].completed == 0);
  CHECK(s.by_queue["bad"].failed == 1);
  CHECK(s.by_queue["bad"].dead == 1);
  CHECK(s.by_queue["bad"].in_flight == 1);
  CHECK(s.by_queue["bad"].reserved == 2);
  CHECK(s.by_queue["idle"].reserved == 0);
  CHECK(s.in_flight == 1);  // the totals are the sums
  CHECK(s.reserved == 5);
  held.front()(success());
  REQUIRE(loop.runUntil([&] { return c->stats().by_queue["bad"].completed == 1; }));
  CHECK(c->stats().by_queue["bad"].in_flight == 0);
}

TEST_CASE_METHOD(test::QueueFixture, "an idle consumer is woken by an enqueue without polling") {
  auto c = consumer("idle", 5);
  std::optional<std::chrono::steady_clock::time_point> ran;
  c->handle("ping", [&](const Job&, Done done) {
    ran = std::chrono::steady_clock::now();
    done(success());
  });
  start(*c);
  loop.runFor(300ms);  // the consumer is now blocked on the wake-up key
  auto before = redis.command({"INFO", "commandstats"});
  loop.runFor(500ms);
  auto after = redis.command({"INFO", "commandstats"});
  // No reservations while idle: the evalsha count did not move.
  auto evalsha = [](const std::string& s) {
    auto p = s.find("cmdstat_evalsha:calls=");
    return p == std::string::npos ? std::string() : s.substr(p, s.find(',', p) - p);
  };
  CHECK(evalsha(before) == evalsha(after));
  auto t0 = std::chrono::steady_clock::now();
  enqueue("idle", newJob("ping"));
  REQUIRE(loop.runUntil([&] { return ran.has_value(); }, 5s));
  CHECK(*ran - t0 < 1s);
}

TEST_CASE_METHOD(test::QueueFixture, "a delayed job runs after its delay and not before") {
  auto c = consumer("later", 5);
  std::optional<int64_t> ran_at;
  c->handle("tick", [&](const Job&, Done done) {
    ran_at = nowMs();
    done(success());
  });
  start(*c);
  int64_t t0 = nowMs();
  enqueue("later", newJob("tick", nullptr, {.delay = 400ms}));
  REQUIRE(loop.runUntil([&] { return ran_at.has_value(); }, 5s));
  CHECK(*ran_at - t0 >= 400);
}

TEST_CASE_METHOD(test::QueueFixture, "higher priority jobs run first, default jobs in FIFO order, negative last") {
  enqueue("p", newJob("rec", 1));
  enqueue("p", newJob("rec", 2));
  enqueue("p", newJob("rec", -1, {.priority = -5}));
  enqueue("p", newJob("rec", 10, {.priority = 10}));
  enqueue("p", newJob("rec", 5, {.priority = 5}));
  auto c = consumer("p", 1);
  std::vector<int> order;
  c->handle("rec", [&](const Job& j, Done done) {
    order.push_back(j.payloadJson().get<int>());
    done(success());
  });
  start(*c);
  REQUIRE(loop.runUntil([&] { return order.size() == 5; }));
  CHECK(order == std::vector<int>{10, 5, 1, 2, -1});
}

TEST_CASE_METHOD(test::QueueFixture, "a failing job is retried with backoff and succeeds on a later attempt") {
  std::string id = enqueue("r", newJob("flaky", nullptr, {.attempts = 3, .backoff = 100ms}));
  auto c = consumer("r", 2);
  std::vector<int64_t> runs;
  c->handle("flaky", [&](const Job& j, Done done) {
    runs.push_back(nowMs());
    if (j.attempt < 2) return done(Error{fmt::format("boom {}", j.attempt)});
    done(success());
  });
  start(*c);
  REQUIRE(loop.runUntil([&] { return c->stats().completed == 1; }));
  REQUIRE(runs.size() == 3);
  CHECK(runs[1] - runs[0] >= 50);   // first backoff: 50-100 ms with jitter
  CHECK(runs[2] - runs[1] >= 100);  // second: 100-200 ms
  auto k = counts("r");
  CHECK(k.failed_total == 2);
  CHECK(k.completed_total == 1);
}

TEST_CASE_METHOD(test::QueueFixture, "a job that fails every attempt is dead with its error history, and can be retried") {
  std::string id = enqueue("d", newJob("bad", nullptr, {.attempts = 2, .backoff = 10ms}));
  auto c = consumer("d", 2);
  int runs = 0;
  c->handle("bad", [&](const Job&, Done done) { done(Error{fmt::format("failure number {}", ++runs)}); });
  start(*c);
  REQUIRE(loop.runUntil([&] { return counts("d").dead == 1; }));
  auto j = show("d", id);
  REQUIRE(j);
  CHECK(j->state == JobState::kDead);
  CHECK(j->attempt == 2);
  REQUIRE(j->errors.size() == 2);
  CHECK(j->errors[0].error == "failure number 1");
  CHECK(j->errors[1].error == "failure number 2");
  CHECK(j->reason == "failure number 2");
  // An admin retry puts it back to work with fresh attempts.
  CHECK(admin("d", AdminOp::kRetry, id) == 1);
  REQUIRE(loop.runUntil([&] { return runs == 4; }));
}

TEST_CASE_METHOD(test::QueueFixture, "a permanent failure sends the job to dead at once, its attempts unused") {
  std::string async_id = enqueue("pf", newJob("bad.async", nullptr, {.attempts = 5, .backoff = 10ms}));
  std::string sync_id = enqueue("pf", newJob("bad.sync", nullptr, {.attempts = 5, .backoff = 10ms}));
  std::string plain_id = enqueue("pf", newJob("flaky", nullptr, {.attempts = 2, .backoff = 10ms}));
  auto c = consumer("pf", 4);
  int async_runs = 0, plain_runs = 0;
  std::atomic<int> sync_runs = 0;
  c->handle("bad.async", [&](const Job&, Done done) {
    ++async_runs;
    done(permanentFailure("order 7: unknown sku 'X'"));
  });
  c->handleSync("bad.sync", [&](const Job&) -> Result<void> {
    ++sync_runs;
    return permanentFailure("duplicate key value violates unique constraint");
  });
  c->handle("flaky", [&](const Job&, Done done) { done(Error{fmt::format("try {}", ++plain_runs)}); });
  start(*c);
  REQUIRE(loop.runUntil([&] { return counts("pf").dead == 3; }));
  CHECK(async_runs == 1);
  CHECK(sync_runs == 1);
  CHECK(plain_runs == 2);  // an ordinary error still uses its attempts
  auto a = show("pf", async_id);
  REQUIRE(a);
  CHECK(a->state == JobState::kDead);
  CHECK(a->permanent);
  CHECK(a->attempt == 1);
  CHECK(a->reason == "permanent failure: order 7: unknown sku 'X'");
  REQUIRE(a->errors.size() == 1);
  CHECK(a->errors[0].error == a->reason);
  CHECK(a->toJson().value("permanent", false));
  auto s = show("pf", sync_id);
  REQUIRE(s);
  CHECK(s->permanent);
  CHECK(s->reason == "permanent failure: duplicate key value violates unique constraint");
  auto p = show("pf", plain_id);
  REQUIRE(p);
  CHECK_FALSE(p->permanent);
  CHECK(p->attempt == 2);
  auto k = counts("pf");
  CHECK(k.failed_total == 4);
  CHECK(k.dead_total == 3);
  CHECK(c->stats().dead == 3);
  // An admin retry gives it a fresh start, without the permanent mark.
  CHECK(admin("pf", AdminOp::kRetry, async_id) == 1);
  REQUIRE(loop.runUntil([&] { return async_runs == 2; }));
  REQUIRE(loop.runUntil([&] { return show("pf", async_id)->state == JobState::kDead; }));
  CHECK(show("pf", async_id)->attempt == 1);
}

TEST_CASE("permanentFailure marks its Error, other errors are not permanent") {
  Error e = permanentFailure("bad data");
  CHECK(e.message == "permanent failure: bad data");
  CHECK(isPermanentFailure(e));
  CHECK_FALSE(isPermanentFailure(Error{"connection refused"}));
  CHECK_FALSE(isPermanentFailure(Error{"while saving: " + e.message}));
}

TEST_CASE_METHOD(test::QueueFixture, "a job that runs past its timeout fails with a timeout error") {
  std::string id = enqueue("t", newJob("slow", nullptr, {.attempts = 1, .timeout = 100ms}));
  auto c = consumer("t", 2);
  std::vector<Done> held;  // never completed in time
  c->handle("slow", [&](const Job&, Done done) { held.push_back(std::move(done)); });
  start(*c);
  REQUIRE(loop.runUntil([&] { return counts("t").dead == 1; }));
  auto j = show("t", id);
  REQUIRE(j);
  CHECK(j->reason.find("timed out after 100 ms") != std::string::npos);
  // A late completion is ignored.
  for (auto& d : held) d(success());
  loop.runFor(50ms);
  CHECK(counts("t").completed_total == 0);
}

TEST_CASE_METHOD(test::QueueFixture, "malformed jobs go to dead with a reason and the consumer keeps working") {
  // Not msgpack, a record without a name, an unknown job name, an id without a record.
  redis.command({"HSET", "cq:{m}:jobs", "900", "this is not msgpack"});
  redis.command({"HSET", "cq:{m}:jobs", "901", std::string("\x81\xa1x\x01", 4)});  // {"x": 1}
  redis.command({"RPUSH", "cq:{m}:wait", "900", "901", "902"});
  std::string unknown = enqueue("m", newJob("no.such.handler"));
  std::string good = enqueue("m", newJob("ok"));
  auto c = consumer("m", 4);
  bool ran = false;
  c->handle("ok", [&](const Job&, Done done) {
    ran = true;
    done(success());
  });
  start(*c);
  REQUIRE(loop.runUntil([&] { return ran && counts("m").dead == 4; }));
  CHECK(show("m", "900")->reason.find("not msgpack") != std::string::npos);
  CHECK(show("m", "901")->reason.find("no 'name'") != std::string::npos);
  CHECK(show("m", unknown)->reason.find("unknown job name 'no.such.handler'") != std::string::npos);
  auto dead = await<std::vector<Job>>(loop, [&](auto cb) { client->listJobs("m", JobState::kDead, 0, 10, cb); });
  REQUIRE(dead);
  bool missing_record = false;
  for (auto& j : *dead) missing_record = missing_record || j.id == "902";
  CHECK(missing_record);
  CHECK(show("m", good)->state == JobState::kCompleted);
}

TEST_CASE_METHOD(test::QueueFixture, "sync handlers run off the loop thread") {
  enqueue("s", newJob("block", nullptr));
  auto c = consumer("s", 2);
  std::thread::id loop_thread = std::this_thread::get_id(), ran_on;
  c->handleSync("block", [&](const Job&) -> Result<void> {
    ran_on = std::this_thread::get_id();
    std::this_thread::sleep_for(20ms);
    return success();
  });
  start(*c);
  REQUIRE(loop.runUntil([&] { return c->stats().completed == 1; }));
  CHECK(ran_on != loop_thread);
}

TEST_CASE_METHOD(test::QueueFixture, "the rate limit caps jobs per window across the queue") {
  setConfig("rl", "rate_limit", "5");
  setConfig("rl", "rate_window", "1000");
  std::vector<NewJob> jobs;
  for (int i = 0; i < 12; ++i) jobs.push_back(newJob("noop"));
  enqueueMany("rl", std::move(jobs));
  auto c = consumer("rl", 10);
  registerBuiltinHandlers(*c, loop.get());
  start(*c);
  loop.runFor(600ms);
  CHECK(c->stats().completed == 5);
  REQUIRE(loop.runUntil([&] { return c->stats().completed == 12; }, 5s));
}

TEST_CASE_METHOD(test::QueueFixture, "the rate limit is a sliding window: no span of one window holds more than N") {
  // 5 per second across two consumers. One job opens a window; 9 more come
  // 700 ms later. A fixed window would run 4 of them at once and 5 more when
  // it resets at 1 s: 9 starts within 300 ms. Sliding, the 5th job after
  // the first waits until the first is a window old.
  setConfig("sw", "rate_limit", "5");
  setConfig("sw", "rate_window", "1000");
  std::vector<int64_t> starts;
  auto record = [&](const Job&, Done done) {
    starts.push_back(nowMs());
    done(success());
  };
  auto c1 = consumer("sw", 10);
  auto c2 = consumer("sw", 10);
  c1->handle("t", record);
  c2->handle("t", record);
  start(*c1);
  start(*c2);
  enqueue("sw", newJob("t"));
  REQUIRE(loop.runUntil([&] { return starts.size() == 1; }));
  loop.runFor(700ms);
  std::vector<NewJob> jobs;
  for (int i = 0; i < 9; ++i) jobs.push_back(newJob("t"));
  enqueueMany("sw", std::move(jobs));
  REQUIRE(loop.runUntil([&] { return starts.size() == 10; }, 5s));
  std::sort(starts.begin(), starts.end());
  // Start times here trail the reservations in Redis (on a busy machine by
  // many ms); 800 ms leaves 200 ms for that, while a fixed window puts
  // starts 1 and 6 about 300 ms apart.
  for (size_t i = 0; i + 5 < starts.size(); ++i) {
    INFO("starts " << i << " and " << i + 5 << " are " << starts[i + 5] - starts[i] << " ms apart");
    CHECK(starts[i + 5] - starts[i] >= 800);
  }
  REQUIRE(loop.runUntil([&] { return c1->stats().completed + c2->stats().completed == 10; }));
}

TEST_CASE_METHOD(test::QueueFixture, "a paused queue runs nothing until resumed") {
  admin("pz", AdminOp::kPause);
  enqueue("pz", newJob("noop"));
  auto c = consumer("pz", 2);
  registerBuiltinHandlers(*c, loop.get());
  start(*c);
  loop.runFor(300ms);
  CHECK(c->stats().completed == 0);
  admin("pz", AdminOp::kResume);
  REQUIRE(loop.runUntil([&] { return c->stats().completed == 1; }, 3s));
}

TEST_CASE_METHOD(test::QueueFixture, "drain finishes running jobs, or releases them at the timeout") {
  enqueue("g", newJob("sleep", {{"ms", 150}}));
  auto c = consumer("g", 2);
  registerBuiltinHandlers(*c, loop.get());
  start(*c);
  REQUIRE(loop.runUntil([&] { return c->stats().in_flight == 1; }));
  bool drained = false;
  c->drain(5s, [&] { drained = true; });
  REQUIRE(loop.runUntil([&] { return drained; }));
  CHECK(c->stats().completed == 1);

  std::string id = enqueue("g2", newJob("hang"));
  auto c2 = consumer("g2", 2);
  c2->handle("hang", [](const Job&, Done) {});
  start(*c2);
  REQUIRE(loop.runUntil([&] { return c2->stats().in_flight == 1; }));
  bool drained2 = false;
  c2->drain(100ms, [&] { drained2 = true; });
  REQUIRE(loop.runUntil([&] { return drained2; }));
  auto j = show("g2", id);
  REQUIRE(j);
  CHECK(j->state == JobState::kWaiting);  // released, not failed
  CHECK(j->attempt == 0);
}

TEST_CASE_METHOD(test::QueueFixture, "completed jobs are kept only up to the count limit") {
  setConfig("keep", "keep_completed", "10");
  std::vector<NewJob> jobs;
  for (int i = 0; i < 60; ++i) jobs.push_back(newJob("noop"));
  enqueueMany("keep", std::move(jobs));
  auto c = consumer("keep", 8);
  registerBuiltinHandlers(*c, loop.get());
  start(*c);
  REQUIRE(loop.runUntil([&] { return c->stats().completed == 60; }));
  CHECK(counts("keep").completed == 10);
  CHECK(redis.command({"HLEN", "cq:{keep}:jobs"}) == "10");
  CHECK(admin("keep", AdminOp::kClean, "0") == 10);
  CHECK(redis.command({"HLEN", "cq:{keep}:jobs"}) == "0");
}

TEST_CASE_METHOD(test::QueueFixture, "command handlers get the payload on stdin and fail with stderr") {
  test::TempDir dir;
  config::HandlerSpec ok{"cmd.ok", {"/bin/sh", "-c", "cat > " + dir.file("in.json")}, 5s};
  config::HandlerSpec bad{"cmd.bad", {"/bin/sh", "-c", "echo 'no stock for sku 9' >&2; exit 3"}, 5s};
  config::HandlerSpec slow{"cmd.slow", {"/bin/sh", "-c", "sleep 5"}, 100ms};
  config::HandlerSpec data{"cmd.data", {"/bin/sh", "-c", "echo 'bad sku' >&2; exit 65"}, 5s};
  std::string a = enqueue("c", newJob("cmd.ok", {{"order", 1}}));
  std::string b = enqueue("c", newJob("cmd.bad", nullptr, {.attempts = 1}));
  std::string s = enqueue("c", newJob("cmd.slow", nullptr, {.attempts = 1}));
  std::string d = enqueue("c", newJob("cmd.data", nullptr, {.attempts = 4}));
  auto c = consumer("c", 4);
  registerCommandHandlers(*c, loop.get(), {ok, bad, slow, data});
  start(*c);
  REQUIRE(loop.runUntil([&] { return c->stats().completed == 1 && counts("c").dead == 3; }));
  CHECK(nlohmann::json::parse(test::readFile(dir.file("in.json"))) == nlohmann::json{{"order", 1}});
  CHECK(show("c", b)->reason == "exited with status 3: no stock for sku 9");
  CHECK_FALSE(show("c", b)->permanent);
  CHECK(show("c", s)->reason.find("timed out") != std::string::npos);
  // Exit 65 (EX_DATAERR) is a permanent failure: dead after one run of four allowed.
  CHECK(show("c", d)->permanent);
  CHECK(show("c", d)->attempt == 1);
  CHECK(show("c", d)->reason == "permanent failure: exited with status 65: bad sku");
}

TEST_CASE("exponential backoff doubles with jitter in the upper half, fixed stays put") {
  CHECK(backoffDelayMs(BackoffType::kFixed, 500, 4, 12345) == 500);
  for (uint32_t r : {0u, 7u, 999999u}) {
    int64_t d1 = backoffDelayMs(BackoffType::kExponential, 1000, 1, r);
    int64_t d3 = backoffDelayMs(BackoffType::kExponential, 1000, 3, r);
    CHECK(d1 >= 500);
    CHECK(d1 <= 1000);
    CHECK(d3 >= 2000);
    CHECK(d3 <= 4000);
  }
}

}  // namespace queue_consumer_test
