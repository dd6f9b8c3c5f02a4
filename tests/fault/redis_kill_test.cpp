// Redis SIGKILLed and started again twice while producers enqueue and two
// `clusterd worker` processes run inventory.adjust jobs, once with
// `appendfsync everysec` and once with `always`: every enqueue Redis
// acknowledged ends completed or dead with a reason, nothing is left waiting
// or active, and each job's +1 is applied exactly once.
//
// A SIGKILL of the process loses no acknowledged write with either setting:
// Redis writes the AOF before it answers, so an acknowledged write is in the
// kernel's page cache at least. Only a crash of the host (or a power loss)
// can lose the last second of writes under `everysec`; this test does not
// show that case.
#include <signal.h>

#include <fmt/format.h>

#include "queue/client.h"
#include "queue/redis.h"
#include "tests/fault/shop_stack.h"
#include "tests/queue/loop_support.h"

namespace fault_redis_kill_test {

using namespace clusterd;
using namespace clusterd::test;
using namespace clusterd::test::fault;
using namespace std::chrono_literals;

namespace {

void redisKilledTwiceUnderLoad(const std::string& appendfsync) {
  const int kJobs = scaled(1800);
  ShopStack st(RedisServer::Options{.appendfsync = appendfsync});
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::unique_ptr<Child>> workers;
  for (int i = 0; i < 2; ++i) workers.push_back(st.spawn("jobs"));
  st.waitAccepting(st.jobs_port);

  TestLoop loop;
  auto client = queue::Client::create(loop.get(), {.redis_url = st.redis.url()}).value();
  std::set<std::string> accepted;
  int sent = 0, refused = 0, kills = 0;
  // Producers: batches of 10 every 10 ms, bounded in count and time; Redis
  // is killed once a third and once two thirds of the jobs were sent.
  while (sent < kJobs && secondsSince(t0) < 60) {
    for (int i = 0; i < 10 && sent < kJobs; ++i, ++sent) {
      queue::NewJob job{"inventory.adjust",
                        queue::payloadFromJson(nlohmann::json::parse(inventoryPayload(st, sent))),
                        {.attempts = 12, .backoff = 100ms}};
      client->enqueue("inventory", std::move(job), [&](Result<queue::Enqueued> r) {
        if (r) {
          accepted.insert(r->id);
        } else {
          ++refused;
        }
      });
    }
    loop.runFor(10ms);
    if (kills < 2 && sent >= kJobs * (kills + 1) / 3) {
      st.redis.kill();
      ++kills;
      // Enqueues meanwhile fail at once; none is accepted.
      loop.runFor(300ms);
      st.redis.start();
      // Send on once the client is back: what it refuses while it
      // reconnects depends on the machine's speed, not on the fault.
      REQUIRE(loop.runUntil([&] { return client->connection().ready(); }, 30s));
    }
  }
  loop.runFor(500ms);  // the last answers
  REQUIRE(kills == 2);
  REQUIRE(accepted.size() > static_cast<size_t>(kJobs / 2));

  REQUIRE(waitQueueDrained(st, "inventory", 90s));
  QueueAccount a = accountQueue(st, "inventory");
  checkJobsAccounted(a, accepted);
  checkInventoryExactlyOnce(st, a);
  // The redis-server holds every job it acknowledged, and some it may have
  // taken without its answer reaching the client.
  CHECK(a.completed.size() + a.dead.size() >= accepted.size());
  report("redis-kill-" + appendfsync,
         {{"sent", std::to_string(sent)},
          {"accepted", std::to_string(accepted.size())},
          {"refused", std::to_string(refused)},
          {"completed", std::to_string(a.completed.size())},
          {"dead", std::to_string(a.dead.size())},
          {"retried", std::to_string(a.stats["failed"])},
          {"stalled", std::to_string(a.stats["stalled"])},
          {"duplicates_prevented", std::to_string(a.duplicates_prevented)},
          {"redis_kills", std::to_string(kills)},
          {"seconds", fmt::format("{:.1f}", secondsSince(t0))}});
  for (auto& w : workers) w->signal(SIGTERM);
  for (auto& w : workers) st.checkExitsCleanly(*w);
}

}  // namespace

TEST_CASE(
    "redis SIGKILLed twice under load with appendfsync everysec: no accepted job lost, each "
    "applied once",
    "[fault][redis]") {
  redisKilledTwiceUnderLoad("everysec");
}

TEST_CASE(
    "redis SIGKILLed twice under load with appendfsync always: no accepted job lost, each applied "
    "once",
    "[fault][redis]") {
  redisKilledTwiceUnderLoad("always");
}

}  // namespace fault_redis_kill_test
