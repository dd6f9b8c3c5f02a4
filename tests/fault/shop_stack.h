// The stack the fault tests break, and the accounting every one of them ends
// with: a real redis-server and PostgreSQL with the shop's schema and
// catalogue, an ecosystem file naming both (apps `api`: the shop's HTTP API,
// and `jobs`: consumers of orders, inventory and email), the real `clusterd`
// workers started from it, checkout and inventory load, and the checks that
// every accepted job and order reached a final state with its effects applied
// exactly once.
//
// Design: the accounting reads Redis and PostgreSQL directly, never the
// workers' counters, because the workers are what the tests kill. Each
// inventory job adds 1 to one SKU of the upper half of the catalogue, and
// orders take from the lower half only, so that the stock of each half
// answers for one kind of work alone.
#pragma once

#include <catch2/catch.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "tests/jobs/http_client.h"
#include "tests/support/process.h"
#include "tests/support/servers.h"

namespace clusterd::test::fault {

// Under the sanitizers everything runs several times slower: the loads are
// smaller there, the assertions the same.
#ifdef CLUSTERD_FAULT_SANITIZED
inline constexpr int kLoadDivisor = 3;
#else
inline constexpr int kLoadDivisor = 1;
#endif
inline int scaled(int n) {
  return n / kLoadDivisor;
}

class ShopStack {
 public:
  // `products` SKUs with `stock` each: orders use SKUs 1..products/2,
  // inventory jobs the rest.
  explicit ShopStack(RedisServer::Options redis_options = {}, int products = 20, int stock = 150);

  RedisServer redis;
  PostgresServer pg;
  TempDir home{"clusterd-fault"};
  const int products;
  const int stock;
  const int api_port = reservedTcpPort();
  const int jobs_port = reservedTcpPort();
  std::string ecosystem;  // <home>/fault.yaml

  // A standalone `clusterd worker --ecosystem <file> --app <app>`, its
  // output in <home>/<app>-<n>.log.
  std::unique_ptr<Child> spawn(const std::string& app);
  // Checks that a spawned worker, sent SIGTERM, drains and exits 0 within
  // 15 s; otherwise the failure shows the end of the worker's output.
  void checkExitsCleanly(Child& worker) const;
  std::string apiUrl(const std::string& path) const;
  std::map<std::string, std::string> env() const;  // CLUSTERD_HOME for the CLI and the master
  // Waits (bounded) until a worker accepts on `port` (workers accept only
  // once their Redis link is up).
  void waitAccepting(int port) const;

  std::string orderSku(int i) const;      // SKU-0000nn of the lower half
  std::string inventorySku(int i) const;  // SKU-0000nn of the upper half

 private:
  int spawned_ = 0;
  std::map<pid_t, std::string> logs_;  // spawned worker -> its output file
};

// ---- Load ----

// `count` checkouts of one or two lines of the lower half, each with its own
// idempotency key, as HTTP requests to the api app.
std::vector<HttpRequest> checkoutRequests(const ShopStack& st, int count);

// Sends every request not yet answered 200 or 202 again with the same body
// (and so the same idempotency key), as a client should, up to `rounds`
// rounds; returns how many requests needed a retry.
int retryUnaccepted(const ShopStack& st, const std::vector<HttpRequest>& requests,
                    std::vector<HttpResponse>& responses, int rounds = 10);

// The payload of inventory job `i`: +1 on one SKU of the upper half.
std::string inventoryPayload(const ShopStack& st, int i);
// Enqueues `count` inventory.adjust jobs (12 attempts, 100 ms backoff) in
// one bulk call; the ids Redis accepted.
std::set<std::string> enqueueInventoryJobs(const ShopStack& st, int count);

// ---- Accounting ----

// A queue read straight from its Redis keys after a drain.
struct QueueAccount {
  std::set<std::string> completed, dead, active, waiting;  // waiting: wait, prio and delayed
  int64_t leases = 0;
  std::map<std::string, int64_t> stats;  // enqueued, completed, failed, dead, stalled
  // Completed jobs whose effects a previous delivery had already committed:
  // the ledger (or the order's state) stopped them from applying again.
  int64_t duplicates_prevented = 0;
  std::map<std::string, std::string> dead_reasons;
};

QueueAccount accountQueue(ShopStack& st, const std::string& queue);

// Waits (bounded) until no job of `queue` is waiting, delayed or active.
bool waitQueueDrained(ShopStack& st, const std::string& queue, std::chrono::seconds limit);

// Every accepted job completed or dead with a reason; nothing waiting,
// active or leased.
void checkJobsAccounted(const QueueAccount& a, const std::set<std::string>& accepted);

// The inventory jobs' effects: each completed job's ledger row exists, and
// the upper half's stock grew by exactly the number of ledger rows.
void checkInventoryExactlyOnce(ShopStack& st, const QueueAccount& a);

// The orders: each accepted one (order id -> idempotency key) confirmed or
// rejected; none pending; the lower half's stock is the initial stock minus
// the confirmed quantities, per SKU; one outbox row and one maildir file per
// confirmed order. Returns {confirmed, rejected}.
std::pair<int64_t, int64_t> checkOrdersAccounted(ShopStack& st,
                                                 const std::map<int64_t, std::string>& accepted);

// Order id -> idempotency key of every request answered 200 or 202;
// REQUIREs that each was.
std::map<int64_t, std::string> acceptedOrders(const std::vector<HttpRequest>& requests,
                                              const std::vector<HttpResponse>& responses);

// The order.process job ids of the accepted checkouts' answers.
std::set<std::string> acceptedOrderJobs(const std::vector<HttpResponse>& responses);

// Waits (bounded) until no order is pending and every email left.
bool waitOrdersSettled(ShopStack& st, std::chrono::seconds limit);

// What every shop fault test checks once the fault is over: waits (bounded)
// for the orders to settle and the queues to drain, then checks that every
// accepted order was decided once, every accepted order.process and
// inventory job reached a final state, and each inventory job applied once.
struct Settled {
  int64_t confirmed = 0;
  int64_t rejected = 0;
  QueueAccount orders;
  QueueAccount inventory;
};
Settled settleAndAccount(ShopStack& st, const std::map<int64_t, std::string>& accepted,
                         const std::vector<HttpResponse>& responses,
                         const std::set<std::string>& accepted_inventory_jobs);

// One line of numbers for the CTest log: "fault <name>: k=v k=v …".
void report(const std::string& name,
            const std::vector<std::pair<std::string, std::string>>& numbers);

double secondsSince(std::chrono::steady_clock::time_point t0);

}  // namespace clusterd::test::fault
