// Behaviour of the async Redis connection: commands and replies, fail-fast
// errors while Redis is down, reconnection, LOADING after a restart.
#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <thread>

#include "queue/redis.h"
#include "tests/queue/loop_support.h"
#include "tests/support/servers.h"

namespace queue_redis_connection_test {

using namespace clusterd;
using namespace clusterd::queue;
using namespace std::chrono_literals;

namespace {
RedisAddress addressOf(const test::RedisServer& r) { return *parseRedisUrl(r.url()); }
}  // namespace

TEST_CASE("redis urls parse host, port, credentials, db and unix sockets") {
  auto a = parseRedisUrl("redis://user:secret@example.org:6380/2");
  REQUIRE(a);
  CHECK(a->host == "example.org");
  CHECK(a->port == 6380);
  CHECK(a->user == "user");
  CHECK(a->password == "secret");
  CHECK(a->db == 2);
  CHECK(a->text.find("secret") == std::string::npos);
  auto b = parseRedisUrl("redis://127.0.0.1");
  REQUIRE(b);
  CHECK(b->port == 6379);
  auto u = parseRedisUrl("unix:///tmp/redis.sock?db=3");
  REQUIRE(u);
  CHECK(u->unix_path == "/tmp/redis.sock");
  CHECK(u->db == 3);
  CHECK_FALSE(parseRedisUrl("http://x"));
  CHECK_FALSE(parseRedisUrl("redis://h:99999"));
}

TEST_CASE("an invalid redis url is reported without its password") {
  auto bad_port = parseRedisUrl("redis://admin:hunter2@example.org:99999/0");
  REQUIRE_FALSE(bad_port);
  CHECK(bad_port.error().message.find("hunter2") == std::string::npos);
  CHECK(bad_port.error().message.find("example.org:99999") != std::string::npos);
  CHECK(bad_port.error().message.find("port must be") != std::string::npos);
  auto bad_db = parseRedisUrl("redis://:s3cret@h/x");
  REQUIRE_FALSE(bad_db);
  CHECK(bad_db.error().message.find("s3cret") == std::string::npos);
}

TEST_CASE("commands issued before the connection is up get their replies in order") {
  test::RedisServer redis;
  test::TestLoop loop;
  RedisConnection conn(loop.get(), addressOf(redis));
  std::vector<std::string> got;
  conn.command({"SET", "k", "v"}, [&](const Reply& r) { got.push_back(r.str()); });
  conn.command({"GET", "k"}, [&](const Reply& r) { got.push_back(r.str()); });
  conn.command({"INCR", "n"}, [&](const Reply& r) { got.push_back(r.str()); });
  REQUIRE(loop.runUntil([&] { return got.size() == 3; }));
  CHECK(got == std::vector<std::string>{"OK", "v", "1"});
  CHECK(conn.ready());
}

TEST_CASE("a connection whose loop was held up past the connect timeout reads Redis's answer before judging") {
  test::RedisServer redis;
  test::TestLoop loop;
  RedisConnection conn(loop.get(), addressOf(redis), RedisOptions{.connect_timeout_ms = 200});
  // A Reply lives only during its callback: keep what it said.
  std::optional<std::string> pong;
  conn.command({"PING"}, [&](const Reply& r) { pong = r.isError() ? std::string("error: ").append(r.error()) : r.str(); });
  // The connect has started; the loop is held (as a long synchronous task
  // would hold it) while Redis answers.
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  REQUIRE(loop.runUntil([&] { return pong.has_value(); }));
  CHECK(*pong == "PONG");
  CHECK(conn.ready());
  CHECK(conn.reconnects() == 0);
  CHECK(conn.lastError().empty());
}

TEST_CASE("commands fail fast with the address while redis is down, and work again after it returns") {
  test::RedisServer redis;
  test::TestLoop loop;
  RedisConnection conn(loop.get(), addressOf(redis), RedisOptions{.backoff_min_ms = 20, .backoff_max_ms = 100});
  bool ready = false;
  conn.command({"PING"}, [&](const Reply& r) { ready = !r.isError(); });
  REQUIRE(loop.runUntil([&] { return ready; }));

  redis.kill();
  // The loss is noticed on the next command; then commands fail fast.
  std::optional<std::string> err;
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(loop.runUntil([&] {
    if (err) return true;
    conn.command({"PING"}, [&](const Reply& r) {
      if (r.isError()) err = std::string(r.error());
    });
    loop.runFor(20ms);
    return err.has_value();
  }, 5s));
  CHECK(std::chrono::steady_clock::now() - t0 < 3s);
  std::optional<std::string> err2;
  conn.command({"PING"}, [&](const Reply& r) { err2 = std::string(r.error()); });
  REQUIRE(loop.runUntil([&] { return err2.has_value(); }, 2s));
  CHECK(err2->find(std::to_string(redis.port())) != std::string::npos);

  redis.start();
  bool back = false;
  REQUIRE(loop.runUntil([&] {
    conn.command({"PING"}, [&](const Reply& r) { back = back || !r.isError(); });
    loop.runFor(30ms);
    return back;
  }, 10s));
  CHECK(conn.reconnects() >= 1);
}

TEST_CASE("a connection to a port nobody listens on fails instead of hanging") {
  int port = test::freeTcpPort();
  test::TestLoop loop;
  RedisConnection conn(loop.get(), *parseRedisUrl("redis://127.0.0.1:" + std::to_string(port)));
  std::optional<std::string> err;
  conn.command({"PING"}, [&](const Reply& r) { err = std::string(r.error()); });
  REQUIRE(loop.runUntil([&] { return err.has_value(); }, 5s));
  CHECK(err->find("cannot reach Redis") != std::string::npos);
}

TEST_CASE("the connection waits while redis loads its data after a restart") {
  test::RedisServer redis(test::RedisServer::Options{.extra_args = {"--enable-debug-command", "yes"}});
  // A data set large enough that loading takes a moment.
  redis.command({"DEBUG", "POPULATE", "200000", "k", "200"});
  redis.command({"BGREWRITEAOF"});
  test::waitFor([&] { return redis.command({"INFO", "persistence"}).find("aof_rewrite_in_progress:0") != std::string::npos; });
  test::TestLoop loop;
  RedisConnection conn(loop.get(), addressOf(redis), RedisOptions{.backoff_min_ms = 20, .backoff_max_ms = 100});
  redis.kill();
  // Restart on another thread so this loop keeps running (and meets LOADING).
  std::thread restarter([&] { redis.start(); });
  std::optional<std::string> value;
  std::vector<std::string> errors;
  bool ok = loop.runUntil([&] {
    if (!value)
      conn.command({"DBSIZE"}, [&](const Reply& r) {
        if (!r.isError()) value = r.str();
        else errors.emplace_back(r.error());
      });
    loop.runFor(10ms);
    return value.has_value();
  }, 30s);
  restarter.join();
  REQUIRE(ok);
  CHECK(*value == "200000");
}

TEST_CASE("destroying a connection with commands in flight never calls their callbacks") {
  test::RedisServer redis;
  test::TestLoop loop;
  int called = 0;
  {
    RedisConnection conn(loop.get(), addressOf(redis));
    bool up = false;
    conn.command({"PING"}, [&](const Reply&) { up = true; });
    REQUIRE(loop.runUntil([&] { return up; }));
    for (int i = 0; i < 10; ++i) conn.command({"PING"}, [&](const Reply&) { ++called; });
  }
  loop.runFor(50ms);
  CHECK(called == 0);
}

}  // namespace queue_redis_connection_test
