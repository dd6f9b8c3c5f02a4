// A job is acknowledged as soon as its transaction commits, so that commit
// must be on disk before the handler answers, whatever the server's default:
// the test servers run with synchronous_commit = off, as an operator tuning
// for throughput might. A PostgreSQL crash right after the answers must keep
// every effect and ledger row the answers reported.
#include <catch2/catch.hpp>

#include <signal.h>

#include "tests/jobs/shop_fixture.h"
#include "tests/support/process.h"

namespace jobs_durable_commit_test {

using namespace clusterd;
using namespace clusterd::jobs;
using clusterd::test::ShopFixture;
using namespace std::chrono_literals;

namespace {

// Crashes the server the way a killed backend does: every process is
// reinitialised and the WAL not yet written is gone. The WAL writer is
// stopped first, so that nothing but a commit's own flush reaches the disk.
struct WalWriterHeld {
  pid_t pid;
  explicit WalWriterHeld(test::PostgresServer& pg)
      : pid(std::stoi(
            pg.scalar("SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'"))) {
    REQUIRE(::kill(pid, SIGSTOP) == 0);
  }
  void crash() { REQUIRE(::kill(pid, SIGKILL) == 0); }
};

// True once the server answers again after the crash: a new WAL writer runs.
// "Answers" alone is not enough: right after the SIGKILL the postmaster may
// not have noticed yet, and a query that gets in first is cut off by the
// restart.
bool restarted(test::PostgresServer& pg, pid_t old_walwriter) {
  try {
    std::string pid = pg.scalar(
        "SELECT coalesce((SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'), 0)");
    return pid != "0" && pid != std::to_string(old_walwriter);
  } catch (const std::runtime_error&) {
    return false;
  }
}

}  // namespace

TEST_CASE(
    "a job's effects survive a postgres crash right after its answer, even with synchronous_commit "
    "off",
    "[jobs][postgres][durability]") {
  ShopFixture f(5, 10);
  REQUIRE(f.pg.scalar("SHOW synchronous_commit") == "off");
  int64_t order = f.placeOrder("ada@example.com", {{"SKU-000001", 2}});
  WalWriterHeld walwriter(f.pg);
  auto inv = f.runJob(adjustInventory, "inv-1", kInventoryAdjust,
                      {{"adjustments", {{{"sku", "SKU-000002"}, {"delta", 5}}}}});
  REQUIRE(inv.outcome == Outcome::kDone);
  auto ord = f.runJob(processOrder, "ord-1", kOrderProcess, {{"order_id", order}});
  REQUIRE(ord.outcome == Outcome::kDone);
  walwriter.crash();
  // The postmaster restarts its processes and replays the WAL.
  REQUIRE(test::waitFor([&] { return restarted(f.pg, walwriter.pid); }, 30s));
  CHECK(f.pg.scalar("SELECT count(*) FROM job_ledger") == "2");
  CHECK(f.pg.scalar("SELECT stock FROM variants WHERE sku = 'SKU-000002'") == "15");
  CHECK(f.pg.scalar("SELECT stock FROM variants WHERE sku = 'SKU-000001'") == "8");
  CHECK(f.pg.scalar(fmt::format("SELECT status FROM orders WHERE id = {}", order)) == "confirmed");
  CHECK(f.pg.scalar("SELECT count(*) FROM email_outbox") == "1");
}

}  // namespace jobs_durable_commit_test
