// PostgreSQL stopped in immediate mode (`pg_ctl stop -m immediate`: a crash,
// recovered from the WAL at the next start) in the middle of checkouts
// through the shop's HTTP API and of inventory jobs, then started again:
// every accepted order ends confirmed or rejected, the stock adds up, one
// email per confirmed order, and each inventory job's +1 applies once.
//
// The checkout commits without waiting for its WAL flush (docs/JOBS.md,
// "Durability of a checkout"), so the crash may take orders that were
// answered 202; their order.process jobs carry the order and recreate it.
// It may take the order id sequence's last advances too: the workers move
// the sequence on, once, before any checkout after the restart ("Order ids
// after a crash"), so every accepted checkout still has an order id of its
// own (acceptedOrders() requires it).
#include <signal.h>

#include <fmt/format.h>

#include <atomic>
#include <thread>

#include "queue/client.h"
#include "tests/fault/shop_stack.h"
#include "tests/queue/loop_support.h"

namespace fault_postgres_stop_test {

using namespace clusterd;
using namespace clusterd::test;
using namespace clusterd::test::fault;
using namespace std::chrono_literals;

TEST_CASE(
    "postgres stopped in immediate mode mid-checkout: every accepted order decided once, stock "
    "adds up",
    "[fault][postgres]") {
  const int kOrders = scaled(900), kJobs = scaled(600);
  ShopStack st;
  auto t0 = std::chrono::steady_clock::now();
  auto api = st.spawn("api");
  std::vector<std::unique_ptr<Child>> workers;
  for (int i = 0; i < 2; ++i) workers.push_back(st.spawn("jobs"));
  st.waitAccepting(st.api_port);
  st.waitAccepting(st.jobs_port);

  std::set<std::string> accepted_jobs = enqueueInventoryJobs(st, kJobs);

  auto requests = checkoutRequests(st, kOrders);
  std::vector<HttpResponse> responses;
  std::atomic<bool> loading{true};
  std::thread load([&] {
    responses = httpRun(requests, 40);
    loading = false;
  });
  // The crash comes once a quarter of the orders are in, while checkouts,
  // order.process groups and inventory jobs are all running.
  bool crashed = false;
  if (waitFor([&] { return std::stoi(st.pg.scalar("SELECT count(*) FROM orders")) >= kOrders / 4; },
              60s)) {
    st.pg.stopImmediate();
    crashed = true;
    std::this_thread::sleep_for(1s);
    st.pg.start();
  }
  load.join();
  REQUIRE(crashed);
  int first_unaccepted = 0;
  for (auto& r : responses) first_unaccepted += (r.status != 202 && r.status != 200);
  int retried_requests = retryUnaccepted(st, requests, responses);
  auto accepted = acceptedOrders(requests, responses);

  auto [confirmed, rejected, orders, inventory] = settleAndAccount(st, accepted, responses, accepted_jobs);
  // The checkouts after the crash got ids past the gap it left
  // (jobs::kMaxLostOrderIds, 100,000), and the three workers that checked
  // their sessions moved the sequence once between them.
  constexpr int64_t kGap = 100'000;
  int64_t after_gap = 0;
  for (auto& [id, key] : accepted) after_gap += id > kGap;
  CHECK(after_gap > 0);
  CHECK(std::stoll(st.pg.scalar("SELECT last_value FROM orders_id_seq")) < 2 * kGap);
  int64_t recreated = std::stoll(
      st.redis.command({"EVAL",
                        "local n = 0 for _, v in ipairs(redis.call('HVALS', KEYS[1])) do"
                        " if string.find(v, 'recreated', 1, true) then n = n + 1 end end return n",
                        "1", "cq:{orders}:results"}));
  report("postgres-immediate-stop",
         {{"orders_accepted", std::to_string(accepted.size())},
          {"first_answer_not_accepted", std::to_string(first_unaccepted)},
          {"requests_retried", std::to_string(retried_requests)},
          {"confirmed", std::to_string(confirmed)},
          {"rejected", std::to_string(rejected)},
          {"orders_recreated", std::to_string(recreated)},
          {"orders_after_id_gap", std::to_string(after_gap)},
          {"order_jobs_completed", std::to_string(orders.completed.size())},
          {"order_jobs_dead", std::to_string(orders.dead.size())},
          {"order_jobs_retried", std::to_string(orders.stats["failed"])},
          {"order_duplicates_prevented", std::to_string(orders.duplicates_prevented)},
          {"inventory_accepted", std::to_string(accepted_jobs.size())},
          {"inventory_completed", std::to_string(inventory.completed.size())},
          {"inventory_dead", std::to_string(inventory.dead.size())},
          {"inventory_retried", std::to_string(inventory.stats["failed"])},
          {"inventory_duplicates_prevented", std::to_string(inventory.duplicates_prevented)},
          {"seconds", fmt::format("{:.1f}", secondsSince(t0))}});
  api->signal(SIGTERM);
  for (auto& w : workers) w->signal(SIGTERM);
  st.checkExitsCleanly(*api);
  for (auto& w : workers) st.checkExitsCleanly(*w);
}

}  // namespace fault_postgres_stop_test
