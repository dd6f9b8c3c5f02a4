// The master SIGKILLed under load and started again on the same home: the
// ecosystem's `api` and `jobs` apps run under `clusterd start`, checkouts
// arrive over HTTP and inventory jobs wait in the queue. With the master
// gone its workers die too (the parent-death signal, docs/MASTER.md
// "Orphans"); `clusterd start` with the same home starts a new master and new
// workers. Every accepted job and order is accounted for, each applied once.
#include <signal.h>

#include <fmt/format.h>

#include <algorithm>
#include <thread>

#include "queue/client.h"
#include "tests/fault/shop_stack.h"
#include "tests/queue/loop_support.h"

namespace fault_master_kill_test {

using namespace clusterd;
using namespace clusterd::test;
using namespace clusterd::test::fault;
using namespace std::chrono_literals;

namespace {

bool alive(pid_t pid) {
  return pid > 0 && ::kill(pid, 0) == 0;
}

// The daemon of the stack's home, stopped (`clusterd kill`) on the way out
// whatever happened.
struct Master {
  ShopStack& st;
  ~Master() { runClusterd({"kill"}, {.env = st.env()}); }

  void start() {
    auto r = runClusterd({"start", st.ecosystem}, {.env = st.env(), .timeout = 60s});
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
  }
  pid_t pid() {
    REQUIRE(runClusterd({"ping"}, {.env = st.env()}).exit_code == 0);
    return std::stoi(readFile(st.home.file("daemon.pid")));
  }
  // The pids of the online workers.
  std::vector<pid_t> workers() {
    auto r = runClusterd({"status", "--json"}, {.env = st.env()});
    REQUIRE(r.exit_code == 0);
    std::vector<pid_t> out;
    for (auto& w : nlohmann::json::parse(r.out))
      if (w.value("state", "") == "online") out.push_back(w.value("pid", 0));
    return out;
  }
};

}  // namespace

TEST_CASE(
    "the master SIGKILLed under load and started again: every accepted job and order accounted for",
    "[fault][master]") {
  const int kOrders = scaled(900), kJobs = scaled(1200);
  ShopStack st;
  auto t0 = std::chrono::steady_clock::now();
  Master master{st};
  master.start();
  st.waitAccepting(st.api_port);
  REQUIRE(waitFor([&] { return master.workers().size() == 3; }, 30s));
  pid_t first_master = master.pid();
  std::vector<pid_t> first_workers = master.workers();

  std::set<std::string> accepted_jobs = enqueueInventoryJobs(st, kJobs);

  auto requests = checkoutRequests(st, kOrders);
  std::vector<HttpResponse> responses;
  std::thread load([&] { responses = httpRun(requests, 40); });
  bool killed = false;
  if (waitFor([&] { return std::stoi(st.pg.scalar("SELECT count(*) FROM orders")) >= kOrders / 4; },
              60s)) {
    REQUIRE(::kill(first_master, SIGKILL) == 0);
    killed = true;
  }
  // Its workers die with it (parent-death signal), in-flight jobs and all.
  bool workers_gone = waitFor(
      [&] {
        if (alive(first_master)) return false;
        for (pid_t p : first_workers)
          if (alive(p)) return false;
        return true;
      },
      20s);
  auto restarted_at = std::chrono::steady_clock::now();
  master.start();
  st.waitAccepting(st.api_port);
  double restart_s = secondsSince(restarted_at);
  load.join();
  REQUIRE(killed);
  CHECK(workers_gone);
  REQUIRE(waitFor([&] { return master.workers().size() == 3; }, 30s));
  CHECK(master.pid() != first_master);
  for (pid_t p : master.workers())
    CHECK(std::find(first_workers.begin(), first_workers.end(), p) == first_workers.end());

  int first_unaccepted = 0;
  for (auto& r : responses) first_unaccepted += (r.status != 202 && r.status != 200);
  int retried_requests = retryUnaccepted(st, requests, responses);
  auto accepted = acceptedOrders(requests, responses);

  auto [confirmed, rejected, orders, inventory] = settleAndAccount(st, accepted, responses, accepted_jobs);
  report("master-kill",
         {{"orders_accepted", std::to_string(accepted.size())},
          {"first_answer_not_accepted", std::to_string(first_unaccepted)},
          {"requests_retried", std::to_string(retried_requests)},
          {"confirmed", std::to_string(confirmed)},
          {"rejected", std::to_string(rejected)},
          {"order_jobs_completed", std::to_string(orders.completed.size())},
          {"order_jobs_dead", std::to_string(orders.dead.size())},
          {"order_jobs_stalled", std::to_string(orders.stats["stalled"])},
          {"order_duplicates_prevented", std::to_string(orders.duplicates_prevented)},
          {"inventory_accepted", std::to_string(accepted_jobs.size())},
          {"inventory_completed", std::to_string(inventory.completed.size())},
          {"inventory_dead", std::to_string(inventory.dead.size())},
          {"inventory_stalled", std::to_string(inventory.stats["stalled"])},
          {"inventory_duplicates_prevented", std::to_string(inventory.duplicates_prevented)},
          {"master_restart_to_api_accepting_s", fmt::format("{:.1f}", restart_s)},
          {"seconds", fmt::format("{:.1f}", secondsSince(t0))}});
}

}  // namespace fault_master_kill_test
