// The order id guard (jobs/order_ids.h) against real PostgreSQL crashes: a
// crash that took back the sequence's last advances must not make the shop
// hand out an order id again. The lost WAL is simulated by moving the
// sequence back (and deleting the orders it would have taken with it) and
// making that durable with a checkpoint; the crash itself is real.
#include <catch2/catch.hpp>

#include <signal.h>

#include <set>

#include "jobs/order_ids.h"
#include "tests/jobs/shop_fixture.h"
#include "tests/support/process.h"

namespace jobs_order_ids_test {

using namespace clusterd;
using namespace clusterd::jobs;
using clusterd::test::ShopFixture;
using namespace std::chrono_literals;

namespace {

// What a crash that lost the WAL of the last checkouts does: their rows are
// gone and the sequence stands where it stood before them.
void loseLastOrders(ShopFixture& f, int64_t keep) {
  f.pg.query(fmt::format("DELETE FROM orders WHERE id > {}", keep));
  f.pg.query(fmt::format("SELECT setval('orders_id_seq', {})", keep));
  f.pg.query("CHECKPOINT");
}

std::unique_ptr<db::Pool> checkoutPool(ShopFixture& f) {
  db::PoolOptions o = f.pool->options();
  o.size = 3;
  auto pool = std::make_unique<db::Pool>(f.loop.get(), o);
  pool->start();
  return pool;
}

int64_t placeOn(ShopFixture& f, db::Pool& pool, const std::string& customer) {
  std::optional<PlacedOrder> placed;
  insertOrder(pool, OrderRequest{customer, {{"SKU-000001", 1}}, ""},
              [&](PlacedOrder o, std::optional<db::DbError> e) {
                INFO("checkout of " << customer << ": " << (e ? e->message : ""));
                REQUIRE_FALSE(e);
                placed = o;
              });
  REQUIRE(f.loop.runUntil([&] { return placed.has_value(); }));
  return placed->order_id;
}

// Waits until each pool has opened (and set up) every connection again.
void waitReconnected(ShopFixture& f, const std::vector<db::Pool*>& pools, uint64_t before) {
  REQUIRE(f.loop.runUntil(
      [&] {
        uint64_t n = 0;
        for (db::Pool* p : pools) n += p->stats().reconnects;
        size_t size = 0;
        for (db::Pool* p : pools) size += static_cast<size_t>(p->options().size);
        return n >= before + size;
      },
      30s));
}

uint64_t reconnects(const std::vector<db::Pool*>& pools) {
  uint64_t n = 0;
  for (db::Pool* p : pools) n += p->stats().reconnects;
  return n;
}

int64_t lastValue(ShopFixture& f) {
  return std::stoll(f.pg.scalar("SELECT last_value FROM orders_id_seq"));
}

}  // namespace

TEST_CASE("after a postgres crash no order id handed out before it is handed out again",
          "[jobs][order][postgres]") {
  ShopFixture f;
  auto pool = checkoutPool(f);
  auto guard = guardOrderIds(*pool);
  // A fresh shop starts at 1: the migration wrote the guard row.
  int64_t highest = 0;
  for (int i = 0; i < 5; ++i) highest = placeOn(f, *pool, fmt::format("c{}@example.com", i));
  REQUIRE(highest == 5);
  loseLastOrders(f, 2);

  uint64_t before = reconnects({pool.get()});
  f.pg.stopImmediate();
  f.pg.start();
  waitReconnected(f, {pool.get()}, before);
  CHECK(f.pg.scalar("SELECT count(*) FROM order_id_guard") == "1");
  int64_t next = placeOn(f, *pool, "after@example.com");
  CHECK(next > highest);
  CHECK(next == 2 + kMaxLostOrderIds + 1);

  // A clean restart loses no WAL: the sequence goes on where it was.
  before = reconnects({pool.get()});
  f.pg.stop();
  f.pg.start();
  waitReconnected(f, {pool.get()}, before);
  CHECK(placeOn(f, *pool, "clean@example.com") == next + 1);
}

TEST_CASE("a killed backend, which leaves the postmaster running, moves the order ids on too",
          "[jobs][order][postgres]") {
  ShopFixture f;
  auto pool = checkoutPool(f);
  auto guard = guardOrderIds(*pool);
  for (int i = 0; i < 3; ++i) placeOn(f, *pool, fmt::format("a{}@example.com", i));
  std::string started = f.pg.scalar("SELECT pg_postmaster_start_time()");
  loseLastOrders(f, 1);
  // The OOM killer's way: one backend dies, the postmaster reinitialises.
  pid_t backend =
      std::stoi(f.pg.scalar("SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'"
                            " AND pid <> pg_backend_pid() LIMIT 1"));
  uint64_t before = reconnects({pool.get()});
  REQUIRE(::kill(backend, SIGKILL) == 0);
  waitReconnected(f, {pool.get()}, before);
  CHECK(f.pg.scalar("SELECT pg_postmaster_start_time()") == started);
  CHECK(placeOn(f, *pool, "b@example.com") == 1 + kMaxLostOrderIds + 1);
}

TEST_CASE("workers racing after one crash move the order id sequence once",
          "[jobs][order][postgres]") {
  ShopFixture f;
  // Three processes' checkout pools: nine sessions check at once after the crash.
  std::vector<std::unique_ptr<db::Pool>> pools;
  std::vector<std::unique_ptr<db::SessionSetup>> guards;
  std::vector<db::Pool*> raw;
  for (int i = 0; i < 3; ++i) {
    pools.push_back(checkoutPool(f));
    guards.push_back(guardOrderIds(*pools.back()));
    raw.push_back(pools.back().get());
  }
  std::set<int64_t> ids;
  for (int i = 0; i < 6; ++i)
    ids.insert(placeOn(f, *pools[static_cast<size_t>(i) % 3], fmt::format("c{}@example.com", i)));
  int64_t highest = *ids.rbegin();
  loseLastOrders(f, highest - 3);

  uint64_t before = reconnects(raw);
  f.pg.stopImmediate();
  f.pg.start();
  waitReconnected(f, raw, before);
  CHECK(lastValue(f) == highest - 3 + kMaxLostOrderIds);
  for (int i = 0; i < 6; ++i) {
    int64_t id = placeOn(f, *pools[static_cast<size_t>(i) % 3], fmt::format("d{}@example.com", i));
    CHECK(id > highest);
    CHECK(ids.insert(id).second);
  }
  CHECK(lastValue(f) == highest - 3 + kMaxLostOrderIds + 6);
}

TEST_CASE("checkouts wait for the order id check, which names the migrations when they are missing",
          "[jobs][order][postgres]") {
  ShopFixture f;
  f.pg.query("DROP TABLE order_id_guard");
  db::PoolOptions o = f.pool->options();
  o.acquire_timeout = 1s;
  db::Pool pool(f.loop.get(), o);
  auto guard = guardOrderIds(pool);
  pool.start();
  std::optional<db::DbError> error;
  bool answered = false;
  insertOrder(pool, OrderRequest{"x@example.com", {{"SKU-000001", 1}}, ""},
              [&](PlacedOrder, std::optional<db::DbError> e) {
                error = std::move(e);
                answered = true;
              });
  REQUIRE(f.loop.runUntil([&] { return answered; }));
  REQUIRE(error);
  CHECK(error->transient());  // the API answers 503
  CHECK(error->message.find("checking whether a PostgreSQL crash took back order ids: ") !=
        std::string::npos);
  CHECK(error->message.find("clusterd db migrate") != std::string::npos);
  CHECK(f.pg.scalar("SELECT count(*) FROM orders") == "0");
}

}  // namespace jobs_order_ids_test
