// db::Pool's session setup against a real postgres: the setup batch runs once
// on every session, before anything else may use it, again on the sessions a
// restart reopens, and a session whose setup fails serves nothing.
#include <catch2/catch.hpp>

#include <set>

#include "db/pool.h"
#include "tests/db/pool_helpers.h"
#include "tests/support/servers.h"

namespace db_session_setup_test {

using namespace clusterd;
using namespace clusterd::db;
using namespace std::chrono_literals;
using clusterd::test::PostgresServer;
using clusterd::test::runQuery;
using clusterd::test::TestLoop;

namespace {

// Records each session it runs on and leaves a session-wide setting that
// every later statement of the session can see.
std::vector<Statement> recordingSetup() {
  return {Statement{"INSERT INTO setups (pid) VALUES (pg_backend_pid())", {}},
          Statement{"SELECT set_config('clusterd.set_up', 'yes', false)", {}}};
}

std::optional<DbError> acceptAll(const Reply& r) {
  return r.error;
}

// Sends `n` queries at once (so every connection of the pool takes some) and
// answers what each saw of the setting.
std::vector<std::string> settingSeen(TestLoop& loop, Pool& pool, int n) {
  std::vector<std::string> seen;
  for (int i = 0; i < n; ++i)
    pool.query(stmt("SELECT current_setting('clusterd.set_up', true), pg_sleep($1::float)", "0.02"),
               [&](Reply r) { seen.push_back(r.ok() ? r[0].str(0, 0) : r.error->message); });
  REQUIRE(loop.runUntil([&] { return seen.size() == static_cast<size_t>(n); }));
  return seen;
}

}  // namespace

TEST_CASE(
    "a session setup runs once on every session before anything else, and again after a restart",
    "[db][postgres]") {
  PostgresServer pg;
  pg.query("CREATE TABLE setups (pid int)");
  TestLoop loop;
  Pool pool(loop.get(), test::poolOptionsFor(pg, 2));
  auto setup = pool.setUpSessions(recordingSetup(), acceptAll);
  pool.start();
  CHECK(settingSeen(loop, pool, 6) == std::vector<std::string>(6, "yes"));
  CHECK(pg.scalar("SELECT count(*) FROM setups") == "2");
  CHECK(pg.scalar("SELECT count(DISTINCT pid) FROM setups") == "2");

  pg.stop();
  pg.start();
  // Both idle connections notice the restart, reconnect, and set up again.
  REQUIRE(loop.runUntil([&] { return pg.scalar("SELECT count(*) FROM setups") == "4"; }, 10s));
  CHECK(settingSeen(loop, pool, 6) == std::vector<std::string>(6, "yes"));
  CHECK(pg.scalar("SELECT count(*) FROM setups") == "4");
}

TEST_CASE("a setup installed on an open pool runs on its open sessions before their next use",
          "[db][postgres]") {
  PostgresServer pg;
  pg.query("CREATE TABLE setups (pid int)");
  TestLoop loop;
  Pool pool(loop.get(), test::poolOptionsFor(pg, 2));
  pool.start();
  CHECK(settingSeen(loop, pool, 4) == std::vector<std::string>(4, ""));
  auto setup = pool.setUpSessions(recordingSetup(), acceptAll);
  CHECK(settingSeen(loop, pool, 4) == std::vector<std::string>(4, "yes"));
  CHECK(pg.scalar("SELECT count(*) FROM setups") == "2");
  // Removed, it no longer runs on new sessions.
  setup.reset();
  pg.stop();
  pg.start();
  REQUIRE(loop.runUntil([&] { return pool.stats().reconnects >= 2; }, 10s));
  CHECK(settingSeen(loop, pool, 4) == std::vector<std::string>(4, ""));
  CHECK(pg.scalar("SELECT count(*) FROM setups") == "2");
}

TEST_CASE("a session whose setup fails serves nothing, and requests fail with the setup's error",
          "[db][postgres]") {
  PostgresServer pg;
  TestLoop loop;
  PoolOptions o = test::poolOptionsFor(pg, 1);
  o.acquire_timeout = 1s;
  Pool pool(loop.get(), o);
  auto setup = pool.setUpSessions({Statement{"SELECT count(*) FROM gate", {}}}, [](const Reply& r) {
    std::optional<DbError> e = r.error;
    if (e) e->message = "gate check: " + e->message + "; create the table gate";
    return e;
  });
  pool.start();
  Reply refused = runQuery(loop, pool, stmt("SELECT $1::int", 1));
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error->transient());
  CHECK(refused.error->message.find("gate check: ") != std::string::npos);
  CHECK(refused.error->message.find("create the table gate") != std::string::npos);

  pg.query("CREATE TABLE gate ()");
  // The session is opened again with the backoff (at most 300 ms here).
  Reply served = runQuery(loop, pool, stmt("SELECT $1::int", 2));
  REQUIRE(served.ok());
  CHECK(served[0].int64(0, 0) == 2);
}

}  // namespace db_session_setup_test
