// A consumer SIGKILLed every 300 ms: two `clusterd worker` processes
// consuming orders, inventory and email, one of them killed (and replaced)
// every 300 ms for a bounded number of kills, while checkouts arrive through
// a shop API worker that stays up and inventory jobs wait in the queue. Every
// accepted job and order is accounted for, and each applies once.
#include <signal.h>

#include <fmt/format.h>

#include <atomic>
#include <thread>

#include "queue/client.h"
#include "tests/fault/shop_stack.h"
#include "tests/queue/loop_support.h"

namespace fault_consumer_kill_test {

using namespace clusterd;
using namespace clusterd::test;
using namespace clusterd::test::fault;
using namespace std::chrono_literals;

TEST_CASE(
    "a consumer SIGKILLed every 300 ms: every accepted job and order accounted for, each applied "
    "once",
    "[fault][consumer]") {
  const int kOrders = scaled(900), kJobs = scaled(1500), kKills = 16;
  ShopStack st;
  auto t0 = std::chrono::steady_clock::now();
  auto api = st.spawn("api");
  std::vector<std::unique_ptr<Child>> consumers;
  for (int i = 0; i < 2; ++i) consumers.push_back(st.spawn("jobs"));
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
  // Kill the two consumers in turn, one every 300 ms, each replaced at once.
  int kills = 0;
  for (; kills < kKills; ++kills) {
    std::this_thread::sleep_for(300ms);
    auto& victim = consumers[kills % consumers.size()];
    victim->signal(SIGKILL);
    victim->wait(5s);
    victim = st.spawn("jobs");
  }
  load.join();
  // The API worker was never killed: every checkout is answered.
  int unaccepted = retryUnaccepted(st, requests, responses);
  auto accepted = acceptedOrders(requests, responses);

  auto [confirmed, rejected, orders, inventory] = settleAndAccount(st, accepted, responses, accepted_jobs);
  CHECK(kills == kKills);
  report("consumer-kill",
         {{"consumer_kills", std::to_string(kills)},
          {"orders_accepted", std::to_string(accepted.size())},
          {"requests_retried", std::to_string(unaccepted)},
          {"confirmed", std::to_string(confirmed)},
          {"rejected", std::to_string(rejected)},
          {"order_jobs_completed", std::to_string(orders.completed.size())},
          {"order_jobs_dead", std::to_string(orders.dead.size())},
          {"order_jobs_stalled", std::to_string(orders.stats["stalled"])},
          {"order_duplicates_prevented", std::to_string(orders.duplicates_prevented)},
          {"inventory_accepted", std::to_string(accepted_jobs.size())},
          {"inventory_completed", std::to_string(inventory.completed.size())},
          {"inventory_dead", std::to_string(inventory.dead.size())},
          {"inventory_retried", std::to_string(inventory.stats["failed"])},
          {"inventory_stalled", std::to_string(inventory.stats["stalled"])},
          {"inventory_duplicates_prevented", std::to_string(inventory.duplicates_prevented)},
          {"seconds", fmt::format("{:.1f}", secondsSince(t0))}});
  api->signal(SIGTERM);
  for (auto& c : consumers) c->signal(SIGTERM);
  st.checkExitsCleanly(*api);
  // A consumer started just before the end may not have its SIGTERM
  // handler yet; what matters here is that it is gone.
  for (auto& c : consumers) c->wait(15s);
}

}  // namespace fault_consumer_kill_test
