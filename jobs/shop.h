// jobs::Shop: everything the shop adds to one built-in worker process —
// the HTTP routes, the job handlers, the product cache, the mailer and the
// metrics — and install(), the one call `clusterd worker` makes to plug it in.
//
// Design: the worker owns the loop, the router, the Postgres pool and the
// queue consumer; the Shop only borrows them. Routes and handlers hold the
// Shop through a shared_ptr, so it lives exactly as long as the worker's
// router and consumer can still call it.
#pragma once

#include <uv.h>

#include <memory>
#include <optional>
#include <string>

#include "common/result.h"
#include "common/uv_handle.h"
#include "config/spec.h"
#include "db/pool.h"
#include "jobs/api.h"
#include "jobs/cache.h"
#include "jobs/job.h"
#include "jobs/ledger.h"
#include "jobs/mail.h"
#include "jobs/order_sweeper.h"
#include "queue/consumer.h"

namespace clusterd::queue {
class Client;
class Consumer;
struct Job;
}  // namespace clusterd::queue

namespace clusterd::worker {
class Router;
class Worker;
}  // namespace clusterd::worker

namespace clusterd::jobs {

struct ShopOptions {
  std::string home;       // $CLUSTERD_HOME: the default maildir is <home>/mail
  std::string redis_url;  // the product cache's Redis; empty = local layer only
  config::MailSection mail;
  CacheOptions cache;
  // job_ledger retention; unset = CLUSTERD_LEDGER_RETENTION or 7 days.
  std::optional<LedgerRetention> ledger;
  // The pending-order sweeper; unset = CLUSTERD_ORDER_SWEEP_* or the defaults.
  std::optional<SweepOptions> sweep;
};

struct ShopStats {
  uint64_t jobs_done = 0;
  uint64_t jobs_retried = 0;
  uint64_t jobs_failed = 0;
};

class Shop : public std::enable_shared_from_this<Shop> {
 public:
  // `api_pool` serves the HTTP routes, `job_pool` the handlers' transactions
  // (they may be the same pool).
  static Result<std::shared_ptr<Shop>> create(uv_loop_t* loop, db::Pool& api_pool,
                                              db::Pool& job_pool, EnqueueFn enqueue,
                                              const ShopOptions& options);

  void registerRoutes(worker::Router& router);
  // Registers order.process, inventory.adjust and email.batch.
  void registerHandlers(queue::Consumer& consumer);
  // Starts the sweeper that enqueues order.process again for orders left
  // pending (jobs/order_sweeper.h); for processes that consume `orders`.
  // `client` must outlive the Shop (install() has the Shop adopt it).
  void startOrderSweeper(queue::Client& client);
  // Starts pruning job_ledger rows past their retention (jobs/ledger.h); for
  // processes that run the shop's jobs, which write the ledger.
  void startLedgerPruner();
  // Prometheus text: cache hits by layer and hit ratio, orders, mail, db pool.
  void renderMetrics(std::string& out) const;

  Services& services() { return services_; }
  ProductCache& cache() { return *cache_; }
  // Keeps the queue client the enqueue function uses alive with the Shop.
  void adoptClient(std::unique_ptr<queue::Client> client);
  void adoptJobPool(std::unique_ptr<db::Pool> pool) { owned_pool_ = std::move(pool); }

 private:
  Shop();
 public:
  ~Shop();

 private:
  void run(void (*handler)(Services&, const Job&, JobDone), const std::string& name,
           const queue::Job& job, queue::Done done);

  uv_loop_t* loop_ = nullptr;
  db::Pool* pool_ = nullptr;      // the API's
  db::Pool* job_pool_ = nullptr;  // the handlers'
  std::unique_ptr<ProductCache> cache_;
  std::unique_ptr<Mailer> mailer_;
  std::unique_ptr<ShopApi> api_;
  std::unique_ptr<db::Pool> owned_pool_;  // destroyed after the client below
  std::unique_ptr<queue::Client> client_;
  std::unique_ptr<LedgerPruner> pruner_;  // uses the job pool: destroyed before it
  SweepOptions sweep_options_;
  std::unique_ptr<OrderSweeper> sweeper_;  // uses the job pool and the client: destroyed first
  Services services_;
  ShopStats stats_;
};

// An EnqueueFn on a queue::Client.
EnqueueFn clientEnqueue(queue::Client& client);

// Plugs the shop into a built-in worker: its routes on the router, its
// handlers on the consumer (when the worker consumes), its metrics. Needs
// the worker's Postgres pool; without one it does nothing and says so.
Result<void> install(worker::Worker& worker);

}  // namespace clusterd::jobs
