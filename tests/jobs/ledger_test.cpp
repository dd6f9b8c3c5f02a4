// job_ledger retention: old rows go in small batches, recent ones stay, and a
// retention too short to cover redeliveries is refused.
#include <catch2/catch.hpp>

#include <cstdlib>

#include "jobs/ledger.h"
#include "tests/jobs/shop_fixture.h"

namespace jobs_ledger_test {

using namespace clusterd;
using namespace clusterd::jobs;
using clusterd::test::ShopFixture;
using namespace std::chrono_literals;

namespace {

Result<int64_t> prune(ShopFixture& f, LedgerPruner& p) {
  std::optional<Result<int64_t>> out;
  p.pruneOnce([&](Result<int64_t> r) { out = std::move(r); });
  REQUIRE(f.loop.runUntil([&] { return out.has_value(); }));
  return std::move(*out);
}

}  // namespace

TEST_CASE("the ledger pruner deletes rows past the retention in batches and keeps the rest",
          "[jobs][ledger][postgres]") {
  ShopFixture f(1, 1, 2);
  f.pg.query(
      "INSERT INTO job_ledger (job_id, job_name, processed_at)"
      " SELECT 'old-' || g, 'order.process', now() - interval '8 days' - g * interval '1 s'"
      " FROM generate_series(1, 25) g");
  f.pg.query(
      "INSERT INTO job_ledger (job_id, job_name, processed_at)"
      " SELECT 'new-' || g, 'order.process', now() - interval '6 days'"
      " FROM generate_series(1, 5) g");
  LedgerPruner p(f.loop.get(), *f.pool, LedgerRetention{.age = 7 * 24h, .batch = 10});
  auto first = prune(f, p);
  REQUIRE(first.ok());
  CHECK(*first == 10);
  // The oldest rows go first.
  CHECK(f.pg.scalar("SELECT count(*) FROM job_ledger WHERE job_id IN ('old-25', 'old-16')") == "0");
  CHECK(f.pg.scalar("SELECT count(*) FROM job_ledger WHERE job_id = 'old-1'") == "1");
  CHECK(*prune(f, p) == 10);
  CHECK(*prune(f, p) == 5);
  CHECK(*prune(f, p) == 0);
  CHECK(p.pruned() == 25);
  CHECK(f.pg.scalar("SELECT count(*) FROM job_ledger") == "5");
  CHECK(f.pg.scalar("SELECT count(*) FROM job_ledger WHERE job_id LIKE 'new-%'") == "5");
}

TEST_CASE("the ledger pruner runs on its timer until a batch comes back short",
          "[jobs][ledger][postgres]") {
  ShopFixture f(1, 1, 2);
  f.pg.query(
      "INSERT INTO job_ledger (job_id, job_name, processed_at)"
      " SELECT 'old-' || g, 'inventory.adjust', now() - interval '2 hours'"
      " FROM generate_series(1, 35) g");
  f.pg.query("INSERT INTO job_ledger (job_id, job_name) VALUES ('fresh', 'inventory.adjust')");
  LedgerPruner p(f.loop.get(), *f.pool, LedgerRetention{.age = 1h, .batch = 10, .interval = 50ms});
  p.start();
  REQUIRE(f.loop.runUntil([&] { return p.pruned() == 35; }, 10s));
  CHECK(f.pg.scalar("SELECT job_id FROM job_ledger") == "fresh");
}

TEST_CASE("a redelivered job inside the retention still finds its ledger row",
          "[jobs][ledger][postgres]") {
  ShopFixture f(2, 10, 2);
  nlohmann::json data = {{"adjustments", {{{"sku", "SKU-000001"}, {"delta", 5}}}}};
  REQUIRE(f.runJob(adjustInventory, "inv-keep", kInventoryAdjust, data).outcome == Outcome::kDone);
  LedgerPruner p(f.loop.get(), *f.pool, LedgerRetention{.age = 1h, .batch = 10});
  CHECK(*prune(f, p) == 0);
  CHECK(f.runJob(adjustInventory, "inv-keep", kInventoryAdjust, data).message ==
        "already processed (job ledger)");
  CHECK(f.pg.scalar("SELECT stock FROM variants WHERE sku = 'SKU-000001'") == "15");
}

TEST_CASE("the ledger retention comes from CLUSTERD_LEDGER_RETENTION and has a floor",
          "[jobs][ledger]") {
  unsetenv("CLUSTERD_LEDGER_RETENTION");
  CHECK(ledgerRetentionFromEnv()->age == std::chrono::milliseconds(kDefaultLedgerRetention));
  setenv("CLUSTERD_LEDGER_RETENTION", "2d", 1);
  CHECK(ledgerRetentionFromEnv()->age == 48h);
  setenv("CLUSTERD_LEDGER_RETENTION", "10m", 1);
  auto low = ledgerRetentionFromEnv();
  REQUIRE_FALSE(low.ok());
  CHECK(low.error().message.find("at least 1h") != std::string::npos);
  setenv("CLUSTERD_LEDGER_RETENTION", "soon", 1);
  CHECK_FALSE(ledgerRetentionFromEnv().ok());
  unsetenv("CLUSTERD_LEDGER_RETENTION");
}

}  // namespace jobs_ledger_test
