// The pending-order sweeper against real Redis and PostgreSQL: an order whose
// order.process job was never enqueued (the checkout's enqueue failed after
// its insert) or was lost from Redis gets a job again and is decided once; an
// order whose job still waits gets no second one; orders inside the grace
// period are left alone; a sweeper that finds the sweep lock taken does
// nothing; the interval and grace come from the environment.
#include <catch2/catch.hpp>

#include <cstdlib>

#include "jobs/order_sweeper.h"
#include "jobs/shop.h"
#include "queue/client.h"
#include "queue/consumer.h"
#include "tests/jobs/shop_fixture.h"

namespace jobs_order_sweeper_test {

using namespace clusterd;
using namespace clusterd::jobs;
using clusterd::test::RedisServer;
using clusterd::test::ShopFixture;
using clusterd::test::TempDir;
using namespace std::chrono_literals;

namespace {

struct SweepRig {
  RedisServer redis;
  std::unique_ptr<queue::Client> client;

  explicit SweepRig(ShopFixture& f) {
    auto c = queue::Client::create(f.loop.get(), {.redis_url = redis.url()});
    REQUIRE(c.ok());
    client = std::move(*c);
  }

  // Enqueues the order's job the way POST /v1/orders does; returns its id.
  std::string enqueueLikeCheckout(ShopFixture& f, const OrderRequest& req, const PlacedOrder& p) {
    std::optional<Result<std::string>> id;
    EnqueueOptions opts;
    opts.unique = orderJobUniqueKey(p);
    EnqueueFn enqueue = clientEnqueue(*client);
    enqueue(kOrdersQueue, kOrderProcess, orderJobPayload(req, p), opts,
            [&](Result<std::string> r) { id = std::move(r); });
    REQUIRE(f.loop.runUntil([&] { return id.has_value(); }));
    REQUIRE(id->ok());
    return **id;
  }

  queue::QueueCounts counts(ShopFixture& f) {
    std::optional<Result<queue::QueueCounts>> c;
    client->counts(kOrdersQueue, [&](Result<queue::QueueCounts> r) { c = std::move(r); });
    REQUIRE(f.loop.runUntil([&] { return c.has_value(); }));
    REQUIRE(c->ok());
    return **c;
  }

  static SweepResult sweep(ShopFixture& f, OrderSweeper& s) {
    std::optional<Result<SweepResult>> out;
    s.sweepOnce([&](Result<SweepResult> r) { out = std::move(r); });
    REQUIRE(f.loop.runUntil([&] { return out.has_value(); }));
    REQUIRE(out->ok());
    return **out;
  }
};

SweepOptions noGrace() {
  SweepOptions o;
  o.grace = 0ms;
  return o;
}

}  // namespace

TEST_CASE("orders left pending without a job are enqueued again by the sweeper and decided once",
          "[jobs][sweeper][postgres][redis]") {
  ShopFixture f(5, 10);
  SweepRig rig(f);
  // The checkout's enqueue failed (Redis down: the client got a 503).
  OrderRequest a{"never@example.com", {{"SKU-000001", 2}}, "sweep-a"};
  PlacedOrder pa = f.place(a);
  // The job was enqueued, then lost with its unique key (an OS crash
  // inside the AOF's fsync window).
  OrderRequest b{"lost@example.com", {{"SKU-000002", 3}}, "sweep-b"};
  PlacedOrder pb = f.place(b);
  std::string job_b = rig.enqueueLikeCheckout(f, b, pb);
  std::optional<Result<int64_t>> deleted;
  rig.client->admin(kOrdersQueue, queue::AdminOp::kDelete, job_b,
                    [&](Result<int64_t> r) { deleted = std::move(r); });
  REQUIRE(f.loop.runUntil([&] { return deleted.has_value(); }));
  REQUIRE(deleted->ok());
  REQUIRE(rig.counts(f).waiting == 0);

  // The shop as a jobs worker runs it: its sweeper on its timer.
  TempDir home{"clusterd-sweep"};
  ShopOptions so;
  so.home = home.path();
  so.sweep = noGrace();
  so.sweep->interval = 200ms;
  auto shop = Shop::create(f.loop.get(), *f.pool, *f.pool, clientEnqueue(*rig.client), so);
  REQUIRE(shop.ok());
  auto consumer = queue::Consumer::create(
      f.loop.get(),
      {.redis_url = rig.redis.url(), .queues = {{kOrdersQueue, 4}, {kEmailQueue, 1}}});
  REQUIRE(consumer.ok());
  (*shop)->registerHandlers(**consumer);
  bool started = false;
  (*consumer)->start([&](Result<void> r) {
    REQUIRE(r.ok());
    started = true;
  });
  REQUIRE(f.loop.runUntil([&] { return started; }));
  (*shop)->startOrderSweeper(*rig.client);

  REQUIRE(f.loop.runUntil(
      [&] { return f.pg.scalar("SELECT count(*) FROM orders WHERE status = 'confirmed'") == "2"; },
      20s));
  // Each effect once: stock taken once, one ledger row and one email each.
  CHECK(f.pg.scalar("SELECT stock FROM variants WHERE sku = 'SKU-000001'") == "8");
  CHECK(f.pg.scalar("SELECT stock FROM variants WHERE sku = 'SKU-000002'") == "7");
  CHECK(f.pg.scalar("SELECT count(*) FROM job_ledger") == "2");
  CHECK(f.pg.scalar(fmt::format("SELECT count(*) FROM email_outbox WHERE order_id IN ({}, {})",
                                pa.order_id, pb.order_id)) == "2");
  // Later rounds find nothing left to do.
  f.loop.runFor(500ms);
  std::string metrics;
  (*shop)->renderMetrics(metrics);
  CHECK(metrics.find("clusterd_shop_orders_requeued_total 2\n") != std::string::npos);
  bool drained = false;
  (*consumer)->drain(5s, [&] { drained = true; });
  f.loop.runUntil([&] { return drained; });
}

TEST_CASE("the sweeper does not enqueue a second job for an order whose job still waits",
          "[jobs][sweeper][postgres][redis]") {
  ShopFixture f;
  SweepRig rig(f);
  OrderRequest req{"waiting@example.com", {{"SKU-000001", 1}}, "sweep-wait"};
  PlacedOrder placed = f.place(req);
  std::string job = rig.enqueueLikeCheckout(f, req, placed);

  OrderSweeper sweeper(f.loop.get(), *f.pool, *rig.client, noGrace());
  SweepResult r = SweepRig::sweep(f, sweeper);
  CHECK(r.stale == 1);
  CHECK(r.requeued == 0);
  CHECK(sweeper.requeued() == 0);
  queue::QueueCounts c = rig.counts(f);
  CHECK(c.waiting == 1);
  CHECK(c.enqueued_total == 1);
}

TEST_CASE("the sweeper leaves pending orders younger than the grace period alone",
          "[jobs][sweeper][postgres][redis]") {
  ShopFixture f;
  SweepRig rig(f);
  int64_t id = f.placeOrder("fresh@example.com", {{"SKU-000001", 1}});
  OrderSweeper sweeper(f.loop.get(), *f.pool, *rig.client, SweepOptions{});
  SweepResult r = SweepRig::sweep(f, sweeper);
  CHECK(r.stale == 0);
  CHECK(r.requeued == 0);
  CHECK(rig.counts(f).enqueued_total == 0);

  // The same order past the grace period is swept.
  f.pg.query(
      fmt::format("UPDATE orders SET created_at = now() - interval '2 minutes' WHERE id = {}", id));
  r = SweepRig::sweep(f, sweeper);
  CHECK(r.stale == 1);
  CHECK(r.requeued == 1);
  CHECK(rig.counts(f).waiting == 1);
}

TEST_CASE("a sweeper that finds the sweep lock taken skips its round",
          "[jobs][sweeper][postgres][redis]") {
  ShopFixture f;
  SweepRig rig(f);
  f.placeOrder("locked@example.com", {{"SKU-000001", 1}});
  // Another process's sweeper holds the lock for its round.
  db::TransactionPtr other;
  bool locked = false;
  f.pool->transaction([&](db::TransactionPtr tx, std::optional<db::DbError> err) {
    REQUIRE_FALSE(err);
    other = std::move(tx);
    other->query(db::stmt("SELECT pg_advisory_xact_lock($1)", kOrderSweepLock), [&](db::Reply r) {
      REQUIRE(r.ok());
      locked = true;
    });
  });
  REQUIRE(f.loop.runUntil([&] { return locked; }));

  OrderSweeper sweeper(f.loop.get(), *f.pool, *rig.client, noGrace());
  SweepResult r = SweepRig::sweep(f, sweeper);
  CHECK(r.locked_elsewhere);
  CHECK(r.requeued == 0);
  CHECK(rig.counts(f).enqueued_total == 0);

  // Ending the other round releases the lock. Wait for the server to have
  // ended it: rollback() only sends ROLLBACK, and the next round could reach
  // the server first. That transaction wrote nothing, so a commit ends it
  // just the same and says when it is done.
  bool released = false;
  other->commit([&](db::Reply rep) {
    REQUIRE(rep.ok());
    released = true;
  });
  REQUIRE(f.loop.runUntil([&] { return released; }));
  r = SweepRig::sweep(f, sweeper);
  CHECK_FALSE(r.locked_elsewhere);
  CHECK(r.requeued == 1);
}

TEST_CASE("the sweep interval and grace come from the environment and are checked",
          "[jobs][sweeper]") {
  // Unsets both variables before and after, also when a check fails.
  struct CleanEnv {
    CleanEnv() { unset(); }
    ~CleanEnv() { unset(); }
    static void unset() {
      unsetenv("CLUSTERD_ORDER_SWEEP_INTERVAL");
      unsetenv("CLUSTERD_ORDER_SWEEP_GRACE");
    }
  } clean;
  auto d = sweepOptionsFromEnv();
  REQUIRE(d.ok());
  CHECK(d->enabled);
  CHECK(d->interval == 30s);
  CHECK(d->grace == 60s);

  setenv("CLUSTERD_ORDER_SWEEP_INTERVAL", "10s", 1);
  setenv("CLUSTERD_ORDER_SWEEP_GRACE", "5m", 1);
  auto set = sweepOptionsFromEnv();
  REQUIRE(set.ok());
  CHECK(set->interval == 10s);
  CHECK(set->grace == 5min);

  setenv("CLUSTERD_ORDER_SWEEP_INTERVAL", "off", 1);
  auto off = sweepOptionsFromEnv();
  REQUIRE(off.ok());
  CHECK_FALSE(off->enabled);

  setenv("CLUSTERD_ORDER_SWEEP_GRACE", "200ms", 1);
  auto tooShort = sweepOptionsFromEnv();
  REQUIRE_FALSE(tooShort.ok());
  CHECK(tooShort.error().message.find("CLUSTERD_ORDER_SWEEP_GRACE=200ms") != std::string::npos);
  setenv("CLUSTERD_ORDER_SWEEP_GRACE", "off", 1);
  CHECK_FALSE(sweepOptionsFromEnv().ok());
}

}  // namespace jobs_order_sweeper_test
