// Integration tests of db::Pool against a real postgres: queries, pipelines,
// transactions, waiting for a connection, reconnecting after a restart,
// timeouts and slow-query accounting.
#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "db/pool.h"
#include "tests/db/pool_helpers.h"
#include "tests/support/servers.h"

namespace db_pool_test {

using namespace clusterd;
using namespace clusterd::db;
using namespace std::chrono_literals;
using clusterd::test::PostgresServer;
using clusterd::test::TestLoop;
using clusterd::test::runQuery;

TEST_CASE("a query with parameters returns its rows", "[db][postgres]") {
  PostgresServer pg;
  TestLoop loop;
  Pool pool(loop.get(), test::poolOptionsFor(pg));
  pool.start();
  Reply r = runQuery(loop, pool, stmt("SELECT $1::int + 1 AS n, $2::text AS t, NULL AS z", 41,
                                      "hello"));
  REQUIRE(r.ok());
  REQUIRE(r[0].size() == 1);
  CHECK(r[0].int64(0, r[0].column("n")) == 42);
  CHECK(r[0].str(0, 1) == "hello");
  CHECK(r[0].isNull(0, 2));
  CHECK(pool.stats().batches >= 1);
}

TEST_CASE("a pipeline returns one result per statement in one batch", "[db][postgres]") {
  PostgresServer pg;
  pg.query("CREATE TABLE t (x int PRIMARY KEY)");
  TestLoop loop;
  Pool pool(loop.get(), test::poolOptionsFor(pg));
  std::optional<Reply> out;
  pool.pipeline({stmt("INSERT INTO t VALUES ($1)", 1), stmt("INSERT INTO t VALUES ($1)", 2),
                 stmt("SELECT count(*) FROM t")},
                [&](Reply r) { out = std::move(r); });
  REQUIRE(loop.runUntil([&] { return out.has_value(); }));
  REQUIRE(out->ok());
  REQUIRE(out->results.size() == 3);
  CHECK(out->results[0].affected() == 1);
  CHECK(out->results[2].int64(0, 0) == 2);
}

TEST_CASE("a failing statement in a pipeline reports its sqlstate and nothing is committed",
          "[db][postgres]") {
  PostgresServer pg;
  pg.query("CREATE TABLE t (x int PRIMARY KEY)");
  pg.query("INSERT INTO t VALUES (1)");
  TestLoop loop;
  Pool pool(loop.get(), test::poolOptionsFor(pg, 1));
  std::optional<Reply> out;
  pool.pipeline({stmt("INSERT INTO t VALUES ($1)", 2), stmt("INSERT INTO t VALUES ($1)", 1),
                 stmt("INSERT INTO t VALUES ($1)", 3)},
                [&](Reply r) { out = std::move(r); });
  REQUIRE(loop.runUntil([&] { return out.has_value(); }));
  REQUIRE_FALSE(out->ok());
  CHECK(out->error->sqlstate == "23505");
  CHECK(out->error->kind == ErrorKind::kPermanent);
  CHECK(out->results.empty());
  CHECK(pg.scalar("SELECT count(*) FROM t") == "1");
  // The connection is usable afterwards.
  CHECK(runQuery(loop, pool, stmt("SELECT 1")).ok());
}

TEST_CASE("a committed transaction is visible and a dropped one is rolled back",
          "[db][postgres]") {
  PostgresServer pg;
  pg.query("CREATE TABLE t (x int)");
  TestLoop loop;
  Pool pool(loop.get(), test::poolOptionsFor(pg, 1));
  bool committed = false;
  pool.transaction([&](TransactionPtr tx, std::optional<DbError> err) {
    REQUIRE_FALSE(err);
    tx->query(stmt("INSERT INTO t VALUES (1)"), [&, tx](Reply r) {
      REQUIRE(r.ok());
      tx->commit({stmt("INSERT INTO t VALUES (2)")}, [&](Reply c) {
        REQUIRE(c.ok());
        CHECK(c.results.size() == 1);
        committed = true;
      });
    });
  });
  REQUIRE(loop.runUntil([&] { return committed; }));
  CHECK(pg.scalar("SELECT count(*) FROM t") == "2");

  bool dropped = false;
  pool.transaction([&](TransactionPtr tx, std::optional<DbError>) {
    tx->query(stmt("INSERT INTO t VALUES (3)"), [&, tx](Reply r) {
      REQUIRE(r.ok());
      dropped = true;  // tx goes out of scope without commit
    });
  });
  REQUIRE(loop.runUntil([&] { return dropped; }));
  // The one connection is rolled back before this query gets it.
  Reply r = runQuery(loop, pool, stmt("SELECT count(*) FROM t"));
  REQUIRE(r.ok());
  CHECK(r[0].int64(0, 0) == 2);
}

TEST_CASE("a transaction whose connection broke while it waited fails instead of running outside it",
          "[db][postgres]") {
  PostgresServer pg;
  pg.query("CREATE TABLE t (x int)");
  TestLoop loop;
  Pool pool(loop.get(), test::poolOptionsFor(pg, 1));
  TransactionPtr tx;
  std::string backend;
  pool.transaction([&](TransactionPtr t, std::optional<DbError> err) {
    REQUIRE_FALSE(err);
    t->query(stmt("SELECT pg_backend_pid()"), [&, t](Reply r) {
      REQUIRE(r.ok());
      backend = r[0].str(0, 0);
      tx = t;
    });
  });
  REQUIRE(loop.runUntil([&] { return tx != nullptr; }));
  // The server ends the session while the transaction is idle, and the pool
  // notices and connects again before the transaction's next statement.
  pg.query("SELECT pg_terminate_backend(" + backend + ")");
  REQUIRE(loop.runUntil([&] { return pool.stats().reconnects >= 1; }, 10s));
  std::optional<Reply> insert;
  tx->query(stmt("INSERT INTO t VALUES (1)"), [&](Reply r) { insert = std::move(r); });
  REQUIRE(loop.runUntil([&] { return insert.has_value(); }));
  REQUIRE_FALSE(insert->ok());
  CHECK(insert->error->transient());
  CHECK_FALSE(tx->open());
  tx.reset();
  // Nothing was written outside the transaction, and the connection serves
  // the next request.
  Reply count = runQuery(loop, pool, stmt("SELECT count(*) FROM t"));
  REQUIRE(count.ok());
  CHECK(count[0].int64(0, 0) == 0);
}

TEST_CASE("requests wait for a free connection in order when the pool is exhausted",
          "[db][postgres]") {
  PostgresServer pg;
  TestLoop loop;
  Pool pool(loop.get(), test::poolOptionsFor(pg, 1));
  std::vector<int> order;
  for (int i = 0; i < 8; ++i)
    pool.query(stmt("SELECT pg_sleep(0.01), $1::int", i), [&, i](Reply r) {
      CHECK(r.ok());
      order.push_back(i);
    });
  CHECK(pool.stats().waiting >= 7);
  REQUIRE(loop.runUntil([&] { return order.size() == 8; }));
  CHECK(order == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7});
}

TEST_CASE("the pool reconnects after a postgres restart and queued work then succeeds",
          "[db][postgres]") {
  PostgresServer pg;
  TestLoop loop;
  Pool pool(loop.get(), test::poolOptionsFor(pg, 2));
  pool.start();
  REQUIRE(runQuery(loop, pool, stmt("SELECT 1")).ok());
  pg.stop();
  // An idle connection notices the shutdown; a query now fails transiently
  // or waits for the reconnect, never crashes.
  std::optional<Reply> during;
  pool.query(stmt("SELECT 2"), [&](Reply r) { during = std::move(r); });
  loop.runFor(300ms);
  pg.start();
  REQUIRE(loop.runUntil([&] { return during.has_value(); }));
  if (!during->ok()) CHECK(during->error->transient());
  Reply after = runQuery(loop, pool, stmt("SELECT 3"));
  REQUIRE(after.ok());
  CHECK(after[0].int64(0, 0) == 3);
  CHECK(pool.stats().reconnects >= 1);
}

TEST_CASE("a server that accepts but never answers fails the connect after the timeout",
          "[db]") {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(fd, 16) == 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  TestLoop loop;
  PoolOptions o;
  o.conninfo = "postgresql://postgres@127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/x";
  o.size = 1;
  o.connect_timeout = 200ms;
  o.acquire_timeout = 600ms;
  Pool pool(loop.get(), o);
  std::optional<std::optional<DbError>> out;
  pool.ping(600ms, [&](std::optional<DbError> e) { out = std::move(e); });
  REQUIRE(loop.runUntil([&] { return out.has_value(); }, 5s));
  REQUIRE(out->has_value());
  CHECK((*out)->transient());
  CHECK((*out)->message.find("no answer within 200 ms") != std::string::npos);
  ::close(fd);
}

TEST_CASE("ping succeeds against a live server", "[db][postgres]") {
  PostgresServer pg;
  TestLoop loop;
  Pool pool(loop.get(), test::poolOptionsFor(pg, 1));
  std::optional<std::optional<DbError>> out;
  pool.ping(2s, [&](std::optional<DbError> e) { out = std::move(e); });
  REQUIRE(loop.runUntil([&] { return out.has_value(); }));
  CHECK_FALSE(out->has_value());
}

TEST_CASE("queries slower than the threshold are counted as slow", "[db][postgres]") {
  PostgresServer pg;
  TestLoop loop;
  PoolOptions o = test::poolOptionsFor(pg, 1);
  o.slow_query = 30ms;
  Pool pool(loop.get(), o);
  REQUIRE(runQuery(loop, pool, stmt("SELECT 1")).ok());
  CHECK(pool.stats().slow_queries == 0);
  REQUIRE(runQuery(loop, pool, stmt("SELECT pg_sleep(0.1)")).ok());
  CHECK(pool.stats().slow_queries == 1);
}

TEST_CASE("a simple-protocol script runs several commands in one statement", "[db][postgres]") {
  PostgresServer pg;
  TestLoop loop;
  Pool pool(loop.get(), test::poolOptionsFor(pg, 1));
  Reply r = runQuery(loop, pool, Statement{"CREATE TABLE a (x int); INSERT INTO a VALUES (7);", {}});
  REQUIRE(r.ok());
  CHECK(pg.scalar("SELECT x FROM a") == "7");
}

TEST_CASE("queued requests share one pipeline and an error in one leaves the others alone",
          "[db][postgres]") {
  PostgresServer pg;
  pg.query("CREATE TABLE t (x int PRIMARY KEY)");
  TestLoop loop;
  Pool pool(loop.get(), test::poolOptionsFor(pg, 1));
  int ok = 0, failed = 0;
  for (int i = 0; i < 20; ++i) {
    // Row 5 is inserted twice: the second insert fails alone.
    int v = i == 10 ? 5 : i;
    pool.pipeline({stmt("INSERT INTO t VALUES ($1)", v), stmt("SELECT $1::int", v)},
                  [&](Reply r) { r.ok() ? ++ok : ++failed; });
  }
  REQUIRE(loop.runUntil([&] { return ok + failed == 20; }));
  CHECK(ok == 19);
  CHECK(failed == 1);
  CHECK(pool.stats().merged > 1);
  CHECK(pg.scalar("SELECT count(*) FROM t") == "19");
  CHECK(runQuery(loop, pool, stmt("SELECT $1::int", 1)).ok());
}

TEST_CASE("grouped batches commit in one transaction and a failure reaches only its batch",
          "[db][postgres]") {
  PostgresServer pg;
  pg.query("CREATE TABLE t (x int PRIMARY KEY)");
  TestLoop loop;
  Pool pool(loop.get(), test::poolOptionsFor(pg, 1));
  REQUIRE(runQuery(loop, pool, stmt("SELECT 1")).ok());
  // Occupy the one connection so the grouped inserts queue up behind it.
  bool slept = false;
  pool.query(stmt("SELECT pg_sleep($1::float)", "0.05"), [&](Reply) { slept = true; });
  int ok = 0, failed = 0;
  std::string failed_state;
  for (int i = 0; i < 12; ++i) {
    pool.pipelineGrouped({stmt("INSERT INTO t VALUES ($1) RETURNING x", i)}, [&](Reply r) {
      REQUIRE((r.ok() ? r.results.size() == 1 : true));
      r.ok() ? ++ok : ++failed;
    });
  }
  REQUIRE(loop.runUntil([&] { return slept && ok == 12; }));
  CHECK(pool.stats().grouped == 12);
  CHECK(pg.scalar("SELECT count(*) FROM t") == "12");

  // A duplicate in the next group: the group fails, then each batch runs alone.
  slept = false;
  ok = 0;
  pool.query(stmt("SELECT pg_sleep($1::float)", "0.05"), [&](Reply) { slept = true; });
  for (int i = 100; i < 110; ++i) {
    int v = i == 105 ? 3 : i;  // 3 exists already
    pool.pipelineGrouped({stmt("INSERT INTO t VALUES ($1)", v)}, [&](Reply r) {
      if (r.ok()) {
        ++ok;
      } else {
        ++failed;
        failed_state = r.error->sqlstate;
      }
    });
  }
  REQUIRE(loop.runUntil([&] { return slept && ok + failed == 10; }));
  CHECK(ok == 9);
  CHECK(failed == 1);
  CHECK(failed_state == "23505");
  CHECK(pool.stats().group_retries == 1);
  CHECK(pg.scalar("SELECT count(*) FROM t") == "21");
}

TEST_CASE("a transaction kept open after an error goes on from its savepoint",
          "[db][postgres]") {
  PostgresServer pg;
  pg.query("CREATE TABLE t (x int PRIMARY KEY)");
  TestLoop loop;
  Pool pool(loop.get(), test::poolOptionsFor(pg));
  pool.start();
  TransactionPtr tx;
  pool.transaction([&](TransactionPtr t, std::optional<DbError> e) {
    REQUIRE_FALSE(e);
    tx = std::move(t);
  });
  REQUIRE(loop.runUntil([&] { return tx != nullptr; }));
  std::optional<Reply> first;
  tx->commit({stmt("INSERT INTO t VALUES ($1)", 1), Statement{"SAVEPOINT s", {}},
              stmt("INSERT INTO t VALUES ($1)", 1), stmt("INSERT INTO t VALUES ($1)", 3)},
             [&](Reply r) { first = std::move(r); }, OnError::kKeep);
  REQUIRE(loop.runUntil([&] { return first.has_value(); }));
  REQUIRE_FALSE(first->ok());
  CHECK(first->error->sqlstate == "23505");
  REQUIRE(first->failed_at);
  CHECK(*first->failed_at == 2);  // BEGIN is not counted
  CHECK(tx->open());
  std::optional<Reply> second;
  tx->commit({Statement{"ROLLBACK TO SAVEPOINT s", {}}, stmt("INSERT INTO t VALUES ($1)", 2)},
             [&](Reply r) { second = std::move(r); }, OnError::kKeep);
  REQUIRE(loop.runUntil([&] { return second.has_value(); }));
  CHECK(second->ok());
  CHECK_FALSE(tx->open());
  CHECK(pg.scalar("SELECT string_agg(x::text, ',' ORDER BY x) FROM t") == "1,2");
  // Without kKeep an error ends the transaction.
  TransactionPtr tx2;
  pool.transaction([&](TransactionPtr t, std::optional<DbError>) { tx2 = std::move(t); });
  REQUIRE(loop.runUntil([&] { return tx2 != nullptr; }));
  std::optional<Reply> third;
  tx2->run({stmt("INSERT INTO t VALUES ($1)", 5), stmt("INSERT INTO t VALUES ($1)", 1)},
           [&](Reply r) { third = std::move(r); });
  REQUIRE(loop.runUntil([&] { return third.has_value(); }));
  CHECK(*third->failed_at == 1);
  CHECK_FALSE(tx2->open());
  CHECK(pg.scalar("SELECT count(*) FROM t") == "2");
}

TEST_CASE("a setting made local in a batch holds until that batch commits, alone or grouped",
          "[db][postgres]") {
  // The order insert relies on this for synchronous_commit (jobs/store.cpp);
  // the test server runs with synchronous_commit off already, so another
  // setting shows it.
  PostgresServer pg;
  TestLoop loop;
  Pool pool(loop.get(), test::poolOptionsFor(pg, 1));
  Statement local{"SELECT set_config('statement_timeout', '1234', true)", {}};
  Statement show{"SHOW statement_timeout", {}};
  std::optional<Reply> alone;
  pool.pipeline({local, show}, [&](Reply r) { alone = std::move(r); });
  REQUIRE(loop.runUntil([&] { return alone.has_value(); }));
  REQUIRE(alone->ok());
  CHECK(alone->results[1].str(0, 0) == "1234ms");
  CHECK(runQuery(loop, pool, show)[0].str(0, 0) == "0");

  // Batches grouped into one transaction: the setting lasts to its COMMIT.
  bool slept = false;
  pool.query(stmt("SELECT pg_sleep($1::float)", "0.05"), [&](Reply) { slept = true; });
  std::vector<std::string> seen;
  for (int i = 0; i < 3; ++i)
    pool.pipelineGrouped({local, show}, [&](Reply r) {
      REQUIRE(r.ok());
      seen.push_back(r.results[1].str(0, 0));
    });
  REQUIRE(loop.runUntil([&] { return slept && seen.size() == 3; }));
  CHECK(pool.stats().grouped == 3);
  CHECK(seen == std::vector<std::string>{"1234ms", "1234ms", "1234ms"});
  CHECK(runQuery(loop, pool, show)[0].str(0, 0) == "0");
}

TEST_CASE("the stats of two pools add up field by field", "[db]") {
  // Distinct values, so a field left out of the sum keeps its own and shows.
  db::PoolStats a{.batches = 1,
                  .errors = 2,
                  .slow_queries = 3,
                  .reconnects = 4,
                  .acquire_timeouts = 5,
                  .merged = 6,
                  .grouped = 7,
                  .group_retries = 8,
                  .connections = 9,
                  .busy = 10,
                  .waiting = 11};
  db::PoolStats b = a;
  a += b;
  CHECK(a.batches == 2);
  CHECK(a.errors == 4);
  CHECK(a.slow_queries == 6);
  CHECK(a.reconnects == 8);
  CHECK(a.acquire_timeouts == 10);
  CHECK(a.merged == 12);
  CHECK(a.grouped == 14);
  CHECK(a.group_retries == 16);
  CHECK(a.connections == 18);
  CHECK(a.busy == 20);
  CHECK(a.waiting == 22u);
}

}  // namespace db_pool_test
