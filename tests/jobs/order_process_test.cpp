// order.process against real postgres: confirmation with stock, outbox and
// ledger in one transaction; rejections; redelivery; no overselling under
// concurrency; a Postgres restart mid-run; orders sharing a transaction, and
// one bad order in a group failing alone.
#include <catch2/catch.hpp>

#include <algorithm>

#include "jobs/order_group.h"
#include "tests/jobs/shop_fixture.h"

namespace jobs_order_process_test {

using namespace clusterd;
using namespace clusterd::jobs;
using clusterd::test::ShopFixture;
using namespace std::chrono_literals;

TEST_CASE("order.process confirms an order, takes the stock and writes the email in one go",
          "[jobs][order][postgres]") {
  ShopFixture f;
  int64_t id = f.placeOrder("ada@example.com", {{"SKU-000001", 2}, {"SKU-000002", 1}, {"SKU-000001", 1}});
  auto r = f.runJob(processOrder, "job-1", kOrderProcess, {{"order_id", id}});
  CHECK(r.outcome == Outcome::kDone);
  CHECK(r.result["status"] == "confirmed");
  auto& pg = f.pg;
  CHECK(pg.scalar("SELECT stock FROM variants WHERE sku = 'SKU-000001'") == "97");
  CHECK(pg.scalar("SELECT stock FROM variants WHERE sku = 'SKU-000002'") == "99");
  CHECK(pg.scalar("SELECT status FROM orders WHERE id = " + std::to_string(id)) == "confirmed");
  CHECK(pg.scalar("SELECT count(*) FROM order_lines WHERE variant_id IS NOT NULL AND order_id = " +
                  std::to_string(id)) == "3");
  CHECK(pg.scalar("SELECT recipient FROM email_outbox WHERE order_id = " + std::to_string(id)) ==
        "ada@example.com");
  CHECK(pg.scalar("SELECT job_name FROM job_ledger WHERE job_id = 'job-1'") == "order.process");
  REQUIRE(f.enqueued.size() == 1);
  CHECK(f.enqueued[0].queue == "email");
  CHECK(f.enqueued[0].name == "email.batch");
  CHECK(f.invalidated == std::set<std::string>{"SKU-000001", "SKU-000002"});
}

TEST_CASE("order.process rejects insufficient stock and unknown skus and changes no stock",
          "[jobs][order][postgres]") {
  ShopFixture f(5, 3);
  int64_t big = f.placeOrder("bob@example.com", {{"SKU-000001", 1}, {"SKU-000002", 4}});
  auto r = f.runJob(processOrder, "job-a", kOrderProcess, {{"order_id", big}});
  CHECK(r.outcome == Outcome::kDone);
  CHECK(r.result["status"] == "rejected");
  CHECK(f.pg.scalar("SELECT reason FROM orders WHERE id = " + std::to_string(big)) ==
        "insufficient stock for SKU-000002: requested 4, available 3");
  int64_t unknown = f.placeOrder("bob@example.com", {{"SKU-999999", 1}});
  f.runJob(processOrder, "job-b", kOrderProcess, {{"order_id", unknown}});
  CHECK(f.pg.scalar("SELECT reason FROM orders WHERE id = " + std::to_string(unknown)) ==
        "unknown sku SKU-999999");
  CHECK(f.pg.scalar("SELECT sum(stock) FROM variants") == "15");
  CHECK(f.pg.scalar("SELECT count(*) FROM email_outbox") == "0");
  CHECK(f.enqueued.empty());
}

TEST_CASE("a redelivered order.process job changes nothing", "[jobs][order][postgres]") {
  ShopFixture f;
  int64_t id = f.placeOrder("cy@example.com", {{"SKU-000003", 5}});
  REQUIRE(f.runJob(processOrder, "job-7", kOrderProcess, {{"order_id", id}}).outcome ==
          Outcome::kDone);
  // The email.batch hand-off already happened, so the outbox row is pending:
  // a redelivery hands it over again but takes no stock and writes no email.
  auto again = f.runJob(processOrder, "job-7", kOrderProcess, {{"order_id", id}});
  CHECK(again.outcome == Outcome::kDone);
  CHECK(again.message == "already processed (job ledger)");
  CHECK(f.pg.scalar("SELECT stock FROM variants WHERE sku = 'SKU-000003'") == "95");
  CHECK(f.pg.scalar("SELECT count(*) FROM email_outbox") == "1");
  CHECK(f.pg.scalar("SELECT count(*) FROM job_ledger") == "1");
  // Once the email is sent, a redelivery does not even enqueue.
  f.pg.query("UPDATE email_outbox SET status = 'sent'");
  size_t before = f.enqueued.size();
  f.runJob(processOrder, "job-7", kOrderProcess, {{"order_id", id}});
  CHECK(f.enqueued.size() == before);
  // A second job for the same order (another id) is recorded and changes nothing.
  auto other = f.runJob(processOrder, "job-8", kOrderProcess, {{"order_id", id}});
  CHECK(other.message == "order already confirmed");
  CHECK(f.pg.scalar("SELECT stock FROM variants WHERE sku = 'SKU-000003'") == "95");
}

TEST_CASE("order.process fails a payload without an order id and a missing order",
          "[jobs][order][postgres]") {
  ShopFixture f(1, 1, 1);
  CHECK(f.runJob(processOrder, "j1", kOrderProcess, {{"id", 1}}).outcome == Outcome::kFail);
  auto r = f.runJob(processOrder, "j2", kOrderProcess, {{"order_id", 424242}});
  CHECK(r.outcome == Outcome::kFail);
  CHECK(r.message.find("order 424242 does not exist") != std::string::npos);
}

TEST_CASE("100 concurrent orders for 10 in stock confirm exactly 10 and reject 90",
          "[jobs][order][postgres]") {
  ShopFixture f(3, 10, 8);
  f.pg.query("UPDATE variants SET stock = 1000 WHERE sku <> 'SKU-000001'");
  std::vector<int64_t> ids;
  for (int i = 0; i < 100; ++i) {
    // Orders mix SKUs in different line orders, so lock ordering matters.
    std::vector<OrderLineRequest> lines = {{"SKU-000001", 1}, {"SKU-000002", 1}};
    if (i % 2) std::swap(lines[0], lines[1]);
    if (i % 3 == 0) lines.push_back({"SKU-000003", 1});
    ids.push_back(f.placeOrder(fmt::format("c{}@example.com", i), lines));
  }
  int done = 0, retried = 0;
  std::function<void(size_t)> run = [&](size_t i) {
    processOrder(f.services, Job{"job-" + std::to_string(i), kOrderProcess, {{"order_id", ids[i]}}},
                 [&, i](JobResult r) {
                   if (r.outcome == Outcome::kRetry) {
                     ++retried;  // a deadlock would show here
                     return run(i);
                   }
                   REQUIRE(r.outcome == Outcome::kDone);
                   ++done;
                 });
  };
  for (size_t i = 0; i < ids.size(); ++i) run(i);
  REQUIRE(f.loop.runUntil([&] { return done == 100; }, 60s));
  CHECK(retried == 0);
  CHECK(f.pg.scalar("SELECT count(*) FROM orders WHERE status = 'confirmed'") == "10");
  CHECK(f.pg.scalar("SELECT count(*) FROM orders WHERE status = 'rejected'") == "90");
  CHECK(f.pg.scalar("SELECT stock FROM variants WHERE sku = 'SKU-000001'") == "0");
  CHECK(f.pg.scalar("SELECT 1000 - stock FROM variants WHERE sku = 'SKU-000002'") == "10");
  CHECK(f.pg.scalar("SELECT count(*) FROM email_outbox") == "10");
}

TEST_CASE("a postgres restart mid-run delays order jobs but loses none",
          "[jobs][order][postgres][fault]") {
  ShopFixture f(2, 1000, 4);
  std::vector<int64_t> ids;
  for (int i = 0; i < 60; ++i) ids.push_back(f.placeOrder("d@example.com", {{"SKU-000001", 1}}));
  int done = 0, retries = 0;
  std::function<void(size_t)> run = [&](size_t i) {
    processOrder(f.services, Job{"r-" + std::to_string(i), kOrderProcess, {{"order_id", ids[i]}}},
                 [&, i](JobResult r) {
                   if (r.outcome == Outcome::kRetry) {
                     ++retries;
                     return f.after(100, [&run, i] { run(i); });
                   }
                   REQUIRE(r.outcome == Outcome::kDone);
                   ++done;
                 });
  };
  for (size_t i = 0; i < 30; ++i) run(i);
  f.pg.stop();
  for (size_t i = 30; i < ids.size(); ++i) run(i);
  f.loop.runFor(500ms);
  f.pg.start();
  REQUIRE(f.loop.runUntil([&] { return done == 60; }, 60s));
  CHECK(f.pg.scalar("SELECT count(*) FROM orders WHERE status = 'confirmed'") == "60");
  CHECK(f.pg.scalar("SELECT stock FROM variants WHERE sku = 'SKU-000001'") == "940");
  CHECK(f.pg.scalar("SELECT count(*) FROM email_outbox") == "60");
  CHECK(retries > 0);
}

namespace {

// Hands every job to processOrder in the same loop turn (as a reserved batch
// arrives) and waits for all the answers.
std::vector<JobResult> runTogether(ShopFixture& f, const std::vector<int64_t>& ids,
                                   const std::string& prefix) {
  std::vector<std::optional<JobResult>> out(ids.size());
  for (size_t i = 0; i < ids.size(); ++i)
    processOrder(f.services, Job{prefix + std::to_string(i), kOrderProcess, {{"order_id", ids[i]}}},
                 [&out, i](JobResult r) { out[i] = std::move(r); });
  REQUIRE(f.loop.runUntil([&] {
    return std::all_of(out.begin(), out.end(), [](auto& r) { return r.has_value(); });
  }));
  std::vector<JobResult> results;
  for (auto& r : out) results.push_back(std::move(*r));
  return results;
}

}  // namespace

TEST_CASE("order jobs that arrive together share one transaction", "[jobs][order][postgres]") {
  ShopFixture f(5, 100, 4);
  std::vector<int64_t> ids;
  for (int i = 0; i < 20; ++i)
    ids.push_back(f.placeOrder(fmt::format("g{}@example.com", i), {{fmt::format("SKU-{:06}", i % 5 + 1), 1}}));
  auto results = runTogether(f, ids, "grp-");
  for (auto& r : results) CHECK(r.message == "confirmed");
  // now() is the transaction's start: one value means one transaction.
  CHECK(f.pg.scalar("SELECT count(DISTINCT processed_at) FROM orders") == "1");
  CHECK(f.pg.scalar("SELECT count(*) FROM job_ledger") == "20");
  CHECK(f.pg.scalar("SELECT count(*) FROM email_outbox") == "20");
  CHECK(f.pg.scalar("SELECT sum(stock) FROM variants") == "480");
  CHECK(f.pg.scalar("SELECT count(*) FROM order_lines WHERE variant_id IS NULL") == "0");
  // One email.batch hand-off for the whole group.
  CHECK(f.enqueued.size() == 1);
  // The same batch delivered again changes nothing.
  auto again = runTogether(f, ids, "grp-");
  for (auto& r : again) CHECK(r.message == "already processed (job ledger)");
  CHECK(f.pg.scalar("SELECT sum(stock) FROM variants") == "480");
}

TEST_CASE("order jobs handed over within the group wait share one transaction",
          "[jobs][order][postgres]") {
  ShopFixture f(5, 100, 4);
  f.services.order_group_wait = 300ms;
  std::vector<int64_t> ids;
  for (int i = 0; i < 3; ++i)
    ids.push_back(f.placeOrder(fmt::format("w{}@example.com", i), {{"SKU-000001", 1}}));
  // One job now and one every 50 ms: each arrives in a loop turn of its own,
  // all before the first one's wait is over.
  int done = 0;
  for (size_t i = 0; i < ids.size(); ++i)
    f.after(50 * i, [&f, &done, &ids, i] {
      processOrder(f.services, Job{"w-" + std::to_string(i), kOrderProcess, {{"order_id", ids[i]}}},
                   [&done](JobResult r) {
                     CHECK(r.message == "confirmed");
                     ++done;
                   });
    });
  REQUIRE(f.loop.runUntil([&] { return done == 3; }, 10s));
  CHECK(f.pg.scalar("SELECT count(DISTINCT processed_at) FROM orders") == "1");
  CHECK(f.pg.scalar("SELECT stock FROM variants WHERE sku = 'SKU-000001'") == "97");
}

TEST_CASE("a full order group does not wait out the group wait", "[jobs][order][postgres]") {
  ShopFixture f(5, 100, 4);
  f.services.order_group_wait = 1h;
  std::vector<int64_t> ids;
  for (size_t i = 0; i < kMaxOrderGroup; ++i)
    ids.push_back(f.placeOrder(fmt::format("full{}@example.com", i), {{"SKU-000002", 1}}));
  // runTogether waits for the answers with the loop's default bound, far
  // shorter than the wait: only a group that goes when full gets them.
  auto results = runTogether(f, ids, "full-");
  for (auto& r : results) CHECK(r.message == "confirmed");
  CHECK(f.pg.scalar("SELECT count(DISTINCT processed_at) FROM orders") == "1");
}

TEST_CASE("the order group wait comes from the environment and is checked", "[jobs][order]") {
  struct CleanEnv {
    CleanEnv() { unsetenv("CLUSTERD_ORDER_GROUP_WAIT"); }
    ~CleanEnv() { unsetenv("CLUSTERD_ORDER_GROUP_WAIT"); }
  } clean;
  REQUIRE(orderGroupWaitFromEnv().ok());
  CHECK(*orderGroupWaitFromEnv() == kDefaultOrderGroupWait);
  setenv("CLUSTERD_ORDER_GROUP_WAIT", "0", 1);
  CHECK(*orderGroupWaitFromEnv() == 0ms);
  setenv("CLUSTERD_ORDER_GROUP_WAIT", "25ms", 1);
  CHECK(*orderGroupWaitFromEnv() == 25ms);
  for (const char* bad : {"soon", "2s", "-5ms"}) {
    setenv("CLUSTERD_ORDER_GROUP_WAIT", bad, 1);
    auto r = orderGroupWaitFromEnv();
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message ==
          fmt::format("CLUSTERD_ORDER_GROUP_WAIT={}: expected a duration from 0 to 1s, such as "
                      "10ms or 0",
                      bad));
  }
}

TEST_CASE("one order whose writes fail leaves the rest of its group committed",
          "[jobs][order][postgres]") {
  ShopFixture f(2, 2, 2);
  // Three orders for one unit each of SKU-000001, which has 2. The first one
  // has bad data: a confirmation email already in the outbox, so its insert
  // violates the one-confirmation-per-order constraint.
  std::vector<int64_t> ids;
  for (int i = 0; i < 3; ++i)
    ids.push_back(f.placeOrder(fmt::format("b{}@example.com", i), {{"SKU-000001", 1}}));
  f.pg.query(fmt::format("INSERT INTO email_outbox (order_id, recipient, template, status)"
                         " VALUES ({}, 'x@example.com', 'order_confirmed', 'sent')",
                         ids[0]));
  auto results = runTogether(f, ids, "bad-");
  CHECK(results[0].outcome == Outcome::kFail);
  CHECK(results[0].message.find("email_outbox_order_id_template_key") != std::string::npos);
  // Decided again without the failed order, both others get their unit.
  CHECK(results[1].message == "confirmed");
  CHECK(results[2].message == "confirmed");
  CHECK(f.pg.scalar("SELECT status FROM orders WHERE id = " + std::to_string(ids[0])) == "pending");
  CHECK(f.pg.scalar("SELECT count(*) FROM orders WHERE status = 'confirmed'") == "2");
  CHECK(f.pg.scalar("SELECT stock FROM variants WHERE sku = 'SKU-000001'") == "0");
  // The failed job left no ledger row: running it again is not a redelivery.
  CHECK(f.pg.scalar("SELECT count(*) FROM job_ledger WHERE job_id = 'bad-0'") == "0");
  CHECK(f.pg.scalar("SELECT count(*) FROM job_ledger") == "2");
  f.pg.query("DELETE FROM email_outbox WHERE recipient = 'x@example.com'");
  auto retry = f.runJob(processOrder, "bad-0", kOrderProcess, {{"order_id", ids[0]}});
  CHECK(retry.message == "rejected: insufficient stock for SKU-000001: requested 1, available 0");
}

TEST_CASE("an order that does not exist fails alone inside a group", "[jobs][order][postgres]") {
  ShopFixture f(2, 10, 2);
  int64_t a = f.placeOrder("m@example.com", {{"SKU-000001", 1}});
  auto results = runTogether(f, {a, 999'999}, "miss-");
  CHECK(results[0].message == "confirmed");
  CHECK(results[1].outcome == Outcome::kFail);
  CHECK(results[1].message == "data.order_id: order 999999 does not exist");
  CHECK(f.pg.scalar("SELECT string_agg(job_id, ',') FROM job_ledger") == "miss-0");
}

TEST_CASE("concurrent order groups and inventory adjustments on the same variants never deadlock",
          "[jobs][order][inventory][postgres]") {
  ShopFixture f(6, 1000, 8);
  std::vector<int64_t> ids;
  for (int i = 0; i < 96; ++i) {
    // Each order names three SKUs in a different order.
    std::vector<OrderLineRequest> lines;
    for (int k = 0; k < 3; ++k) lines.push_back({fmt::format("SKU-{:06}", (i * 5 + k * 7) % 6 + 1), 1});
    ids.push_back(f.placeOrder(fmt::format("d{}@example.com", i), lines));
  }
  int done = 0, retried = 0;
  for (size_t i = 0; i < ids.size(); ++i)
    processOrder(f.services, Job{"dl-" + std::to_string(i), kOrderProcess, {{"order_id", ids[i]}}},
                 [&](JobResult r) {
                   retried += r.outcome == Outcome::kRetry;
                   ++done;
                 });
  // Adjustments list the SKUs from the highest down; the handler still locks by id.
  for (int j = 0; j < 6; ++j) {
    nlohmann::json adj = nlohmann::json::array();
    for (int k = 6; k >= 1; --k) adj.push_back({{"sku", fmt::format("SKU-{:06}", k)}, {"delta", 10}});
    adjustInventory(f.services, Job{"adj-" + std::to_string(j), kInventoryAdjust, {{"adjustments", adj}}},
                    [&](JobResult r) {
                      retried += r.outcome == Outcome::kRetry;
                      ++done;
                    });
  }
  REQUIRE(f.loop.runUntil([&] { return done == 102; }, 60s));
  CHECK(retried == 0);  // a deadlock (40P01) would come back as a retry
  CHECK(f.pg.scalar("SELECT count(*) FROM orders WHERE status = 'confirmed'") == "96");
  // 6 SKUs x 1000, plus 6 adjustments x 6 SKUs x 10, minus 96 orders x 3 units.
  CHECK(f.pg.scalar("SELECT sum(stock) FROM variants") == std::to_string(6000 + 360 - 288));
}

}  // namespace jobs_order_process_test
