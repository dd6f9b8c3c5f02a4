// Fault tests with consumer processes (queue_test_consumer): SIGKILL with a
// batch in flight, Redis restarts under load, random kills over 10,000 jobs,
// stale fencing tokens and the stall cap.
#include <signal.h>

#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "queue/scripts.h"

#include "tests/queue/queue_fixture.h"

namespace queue_fault_test {

using namespace clusterd;
using namespace clusterd::queue;
using namespace std::chrono_literals;
using test::newJob;

namespace {

std::multiset<std::string> lines(const std::string& path) {
  std::multiset<std::string> out;
  std::istringstream in(test::readFile(path));
  std::string l;
  while (std::getline(in, l))
    if (!l.empty()) out.insert(l);
  return out;
}

std::set<std::string> distinctLines(const std::string& path) {
  auto all = lines(path);
  return std::set<std::string>(all.begin(), all.end());
}

// The consumer's output goes to `log` in `dir`; it says "consumer ready"
// once its SIGTERM handler is in place.
std::unique_ptr<test::Child> startConsumer(const test::RedisServer& redis, const std::string& q,
                                           int conc, const test::TempDir& dir, int work_ms,
                                           int lease_ms, const std::string& log = "consumer.log") {
  return std::make_unique<test::Child>(
      std::vector<std::string>{QUEUE_TEST_CONSUMER, redis.url(), q, std::to_string(conc),
                               dir.file("starts"), dir.file("dones"), std::to_string(work_ms),
                               std::to_string(lease_ms)},
      std::map<std::string, std::string>{}, dir.file(log));
}

}  // namespace

TEST_CASE_METHOD(test::QueueFixture, "after a SIGKILL every job completes and only the in-flight jobs run twice") {
  test::TempDir dir;
  std::vector<NewJob> jobs;
  for (int i = 0; i < 400; ++i) jobs.push_back(newJob("work"));
  enqueueMany("k", std::move(jobs));
  auto a = startConsumer(redis, "k", 20, dir, 100, 1000);
  // Kill once some jobs are done and a batch is running.
  REQUIRE(test::waitFor([&] {
    size_t done = lines(dir.file("dones")).size();
    return done >= 50 && lines(dir.file("starts")).size() >= done + 10;
  }, 10s));
  a->signal(SIGKILL);
  a->wait(5s);
  auto starts_at_kill = lines(dir.file("starts"));
  auto done_at_kill = lines(dir.file("dones"));
  std::set<std::string> in_flight;
  for (auto& id : starts_at_kill)
    if (!done_at_kill.count(id)) in_flight.insert(id);
  CHECK(!in_flight.empty());
  auto b = startConsumer(redis, "k", 40, dir, 5, 1000);
  REQUIRE(test::waitFor([&] { return distinctLines(dir.file("dones")).size() == 400; }, 30s));
  auto starts = lines(dir.file("starts"));
  std::set<std::string> twice;
  for (auto& id : std::set<std::string>(starts.begin(), starts.end()))
    if (starts.count(id) > 1) twice.insert(id);
  // Jobs that ran twice are exactly among the ones in flight at the kill
  // (a job finished but not yet acknowledged also counts as in flight).
  for (auto& id : twice) CHECK(starts_at_kill.count(id) == 1);
  CHECK(twice.size() <= in_flight.size() + done_at_kill.size());
  for (auto& id : twice) CHECK((in_flight.count(id) == 1 || done_at_kill.count(id) == 1));
  b->signal(SIGTERM);
  CHECK(b->wait(10s) == 0);
}

TEST_CASE_METHOD(test::QueueFixture, "a redis restart under load loses no acknowledged enqueue and no job") {
  test::TempDir dir;
  auto c = startConsumer(redis, "rs", 20, dir, 2, 2000);
  std::set<std::string> acked;
  int sent = 0;
  bool restarted = false;
  auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < 4s && sent < 3000) {
    for (int i = 0; i < 20; ++i, ++sent)
      client->enqueue("rs", newJob("work"), [&](Result<Enqueued> r) {
        if (r) acked.insert(r->id);
      });
    loop.runFor(10ms);
    if (!restarted && sent >= 600) {
      redis.kill();  // a crash: AOF with appendfsync always keeps what was acknowledged
      loop.runFor(200ms);
      redis.start();
      restarted = true;
    }
  }
  loop.runFor(300ms);
  REQUIRE(restarted);
  REQUIRE(acked.size() > 600);
  REQUIRE(test::waitFor([&] {
    auto d = lines(dir.file("dones"));
    std::set<std::string> distinct(d.begin(), d.end());
    for (auto& id : acked)
      if (!distinct.count(id)) return false;
    return true;
  }, 40s));
  c->signal(SIGTERM);
  CHECK(c->wait(10s) == 0);
}

TEST_CASE_METHOD(test::QueueFixture, "10,000 jobs through 4 consumers with random kills all complete") {
  test::TempDir dir;
  std::vector<NewJob> jobs;
  for (int i = 0; i < 10000; ++i) jobs.push_back(newJob("work"));
  enqueueMany("many", std::move(jobs));
  // Each consumer logs to a file of its own, so that the test can tell
  // when each one is ready: the jobs may all be done before a consumer
  // started late has put its SIGTERM handler in place.
  std::vector<std::unique_ptr<test::Child>> cs(4);
  std::vector<std::string> logs(4);  // the log of the consumer in each slot
  int started = 0;
  auto start = [&](size_t slot) {
    logs[slot] = "consumer-" + std::to_string(started++) + ".log";
    cs[slot] = startConsumer(redis, "many", 20, dir, 1, 600, logs[slot]);
  };
  for (size_t i = 0; i < cs.size(); ++i) start(i);
  std::minstd_rand rng(42);
  auto distinct = [&] {
    auto d = lines(dir.file("dones"));
    return std::set<std::string>(d.begin(), d.end()).size();
  };
  for (int kill = 0; kill < 6 && distinct() < 9000; ++kill) {
    std::this_thread::sleep_for(300ms);
    size_t victim = rng() % cs.size();
    cs[victim]->signal(SIGKILL);
    cs[victim]->wait(5s);
    start(victim);
  }
  REQUIRE(test::waitFor([&] { return distinct() == 10000; }, 60s));
  CHECK(counts("many").completed_total + 0 <= 10000 + 1000);
  for (size_t i = 0; i < cs.size(); ++i)
    REQUIRE(test::waitFor(
        [&] {
          return test::readFile(dir.file(logs[i])).find("consumer ready") != std::string::npos;
        },
        10s));
  for (auto& c : cs) c->signal(SIGTERM);
  for (auto& c : cs) CHECK(c->wait(10s) == 0);
}

TEST_CASE_METHOD(test::QueueFixture, "a stale fencing token is refused and stalled jobs die past the stall cap") {
  setConfig("f", "max_stalls", "1");
  std::string id = enqueue("f", newJob("work"));
  auto keys = queueKeys("f");
  auto eval = [&](ScriptId s, std::vector<std::string> args) {
    std::vector<std::string> argv{"EVAL", std::string(scriptBody(s)), std::to_string(keys.size())};
    argv.insert(argv.end(), keys.begin(), keys.end());
    argv.insert(argv.end(), args.begin(), args.end());
    return redis.command(argv);
  };
  // Leases run on Redis's clock, so the test waits them out (100 ms each).
  std::string first = eval(ScriptId::kReserve, {std::to_string(nowMs()), "1", "100"});
  std::string token1 = first.substr(0, first.find('\n'));
  // The lease expires; the next reservation recovers and re-reserves the job.
  loop.runFor(250ms);
  int64_t now = nowMs();
  std::string second = eval(ScriptId::kReserve, {std::to_string(now), "1", "100"});
  std::string token2 = second.substr(0, second.find('\n'));
  REQUIRE(token2 != token1);
  REQUIRE(!token2.empty());
  // Acknowledging with the old token is refused; with the new one accepted.
  CHECK(eval(ScriptId::kComplete, {std::to_string(now), "1", "0", "0", "100", id, token1})
            .rfind("0", 0) == 0);
  CHECK(eval(ScriptId::kExtend, {"5000", token1}) == "0");
  // A second expiry passes the cap of 1 stall: dead.
  loop.runFor(250ms);
  eval(ScriptId::kReserve, {std::to_string(nowMs()), "1", "100"});
  auto j = show("f", id);
  REQUIRE(j);
  CHECK(j->state == JobState::kDead);
  CHECK(j->stalls == 2);
  CHECK(j->reason.find("stalled 2 times") != std::string::npos);
  CHECK(counts("f").stalled_total == 2);
}

}  // namespace queue_fault_test
