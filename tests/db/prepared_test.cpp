// Integration tests of the prepared statements a db::Connection keeps: what
// PostgreSQL holds (pg_prepared_statements, read through the same one-
// connection pool), and that a Parse that fails, or is skipped after an
// error, never leaves a name that later batches would trip over.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include "db/connection.h"
#include "db/pool.h"
#include "tests/db/pool_helpers.h"
#include "tests/support/servers.h"

namespace db_prepared_test {

using namespace clusterd;
using namespace clusterd::db;
using namespace std::chrono_literals;
using clusterd::test::PostgresServer;
using clusterd::test::TestLoop;
using clusterd::test::runQuery;

namespace {

// How many times the session of the pool's one connection holds `sql`
// prepared. The query has no parameters, so it is never prepared itself.
int64_t preparedCopies(TestLoop& loop, Pool& pool, const std::string& sql) {
  std::string quoted;
  for (char c : sql) quoted += c == '\'' ? std::string("''") : std::string(1, c);
  Reply r = runQuery(loop, pool,
                     Statement{"SELECT count(*) FROM pg_prepared_statements WHERE statement = '" +
                                   quoted + "'",
                               {}});
  REQUIRE(r.ok());
  return r[0].int64(0, 0);
}

}  // namespace

TEST_CASE("a statement with parameters is prepared at its first use and run by name after",
          "[db][postgres]") {
  PostgresServer pg;
  TestLoop loop;
  Pool pool(loop.get(), test::poolOptionsFor(pg, 1));
  const std::string sql = "SELECT $1::int + 1";
  Reply first = runQuery(loop, pool, stmt(sql, 41));
  REQUIRE(first.ok());
  CHECK(first[0].int64(0, 0) == 42);
  CHECK(preparedCopies(loop, pool, sql) == 1);
  Reply second = runQuery(loop, pool, stmt(sql, 1));
  REQUIRE(second.ok());
  CHECK(second[0].int64(0, 0) == 2);
  CHECK(preparedCopies(loop, pool, sql) == 1);
  // Planned with its parameters at every execution, never generically.
  Reply mode = runQuery(loop, pool, Statement{"SHOW plan_cache_mode", {}});
  REQUIRE(mode.ok());
  CHECK(mode[0].str(0, 0) == "force_custom_plan");
}

TEST_CASE("a statement that fails to prepare reports its error at its index and is not kept",
          "[db][postgres]") {
  PostgresServer pg;
  pg.query("CREATE TABLE t (x int PRIMARY KEY)");
  TestLoop loop;
  Pool pool(loop.get(), test::poolOptionsFor(pg, 1));
  const std::string bad = "SELECT nosuchcolumn FROM t WHERE x = $1";
  std::optional<Reply> out;
  pool.pipeline({stmt("SELECT $1::int", 1), stmt(bad, 1)}, [&](Reply r) { out = std::move(r); });
  REQUIRE(loop.runUntil([&] { return out.has_value(); }));
  REQUIRE(!out->ok());
  CHECK(out->error->sqlstate == "42703");
  CHECK(out->failed_at == 1u);
  CHECK(preparedCopies(loop, pool, bad) == 0);
  // The same broken text fails the same way again instead of naming a
  // statement that does not exist.
  Reply again = runQuery(loop, pool, stmt(bad, 2));
  REQUIRE(!again.ok());
  CHECK(again.error->sqlstate == "42703");
  CHECK(runQuery(loop, pool, stmt("SELECT $1::int", 3)).ok());
}

TEST_CASE("a statement prepared in a transaction that rolls back stays usable", "[db][postgres]") {
  PostgresServer pg;
  pg.query("CREATE TABLE t (x int PRIMARY KEY)");
  pg.query("INSERT INTO t VALUES (1)");
  TestLoop loop;
  Pool pool(loop.get(), test::poolOptionsFor(pg, 1));
  const std::string sql = "SELECT $1::int + 100";
  std::optional<Reply> out;
  pool.pipeline({stmt(sql, 1), stmt("INSERT INTO t VALUES ($1)", 1)},
                [&](Reply r) { out = std::move(r); });
  REQUIRE(loop.runUntil([&] { return out.has_value(); }));
  REQUIRE(!out->ok());
  CHECK(out->error->sqlstate == "23505");
  Reply after = runQuery(loop, pool, stmt(sql, 2));
  REQUIRE(after.ok());
  CHECK(after[0].int64(0, 0) == 102);
  CHECK(preparedCopies(loop, pool, sql) == 1);
}

TEST_CASE("a Parse skipped after an error hurts neither the batches beside it nor later ones",
          "[db][postgres]") {
  PostgresServer pg;
  pg.query("CREATE TABLE t (x int PRIMARY KEY)");
  pg.query("INSERT INTO t VALUES (1)");
  TestLoop loop;
  Pool pool(loop.get(), test::poolOptionsFor(pg, 1));
  const std::string sql = "SELECT $1::int * 2";
  // Queued together, these share one pipeline: the first batch fails before
  // its Parse of `sql`, which PostgreSQL then skips; the others, each behind
  // its own Sync, must not count on that Parse.
  std::vector<std::optional<Reply>> out(3);
  pool.pipeline({stmt("INSERT INTO t VALUES ($1)", 1), stmt(sql, 3)},
                [&](Reply r) { out[0] = std::move(r); });
  pool.pipeline({stmt(sql, 4)}, [&](Reply r) { out[1] = std::move(r); });
  pool.pipeline({stmt(sql, 5), stmt("SELECT $1::int", 0)}, [&](Reply r) { out[2] = std::move(r); });
  REQUIRE(loop.runUntil([&] { return out[0] && out[1] && out[2]; }));
  CHECK(pool.stats().merged > 0);
  REQUIRE(!out[0]->ok());
  CHECK(out[0]->error->sqlstate == "23505");
  REQUIRE(out[1]->ok());
  CHECK(out[1]->results[0].int64(0, 0) == 8);
  REQUIRE(out[2]->ok());
  CHECK(out[2]->results[0].int64(0, 0) == 10);
  Reply later = runQuery(loop, pool, stmt(sql, 6));
  REQUIRE(later.ok());
  CHECK(later[0].int64(0, 0) == 12);
  CHECK(preparedCopies(loop, pool, sql) == 1);
}

TEST_CASE("statements are prepared again on the connection made after a postgres restart",
          "[db][postgres]") {
  PostgresServer pg;
  TestLoop loop;
  Pool pool(loop.get(), test::poolOptionsFor(pg, 1));
  const std::string sql = "SELECT $1::int - 1";
  REQUIRE(runQuery(loop, pool, stmt(sql, 10)).ok());
  pg.stop();
  pg.start();
  // The first query may find the old connection broken (a transient error);
  // the reconnected one prepares the statement afresh.
  Reply r = runQuery(loop, pool, stmt(sql, 20));
  if (!r.ok()) {
    CHECK(r.error->transient());
    r = runQuery(loop, pool, stmt(sql, 20));
  }
  REQUIRE(r.ok());
  CHECK(r[0].int64(0, 0) == 19);
  CHECK(preparedCopies(loop, pool, sql) == 1);
}

TEST_CASE("past the cap, more statement texts still run, unprepared", "[db][postgres]") {
  PostgresServer pg;
  TestLoop loop;
  Pool pool(loop.get(), test::poolOptionsFor(pg, 1));
  size_t n = Connection::kMaxPrepared + 20;
  for (size_t i = 0; i < n; ++i) {
    Reply r = runQuery(loop, pool, stmt(fmt::format("SELECT $1::int + {}", i), 1));
    REQUIRE(r.ok());
    CHECK(r[0].int64(0, 0) == static_cast<int64_t>(i) + 1);
  }
  Reply count =
      runQuery(loop, pool, Statement{"SELECT count(*) FROM pg_prepared_statements", {}});
  REQUIRE(count.ok());
  CHECK(count[0].int64(0, 0) == static_cast<int64_t>(Connection::kMaxPrepared));
}

}  // namespace db_prepared_test
