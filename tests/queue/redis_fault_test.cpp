// Redis faults the queue must ride out with a real redis-server: a blocked
// consumer unblocked with an error (UNBLOCKED), a failover that turns the
// consumer's server into a replica and back (UNBLOCKED, READONLY, a resync),
// and a start-up while Redis is still loading its data set (LOADING).
#include <sstream>
#include <thread>

#include "queue/handlers.h"
#include "tests/queue/queue_fixture.h"

namespace queue_redis_fault_test {

using namespace clusterd;
using namespace clusterd::queue;
using namespace std::chrono_literals;
using test::newJob;

namespace {

// The id of the client named `name` when it is blocked (BZPOPMIN), else "".
std::string blockedClient(test::RedisServer& redis, const std::string& name) {
  std::istringstream list(redis.command({"CLIENT", "LIST"}));
  std::string line;
  while (std::getline(list, line)) {
    if (line.find(" name=" + name + " ") == std::string::npos) continue;
    if (line.find(" cmd=bzpopmin ") == std::string::npos || line.find(" flags=b ") == std::string::npos)
      continue;
    auto p = line.find("id=");
    return line.substr(p + 3, line.find(' ', p) - p - 3);
  }
  return "";
}

bool linkUp(test::RedisServer& replica) {
  return replica.command({"INFO", "replication"}).find("master_link_status:up") != std::string::npos;
}

bool loading(test::RedisServer& redis) {
  try {
    redis.command({"PING"});
    return false;
  } catch (const std::runtime_error& e) {
    return std::string(e.what()).find("LOADING") != std::string::npos;
  }
}

}  // namespace

TEST_CASE_METHOD(test::QueueFixture, "a blocked consumer unblocked with an error (UNBLOCKED) blocks again and runs new jobs") {
  auto c = consumer("ub", 4);
  int ran = 0;
  c->handle("t", [&](const Job&, Done done) {
    ++ran;
    done(success());
  });
  start(*c);
  for (int round = 1; round <= 3; ++round) {
    std::string id;
    REQUIRE(loop.runUntil([&] { return !(id = blockedClient(redis, "clusterd-consumer-block")).empty(); }, 5s));
    CHECK(redis.command({"CLIENT", "UNBLOCK", id, "ERROR"}) == "1");
    loop.runFor(20ms);  // the consumer gets -UNBLOCKED and backs off briefly
    enqueue("ub", newJob("t"));
    REQUIRE(loop.runUntil([&] { return ran == round; }, 5s));
  }
  REQUIRE(loop.runUntil([&] { return c->stats().completed == 3; }));
}

TEST_CASE_METHOD(test::QueueFixture, "a consumer and a client ride out a failover to a replica and back") {
  test::RedisServer standby;
  auto c = consumer("fo", 4);
  int ran = 0;
  c->handle("t", [&](const Job&, Done done) {
    ++ran;
    done(success());
  });
  start(*c);
  for (int i = 0; i < 3; ++i) enqueue("fo", newJob("t"));
  REQUIRE(loop.runUntil([&] { return ran == 3; }));
  standby.command({"REPLICAOF", "127.0.0.1", std::to_string(redis.port())});
  REQUIRE(test::waitFor([&] { return linkUp(standby); }, 10s));
  // Two jobs due during the failover; they travel to the standby and back.
  for (int i = 0; i < 2; ++i) enqueue("fo", newJob("t", nullptr, {.delay = 1500ms}));
  REQUIRE(test::waitFor([&] { return standby.command({"ZCARD", "cq:{fo}:delayed"}) == "2"; }, 5s));
  REQUIRE(loop.runUntil([&] { return !blockedClient(redis, "clusterd-consumer-block").empty(); }, 5s));

  // Failover: the standby is promoted, the consumer's server is demoted
  // (its blocked BZPOPMIN gets UNBLOCKED, its writes READONLY).
  standby.command({"REPLICAOF", "NO", "ONE"});
  redis.command({"REPLICAOF", "127.0.0.1", std::to_string(standby.port())});
  REQUIRE(loop.runUntil([&] { return linkUp(redis); }, 10s));
  auto refused = test::await<Enqueued>(loop, [&](auto cb) { client->enqueue("fo", newJob("t"), cb); });
  REQUIRE_FALSE(refused);
  CHECK(refused.error().message.find("READONLY") != std::string::npos);
  loop.runFor(500ms);
  CHECK(ran == 3);

  // Failback: the consumer's server is the primary again.
  redis.command({"REPLICAOF", "NO", "ONE"});
  standby.command({"REPLICAOF", "127.0.0.1", std::to_string(redis.port())});
  bool enqueued = false;
  REQUIRE(loop.runUntil([&] {
    client->enqueue("fo", newJob("t"), [&](Result<Enqueued> r) { enqueued = enqueued || r.ok(); });
    loop.runFor(100ms);
    return enqueued;
  }, 10s));
  REQUIRE(loop.runUntil([&] { return ran == 6; }, 10s));
  CHECK(counts("fo").completed_total == 6);
}

TEST_CASE("a consumer and a client started while redis loads its data wait for it, then work") {
  // key-load-delay slows loading (µs per key) so that it lasts a second or two.
  test::RedisServer redis(test::RedisServer::Options{
      .extra_args = {"--enable-debug-command", "yes", "--key-load-delay", "50",
                     "--loading-process-events-interval-bytes", "1024"}});
  test::TestLoop loop;
  {
    auto c = Client::create(loop.get(), {.redis_url = redis.url()}).value();
    std::vector<NewJob> jobs;
    for (int i = 0; i < 20; ++i) jobs.push_back(newJob("t"));
    REQUIRE(test::await<std::vector<Enqueued>>(loop, [&](auto cb) { c->enqueueBulk("ld", std::move(jobs), cb); }));
  }
  redis.command({"DEBUG", "POPULATE", "20000", "filler", "10"});
  redis.command({"BGREWRITEAOF"});
  REQUIRE(test::waitFor([&] {
    return redis.command({"INFO", "persistence"}).find("aof_rewrite_in_progress:0") != std::string::npos;
  }, 10s));
  redis.kill();
  std::thread restarter([&] { redis.start(); });
  bool was_loading = test::waitFor([&] { return loading(redis); }, 10s);

  auto consumer = Consumer::create(loop.get(), {.redis_url = redis.url(), .queues = {{"ld", 8}}}).value();
  auto client = Client::create(loop.get(), {.redis_url = redis.url()}).value();
  int ran = 0;
  consumer->handle("t", [&](const Job&, Done done) {
    ++ran;
    done(success());
  });
  std::optional<Result<void>> started;
  std::optional<Result<Enqueued>> late;
  consumer->start([&](Result<void> r) { started.emplace(std::move(r)); });
  client->enqueue("ld", newJob("t"), [&](Result<Enqueued> r) { late.emplace(std::move(r)); });
  loop.runFor(50ms);
  bool still_loading = loading(redis);
  bool done = loop.runUntil([&] { return ran == 21; }, 30s);
  restarter.join();
  REQUIRE(was_loading);
  CHECK(still_loading);  // both were started during LOADING
  REQUIRE(done);
  REQUIRE(started);
  CHECK(started->ok());
  REQUIRE(late);
  CHECK(late->ok());  // issued during LOADING, it waited for the load instead of failing
  CHECK(redis.command({"DBSIZE"}) != "0");
}

}  // namespace queue_redis_fault_test
