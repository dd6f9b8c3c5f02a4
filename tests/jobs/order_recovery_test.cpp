// order.process when a crash lost the pending order row but not its job: the
// checkout's insert commits without waiting for a WAL flush, so an OS crash
// can lose the row (and roll the order id sequence back) while the job lives
// on in Redis. The job carries the order: it recreates the row and processes
// it once, steps aside when the client placed the order again under its
// idempotency key, and fails with the reason when a later order took its id
// (the defence behind the checkout pool's order id guard, which keeps that
// from happening after a restart: tests/jobs/order_ids_test.cpp). The crash
// is simulated by deleting the row and moving the sequence back, on a pool
// without the guard.
#include <catch2/catch.hpp>

#include <algorithm>
#include <optional>
#include <vector>

#include "jobs/store.h"
#include "tests/jobs/shop_fixture.h"

namespace jobs_order_recovery_test {

using namespace clusterd;
using namespace clusterd::jobs;
using clusterd::test::ShopFixture;

namespace {

// What an OS crash does to an order committed without a WAL flush: the row
// and its lines are gone, and the id sequence hands out its id again.
void loseOrder(ShopFixture& f, int64_t id, bool rewind_sequence) {
  f.pg.query(fmt::format("DELETE FROM orders WHERE id = {}", id));
  if (rewind_sequence) f.pg.query(fmt::format("SELECT setval('orders_id_seq', {}, false)", id));
}

}  // namespace

TEST_CASE("an order whose pending row was lost is recreated from its job and processed once",
          "[jobs][order][postgres]") {
  ShopFixture f;
  OrderRequest req{"lost@example.com", {{"SKU-000001", 2}, {"SKU-000002", 1}}, "lost-1"};
  PlacedOrder placed = f.place(req);
  std::string id = std::to_string(placed.order_id);
  std::string created = f.pg.scalar("SELECT created_at FROM orders WHERE id = " + id);
  loseOrder(f, placed.order_id, true);
  REQUIRE(f.pg.scalar("SELECT count(*) FROM orders") == "0");

  auto r = f.runJob(processOrder, "job-1", kOrderProcess, orderJobPayload(req, placed));
  CHECK(r.outcome == Outcome::kDone);
  CHECK(r.result["status"] == "confirmed");
  CHECK(r.result["recreated"] == true);
  CHECK(r.message.find("recreated from the job") != std::string::npos);
  CHECK(f.pg.scalar("SELECT customer || ' ' || idempotency_key || ' ' || status FROM orders"
                    " WHERE id = " + id) == "lost@example.com lost-1 confirmed");
  CHECK(f.pg.scalar("SELECT created_at FROM orders WHERE id = " + id) == created);
  CHECK(f.pg.scalar("SELECT string_agg(sku || 'x' || qty, ',' ORDER BY line_no) FROM order_lines"
                    " WHERE order_id = " + id) == "SKU-000001x2,SKU-000002x1");
  CHECK(f.pg.scalar("SELECT stock FROM variants WHERE sku = 'SKU-000001'") == "98");
  CHECK(f.pg.scalar("SELECT stock FROM variants WHERE sku = 'SKU-000002'") == "99");
  CHECK(f.pg.scalar("SELECT count(*) FROM email_outbox WHERE order_id = " + id) == "1");

  // The sequence moved past the recreated id: the next checkout gets a new one.
  CHECK(f.placeOrder("next@example.com", {{"SKU-000003", 1}}) > placed.order_id);
  // A redelivery of the job changes nothing.
  auto again = f.runJob(processOrder, "job-1", kOrderProcess, orderJobPayload(req, placed));
  CHECK(again.message == "already processed (job ledger)");
  CHECK(f.pg.scalar("SELECT stock FROM variants WHERE sku = 'SKU-000001'") == "98");
}

TEST_CASE("a lost order in a group with present ones is recreated and every order processed once",
          "[jobs][order][postgres]") {
  ShopFixture f;
  std::vector<OrderRequest> reqs;
  std::vector<PlacedOrder> placed;
  for (int i = 0; i < 4; ++i) {
    reqs.push_back(
        {fmt::format("mix{}@example.com", i), {{fmt::format("SKU-{:06}", i + 1), 1}}, ""});
    placed.push_back(f.place(reqs.back()));
  }
  loseOrder(f, placed[2].order_id, false);
  // Handed over in one loop turn, the four jobs form one group; the missing
  // row makes the group run again with the recovery statements.
  std::vector<std::optional<JobResult>> out(placed.size());
  for (size_t i = 0; i < placed.size(); ++i)
    processOrder(f.services,
                 Job{fmt::format("mix-{}", i), kOrderProcess, orderJobPayload(reqs[i], placed[i])},
                 [&out, i](JobResult r) { out[i] = std::move(r); });
  REQUIRE(f.loop.runUntil(
      [&] { return std::all_of(out.begin(), out.end(), [](auto& r) { return r.has_value(); }); }));
  for (size_t i = 0; i < out.size(); ++i) {
    CHECK(out[i]->result["status"] == "confirmed");
    CHECK(out[i]->result.contains("recreated") == (i == 2));
  }
  CHECK(f.pg.scalar("SELECT count(*) FROM orders WHERE status = 'confirmed'") == "4");
  CHECK(f.pg.scalar("SELECT count(DISTINCT processed_at) FROM orders") == "1");
  CHECK(f.pg.scalar("SELECT count(*) FROM job_ledger") == "4");
  CHECK(f.pg.scalar("SELECT count(*) FROM email_outbox") == "4");
  CHECK(f.pg.scalar("SELECT sum(stock) FROM variants") == "1996");
}

TEST_CASE("a lost order whose id a later checkout took fails its job and leaves that order alone",
          "[jobs][order][postgres]") {
  ShopFixture f;
  OrderRequest first{"first@example.com", {{"SKU-000001", 5}}, ""};
  PlacedOrder a = f.place(first);
  loseOrder(f, a.order_id, true);
  OrderRequest second{"second@example.com", {{"SKU-000002", 3}}, ""};
  PlacedOrder b = f.place(second);
  REQUIRE(b.order_id == a.order_id);
  // Each has its own job: the unique keys differ although the ids match.
  CHECK(orderJobUniqueKey(a) != orderJobUniqueKey(b));

  auto r = f.runJob(processOrder, "job-a", kOrderProcess, orderJobPayload(first, a));
  CHECK(r.outcome == Outcome::kFail);
  CHECK(r.message.find(fmt::format("data.created_us: order {} of this job", a.order_id)) !=
        std::string::npos);
  CHECK(r.message.find("its id now names a later order") != std::string::npos);
  std::string id = std::to_string(b.order_id);
  CHECK(f.pg.scalar("SELECT customer || ' ' || status FROM orders WHERE id = " + id) ==
        "second@example.com pending");
  CHECK(f.pg.scalar("SELECT count(*) FROM job_ledger") == "0");
  CHECK(f.pg.scalar("SELECT sum(stock) FROM variants") == "2000");

  auto rb = f.runJob(processOrder, "job-b", kOrderProcess, orderJobPayload(second, b));
  CHECK(rb.result["status"] == "confirmed");
  CHECK(f.pg.scalar("SELECT stock FROM variants WHERE sku = 'SKU-000001'") == "100");
  CHECK(f.pg.scalar("SELECT stock FROM variants WHERE sku = 'SKU-000002'") == "97");
}

TEST_CASE("a lost order placed again under its idempotency key is processed once, by the new job",
          "[jobs][order][postgres]") {
  ShopFixture f;
  OrderRequest req{"again@example.com", {{"SKU-000004", 4}}, "checkout-77"};
  PlacedOrder lost = f.place(req);
  loseOrder(f, lost.order_id, false);
  // The client retried after the crash: the key is free again, a new order.
  PlacedOrder retried = f.place(req);
  REQUIRE(retried.created);
  REQUIRE(retried.order_id != lost.order_id);

  auto r = f.runJob(processOrder, "job-old", kOrderProcess, orderJobPayload(req, lost));
  CHECK(r.outcome == Outcome::kDone);
  CHECK(r.result["status"] == "superseded");
  CHECK(r.result["order_id"] == retried.order_id);
  CHECK(f.pg.scalar("SELECT count(*) FROM orders") == "1");
  auto rn = f.runJob(processOrder, "job-new", kOrderProcess, orderJobPayload(req, retried));
  CHECK(rn.result["status"] == "confirmed");
  CHECK(f.pg.scalar("SELECT stock FROM variants WHERE sku = 'SKU-000004'") == "96");
  CHECK(f.pg.scalar("SELECT count(*) FROM email_outbox") == "1");
}

TEST_CASE(
    "a job naming an order id the shop never handed out fails and leaves the id sequence alone",
    "[jobs][order][postgres]") {
  ShopFixture f;
  int64_t real = f.placeOrder("real@example.com", {{"SKU-000001", 1}});
  std::string seq = f.pg.scalar("SELECT last_value FROM orders_id_seq");
  // A forged job: an id near 2^63, carrying an order as a real job would.
  OrderRequest req{"forged@example.com", {{"SKU-000001", 1}}, "forged-1"};
  PlacedOrder forged{INT64_MAX - 10, true, "pending", 1'700'000'000'000'000};
  auto r = f.runJob(processOrder, "job-forged", kOrderProcess, orderJobPayload(req, forged));
  CHECK(r.outcome == Outcome::kFail);
  CHECK(r.message.find("does not exist") != std::string::npos);
  CHECK(f.pg.scalar("SELECT last_value FROM orders_id_seq") == seq);
  CHECK(f.pg.scalar("SELECT count(*) FROM orders") == "1");
  // Checkouts go on with the next ids.
  CHECK(f.placeOrder("next@example.com", {{"SKU-000001", 1}}) == real + 1);
}

TEST_CASE("order.process names the field of a carried order it cannot use",
          "[jobs][order][postgres]") {
  ShopFixture f(1, 1, 1);
  auto bad_qty = f.runJob(processOrder, "j1", kOrderProcess,
                          {{"order_id", 1},
                           {"created_us", 1},
                           {"customer", "q@example.com"},
                           {"lines", {{{"sku", "SKU-000001"}, {"qty", 0}}}}});
  CHECK(bad_qty.outcome == Outcome::kFail);
  CHECK(bad_qty.message.rfind("data.lines[0].qty: ", 0) == 0);
  auto no_time = f.runJob(processOrder, "j2", kOrderProcess,
                          {{"order_id", 1},
                           {"customer", "q@example.com"},
                           {"lines", {{{"sku", "SKU-000001"}, {"qty", 1}}}}});
  CHECK(no_time.outcome == Outcome::kFail);
  CHECK(no_time.message.rfind("data.created_us: ", 0) == 0);
  auto bad_time = f.runJob(processOrder, "j3", kOrderProcess,
                           {{"order_id", 1}, {"created_us", "yesterday"}});
  CHECK(bad_time.message.rfind("data.created_us: ", 0) == 0);
}

}  // namespace jobs_order_recovery_test
