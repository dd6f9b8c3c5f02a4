// Smoke tests of the server fixture every integration test relies on.
#include <catch2/catch.hpp>

#include "tests/support/servers.h"

namespace support_servers_test {

using namespace clusterd::test;

TEST_CASE("redis fixture serves commands and keeps AOF data across a restart", "[support][redis]") {
  RedisServer redis;
  REQUIRE(redis.command({"SET", "k", "v"}) == "OK");
  redis.stop();
  CHECK_FALSE(tcpConnects(redis.port()));
  redis.start();
  CHECK(redis.command({"GET", "k"}) == "v");
  CHECK(redis.command({"CONFIG", "GET", "appendonly"}) == "appendonly\nyes");
}

TEST_CASE("postgres fixture runs SQL and keeps data across a restart", "[support][postgres]") {
  PostgresServer pg;
  pg.query("CREATE TABLE t (x int)");
  pg.query("INSERT INTO t VALUES (41), (1)");
  pg.stop();
  CHECK_FALSE(tcpConnects(pg.port()));
  pg.start();
  CHECK(pg.scalar("SELECT sum(x) FROM t") == "42");
}

TEST_CASE("run captures output, exit code and honours its timeout", "[support]") {
  auto ok = run({"sh", "-c", "echo out; echo err >&2; exit 3"});
  CHECK(ok.exit_code == 3);
  CHECK(ok.out == "out\n");
  CHECK(ok.err == "err\n");
  auto slow = run({"sleep", "5"}, {.timeout = std::chrono::milliseconds(200)});
  CHECK(slow.timed_out);
}

}  // namespace support_servers_test
