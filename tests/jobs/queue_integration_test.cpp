// The shop handlers on the real queue: queue::Client enqueues, a
// queue::Consumer runs jobs through jobs::Shop, against real Redis and
// Postgres, including a Postgres restart in the middle of the run and a real
// deadlock provoked by the test's own connections.
#include <catch2/catch.hpp>

#include <dirent.h>

#include "db/pool.h"
#include "jobs/shop.h"
#include "queue/client.h"
#include "queue/consumer.h"
#include "tests/jobs/shop_fixture.h"

namespace jobs_queue_integration_test {

using namespace clusterd;
using namespace clusterd::jobs;
using clusterd::test::RedisServer;
using clusterd::test::ShopFixture;
using clusterd::test::TempDir;
using namespace std::chrono_literals;

namespace {

size_t countFiles(const std::string& dir) {
  size_t n = 0;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') ++n;
    closedir(d);
  }
  return n;
}

struct QueueShop {
  RedisServer redis;
  TempDir home{"clusterd-shop"};
  std::unique_ptr<queue::Client> client;
  std::unique_ptr<queue::Consumer> consumer;
  std::shared_ptr<Shop> shop;

  explicit QueueShop(ShopFixture& f) {
    std::map<std::string, config::QueueDefaults> defaults;
    for (const char* q : {kOrdersQueue, kEmailQueue, kInventoryQueue}) {
      config::QueueDefaults d;
      d.attempts = 20;
      d.backoff = 200ms;
      defaults[q] = d;
    }
    auto c = queue::Client::create(f.loop.get(), {.redis_url = redis.url(), .defaults = defaults});
    REQUIRE(c.ok());
    client = std::move(*c);
    ShopOptions o;
    o.home = home.path();
    o.redis_url = redis.url();
    auto s = Shop::create(f.loop.get(), *f.pool, *f.pool, clientEnqueue(*client), o);
    REQUIRE(s.ok());
    shop = *s;
    auto k = queue::Consumer::create(
        f.loop.get(), {.redis_url = redis.url(),
                       .queues = {{kOrdersQueue, 16}, {kEmailQueue, 2}, {kInventoryQueue, 2}},
                       .defaults = defaults});
    REQUIRE(k.ok());
    consumer = std::move(*k);
    shop->registerHandlers(*consumer);
    bool started = false;
    consumer->start([&](Result<void> r) {
      REQUIRE(r.ok());
      started = true;
    });
    REQUIRE(f.loop.runUntil([&] { return started; }));
  }

  std::string enqueueOrder(ShopFixture& f, int64_t order_id) {
    std::optional<std::string> id;
    client->enqueue(kOrdersQueue,
                    {.name = kOrderProcess, .payload = queue::payloadFromJson({{"order_id", order_id}})},
                    [&](Result<queue::Enqueued> r) {
                      REQUIRE(r.ok());
                      id = r->id;
                    });
    REQUIRE(f.loop.runUntil([&] { return id.has_value(); }));
    return *id;
  }

  // The job once it reached `state` (fails the test after 20 s).
  queue::Job waitForJob(ShopFixture& f, const std::string& id, queue::JobState state,
                        const char* queue_name = kOrdersQueue) {
    std::optional<queue::Job> seen;
    bool ok = f.loop.runUntil(
        [&] {
          bool answered = false;
          client->job(queue_name, id, [&](Result<std::optional<queue::Job>> r) {
            if (r.ok() && r->has_value() && (*r)->state == state) seen = **r;
            answered = true;
          });
          f.loop.runUntil([&] { return answered; });
          if (!seen) f.loop.runFor(50ms);
          return seen.has_value();
        },
        20s);
    REQUIRE(ok);
    return *seen;
  }

  // The job's key in job_ledger (its queue, id and record's uid).
  std::string ledgerKeyOf(ShopFixture& f, const char* queue_name, const std::string& id) {
    std::optional<queue::Job> seen;
    client->job(queue_name, id, [&](Result<std::optional<queue::Job>> r) {
      REQUIRE(r.ok());
      REQUIRE(r->has_value());
      seen = **r;
    });
    REQUIRE(f.loop.runUntil([&] { return seen.has_value(); }));
    return ledgerKey(Job{id, seen->name, nullptr, queue_name, seen->uid});
  }

  void stop(ShopFixture& f) {
    bool drained = false;
    consumer->drain(5s, [&] { drained = true; });
    f.loop.runUntil([&] { return drained; });
  }
};

}  // namespace

TEST_CASE("orders enqueued on the real queue are processed and their emails land in the maildir",
          "[jobs][queue][postgres][redis]") {
  ShopFixture f(5, 10);
  QueueShop q(f);
  std::vector<int64_t> ids;
  for (int i = 0; i < 30; ++i) ids.push_back(f.placeOrder("q@example.com", {{"SKU-000001", 1}}));
  for (int64_t id : ids) q.enqueueOrder(f, id);
  REQUIRE(f.loop.runUntil(
      [&] { return f.pg.scalar("SELECT count(*) FROM orders WHERE status = 'pending'") == "0"; }, 30s));
  CHECK(f.pg.scalar("SELECT count(*) FROM orders WHERE status = 'confirmed'") == "10");
  // A message is linked into new/ before its outbox row is marked sent, so
  // wait for the row, then count the files.
  REQUIRE(f.loop.runUntil(
      [&] { return f.pg.scalar("SELECT count(*) FROM email_outbox WHERE status = 'sent'") == "10"; },
      20s));
  CHECK(countFiles(q.home.path() + "/mail/new") == 10);
  // The same job run twice (a redelivery) is a no-op: enqueue order 1 again.
  q.enqueueOrder(f, ids[0]);
  f.loop.runFor(300ms);
  CHECK(f.pg.scalar("SELECT stock FROM variants WHERE sku = 'SKU-000001'") == "0");
  std::string metrics;
  q.shop->renderMetrics(metrics);
  CHECK(metrics.find("clusterd_shop_jobs_total{outcome=\"done\"}") != std::string::npos);
  q.stop(f);
}

TEST_CASE("a completed shop job keeps what its handler reported as the job's result",
          "[jobs][queue][postgres][redis]") {
  ShopFixture f(1, 1);
  QueueShop q(f);
  int64_t first = f.placeOrder("r@example.com", {{"SKU-000001", 1}});
  int64_t second = f.placeOrder("r@example.com", {{"SKU-000001", 1}});
  queue::Job confirmed = q.waitForJob(f, q.enqueueOrder(f, first), queue::JobState::kCompleted);
  CHECK(confirmed.resultJson()["status"] == "confirmed");
  CHECK(confirmed.resultJson().contains("total_cents"));
  // Out of stock: done, not failed, and the result says why.
  queue::Job rejected = q.waitForJob(f, q.enqueueOrder(f, second), queue::JobState::kCompleted);
  CHECK(rejected.resultJson()["status"] == "rejected");
  // Run again, the job does nothing and its result says so.
  queue::Job again = q.waitForJob(f, q.enqueueOrder(f, first), queue::JobState::kCompleted);
  CHECK(again.resultJson()["note"].get<std::string>().find("already") != std::string::npos);
  q.stop(f);
}

TEST_CASE("a postgres restart in the middle of a run delays queued orders but loses none",
          "[jobs][queue][postgres][redis][fault]") {
  ShopFixture f(2, 10'000);
  QueueShop q(f);
  std::vector<int64_t> ids;
  for (int i = 0; i < 150; ++i) ids.push_back(f.placeOrder("r@example.com", {{"SKU-000002", 2}}));
  for (size_t i = 0; i < 75; ++i) q.enqueueOrder(f, ids[i]);
  f.loop.runFor(50ms);
  f.pg.stop();
  for (size_t i = 75; i < ids.size(); ++i) q.enqueueOrder(f, ids[i]);
  f.loop.runFor(1s);
  f.pg.start();
  REQUIRE(f.loop.runUntil(
      [&] { return f.pg.scalar("SELECT count(*) FROM orders WHERE status = 'confirmed'") == "150"; },
      60s));
  CHECK(f.pg.scalar("SELECT stock FROM variants WHERE sku = 'SKU-000002'") == "9700");
  REQUIRE(f.loop.runUntil([&] { return countFiles(q.home.path() + "/mail/new") == 150; }, 30s));
  q.stop(f);
}

TEST_CASE("a shop job failing on bad data is dead after one attempt, a transient error retries",
          "[jobs][queue][postgres][redis]") {
  ShopFixture f(2, 100);
  QueueShop q(f);
  // Bad data: a confirmation already in the outbox makes the insert violate
  // the one-confirmation-per-order constraint (SQLSTATE 23505, permanent).
  int64_t bad = f.placeOrder("bad@example.com", {{"SKU-000001", 1}});
  f.pg.query(fmt::format("INSERT INTO email_outbox (order_id, recipient, template)"
                         " VALUES ({}, 'bad@example.com', 'order_confirmed')",
                         bad));
  queue::Job dead = q.waitForJob(f, q.enqueueOrder(f, bad), queue::JobState::kDead);
  CHECK(dead.permanent);
  CHECK(dead.attempt == 1);
  REQUIRE(dead.errors.size() == 1);
  CHECK(dead.errors[0].error.find("permanent failure") != std::string::npos);
  CHECK(dead.errors[0].error.find("email_outbox_order_id_template_key") != std::string::npos);
  CHECK(f.pg.scalar(fmt::format("SELECT status FROM orders WHERE id = {}", bad)) == "pending");
  // The same for inventory.adjust: a line that would take stock below zero.
  std::optional<std::string> inv;
  q.client->enqueue(kInventoryQueue,
                    {.name = kInventoryAdjust,
                     .payload = queue::payloadFromJson(
                         {{"adjustments", {{{"sku", "SKU-000002"}, {"delta", -1000}}}}})},
                    [&](Result<queue::Enqueued> r) {
                      REQUIRE(r.ok());
                      inv = r->id;
                    });
  REQUIRE(f.loop.runUntil([&] { return inv.has_value(); }));
  queue::Job inv_dead = q.waitForJob(f, *inv, queue::JobState::kDead, kInventoryQueue);
  CHECK(inv_dead.permanent);
  CHECK(inv_dead.attempt == 1);
  REQUIRE(inv_dead.errors.size() == 1);
  CHECK(inv_dead.errors[0].error.find("would make it negative") != std::string::npos);

  // A serialization failure (40001, transient) on the first two tries: the
  // job is retried with backoff and then succeeds, exactly once.
  f.pg.query("CREATE SEQUENCE fault_seq");
  f.pg.query("CREATE FUNCTION fault() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
             " IF nextval('fault_seq') <= 2 THEN"
             "   RAISE EXCEPTION 'forced serialization failure' USING ERRCODE = '40001';"
             " END IF; RETURN NEW; END $$");
  f.pg.query("CREATE TRIGGER fault BEFORE UPDATE ON orders FOR EACH ROW"
             " WHEN (NEW.customer = 'retry@example.com') EXECUTE FUNCTION fault()");
  int64_t flaky = f.placeOrder("retry@example.com", {{"SKU-000002", 3}});
  queue::Job done = q.waitForJob(f, q.enqueueOrder(f, flaky), queue::JobState::kCompleted);
  CHECK(done.attempt == 2);
  CHECK_FALSE(done.permanent);
  CHECK(f.pg.scalar(fmt::format("SELECT status FROM orders WHERE id = {}", flaky)) == "confirmed");
  CHECK(f.pg.scalar("SELECT stock FROM variants WHERE sku = 'SKU-000002'") == "97");
  CHECK(f.pg.scalar("SELECT nextval('fault_seq')") == "4");
  q.stop(f);
}

TEST_CASE("job ids repeat across queues and the ledger tells them apart",
          "[jobs][queue][postgres][redis]") {
  ShopFixture f(2, 100);
  QueueShop q(f);
  int64_t order = f.placeOrder("ids@example.com", {{"SKU-000001", 2}});
  std::string order_job = q.waitForJob(f, q.enqueueOrder(f, order), queue::JobState::kCompleted).id;
  std::optional<std::string> inv_job;
  q.client->enqueue(kInventoryQueue,
                    {.name = kInventoryAdjust,
                     .payload = queue::payloadFromJson(
                         {{"adjustments", {{{"sku", "SKU-000001"}, {"delta", 50}}}}})},
                    [&](Result<queue::Enqueued> r) {
                      REQUIRE(r.ok());
                      inv_job = r->id;
                    });
  REQUIRE(f.loop.runUntil([&] { return inv_job.has_value(); }));
  // Both queues number their jobs from 1: the same id, two different jobs.
  REQUIRE(*inv_job == order_job);
  REQUIRE(f.loop.runUntil(
      [&] { return f.pg.scalar("SELECT stock FROM variants WHERE sku = 'SKU-000001'") == "148"; },
      20s));
  CHECK(f.pg.scalar("SELECT string_agg(job_id, ',' ORDER BY job_id) FROM job_ledger") ==
        q.ledgerKeyOf(f, kInventoryQueue, *inv_job) + "," +
            q.ledgerKeyOf(f, kOrdersQueue, order_job));
  q.stop(f);
}

TEST_CASE("a real deadlock in order.process is transient: the job is retried and applied once",
          "[jobs][queue][postgres][redis][fault]") {
  ShopFixture f(2, 100);
  QueueShop q(f);
  int64_t order = f.placeOrder("deadlock@example.com", {{"SKU-000002", 3}});
  // Two connections of the test's own. `holder` keeps the order's row locked
  // to hold the handler between its first lock (its ledger row) and the
  // next (the order); `rival` takes the variant, then waits for the
  // handler's ledger row. Released, the handler waits for the variant: a
  // cycle that PostgreSQL breaks by aborting the handler's transaction
  // (40P01), since the rival waited first and checks only after 60 s.
  db::PoolOptions o;
  o.conninfo = f.pg.url();
  o.size = 2;
  db::Pool mine(f.loop.get(), o);
  mine.start();
  auto open = [&](std::vector<db::Statement> first) {
    db::TransactionPtr tx;
    std::optional<std::string> pid;
    mine.transaction([&](db::TransactionPtr t, std::optional<db::DbError> e) {
      REQUIRE_FALSE(e);
      tx = std::move(t);
      first.push_back(db::Statement{"SELECT pg_backend_pid()", {}});
      size_t last = first.size() - 1;
      tx->run(std::move(first), [&, last](db::Reply r) {
        REQUIRE(r.ok());
        pid = r[last].str(0, 0);
      });
    });
    REQUIRE(f.loop.runUntil([&] { return pid.has_value(); }));
    return std::make_pair(tx, *pid);
  };
  // The session that waits for a lock `pid` holds (empty: none yet).
  auto waiterOf = [&](const std::string& pid) {
    std::string waiter;
    f.loop.runUntil(
        [&] {
          waiter = f.pg.scalar(fmt::format(
              "SELECT coalesce(min(pid)::text, '') FROM pg_stat_activity"
              " WHERE {} = ANY(pg_blocking_pids(pid))",
              pid));
          return !waiter.empty();
        },
        20s);
    return waiter;
  };
  auto [holder, holder_pid] =
      open({db::stmt("SELECT id FROM orders WHERE id = $1 FOR UPDATE", order)});
  auto [rival, rival_pid] =
      open({db::Statement{"SET LOCAL deadlock_timeout = '60s'", {}},
            db::Statement{"UPDATE variants SET updated_at = now() WHERE sku = 'SKU-000002'", {}}});

  std::string job = q.enqueueOrder(f, order);
  // The handler holds its ledger row and waits for the order.
  std::string handler_pid = waiterOf(holder_pid);
  REQUIRE_FALSE(handler_pid.empty());
  bool rival_done = false;
  rival->run({db::stmt("INSERT INTO job_ledger (job_id, job_name) VALUES ($1, 'rival')",
                       q.ledgerKeyOf(f, kOrdersQueue, job))},
             [&](db::Reply r) {
               CHECK(r.ok());
               rival_done = true;
             });
  REQUIRE(waiterOf(handler_pid) == rival_pid);
  holder->rollback();
  // The handler's transaction is the victim; the rival's insert goes through.
  REQUIRE(f.loop.runUntil([&] { return rival_done; }, 20s));
  rival->rollback();

  // One failed attempt (the deadlock), then the retry through the queue.
  queue::Job done = q.waitForJob(f, job, queue::JobState::kCompleted);
  CHECK(done.attempt == 1);
  REQUIRE(done.errors.size() == 1);
  CHECK(done.errors[0].error.find("deadlock detected") != std::string::npos);
  CHECK(done.errors[0].error.find("SQLSTATE 40P01") != std::string::npos);
  CHECK(done.errors[0].error.find("permanent") == std::string::npos);
  CHECK(f.pg.scalar(fmt::format("SELECT status FROM orders WHERE id = {}", order)) == "confirmed");
  CHECK(f.pg.scalar("SELECT stock FROM variants WHERE sku = 'SKU-000002'") == "97");
  CHECK(f.pg.scalar("SELECT count(*) FROM job_ledger") == "1");
  CHECK(f.pg.scalar("SELECT count(*) FROM email_outbox") == "1");
  q.stop(f);
}

TEST_CASE("an inventory.adjust given a used job id after Redis lost its id counter is applied",
          "[jobs][queue][postgres][redis]") {
  ShopFixture f(2, 10);
  QueueShop q(f);
  auto adjust = [&](int delta) {
    std::optional<std::string> id;
    q.client->enqueue(kInventoryQueue,
                      {.name = kInventoryAdjust,
                       .payload = queue::payloadFromJson(
                           {{"adjustments", {{{"sku", "SKU-000001"}, {"delta", delta}}}}})},
                      [&](Result<queue::Enqueued> r) {
                        REQUIRE(r.ok());
                        id = r->id;
                      });
    REQUIRE(f.loop.runUntil([&] { return id.has_value(); }));
    return *id;
  };
  auto completedTotal = [&] {
    std::optional<int64_t> n;
    q.client->counts(kInventoryQueue,
                     [&](Result<queue::QueueCounts> c) { n = c ? c->completed_total : -1; });
    f.loop.runUntil([&] { return n.has_value(); });
    return n.value_or(-1);
  };
  std::string first = adjust(5);
  q.waitForJob(f, first, queue::JobState::kCompleted, kInventoryQueue);
  CHECK(f.pg.scalar("SELECT stock FROM variants WHERE sku = 'SKU-000001'") == "15");
  // The write that took the counter past `first` is lost, as a crash between
  // AOF fsyncs or a failover to a lagging replica loses it.
  q.redis.command({"HSET", "cq:{inventory}:seq", "job", std::to_string(std::stoll(first) - 1)});
  std::string second = adjust(7);
  REQUIRE(second == first);
  REQUIRE(f.loop.runUntil([&] { return completedTotal() == 2; }, 20s));
  CHECK(f.pg.scalar("SELECT stock FROM variants WHERE sku = 'SKU-000001'") == "22");
  CHECK(f.pg.scalar("SELECT count(*) FROM job_ledger WHERE job_name = 'inventory.adjust'") == "2");
  q.stop(f);
}

}  // namespace jobs_queue_integration_test
