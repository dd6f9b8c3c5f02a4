// Helpers shared by the db module's tests: pool options for a test server
// (short timeouts and backoff) and a query run to completion on a TestLoop.
#pragma once

#include <catch2/catch.hpp>

#include <chrono>
#include <optional>
#include <utility>

#include "db/pool.h"
#include "tests/db/loop.h"
#include "tests/support/servers.h"

namespace clusterd::test {

inline db::PoolOptions poolOptionsFor(const PostgresServer& pg, int size = 2) {
  using namespace std::chrono_literals;
  db::PoolOptions o;
  o.conninfo = pg.url();
  o.size = size;
  o.connect_timeout = 2s;
  o.acquire_timeout = 5s;
  o.backoff_min = 50ms;
  o.backoff_max = 300ms;
  return o;
}

inline db::Reply runQuery(TestLoop& loop, db::Pool& pool, db::Statement s) {
  std::optional<db::Reply> out;
  pool.query(std::move(s), [&](db::Reply r) { out = std::move(r); });
  REQUIRE(loop.runUntil([&] { return out.has_value(); }));
  return std::move(*out);
}

}  // namespace clusterd::test
