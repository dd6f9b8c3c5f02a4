// jobs::install (see jobs/shop.h) and Shop::registerRoutes: the only part of
// the jobs module that needs the worker module.
#include <algorithm>
#include <cstdlib>

#include "common/log.h"
#include "db/pool.h"
#include "jobs/shop.h"
#include "queue/client.h"
#include "queue/consumer.h"
#include "worker/router.h"
#include "worker/worker.h"

namespace clusterd::jobs {
namespace {

std::string clusterdHome() {
  if (const char* h = std::getenv("CLUSTERD_HOME"); h && *h) return h;
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.clusterd";
  return "/var/lib/clusterd";
}

}  // namespace

void Shop::registerRoutes(worker::Router& router) { api_->registerRoutes(router); }

Result<void> install(worker::Worker& w) {
  const worker::WorkerOptions& o = w.options();
  if (!w.db() || o.redis_url.empty()) {
    log::info("jobs", "the shop API and jobs need both PostgreSQL and Redis; {} is not configured",
              w.db() ? "Redis" : "PostgreSQL");
    return success();
  }
  auto client = queue::Client::create(
      w.loop(), {.redis_url = o.redis_url, .client_name = "clusterd-shop", .defaults = o.queue.queues});
  if (!client) return client.error();
  ShopOptions so;
  so.home = clusterdHome();
  so.redis_url = o.redis_url;
  so.mail = o.mail;
  // Jobs hold a connection for a whole transaction; the API's short
  // statements must not queue behind them, so jobs get their own pool.
  // It is at least postgres.pool_size, and grows with the shop queues'
  // concurrency (up to 16) so that concurrent jobs mostly find a connection
  // and their commits share WAL flushes (group commit).
  int shop_concurrency = 0;
  for (const auto& [name, concurrency] : o.spec.queues)
    if (name == kOrdersQueue || name == kInventoryQueue || name == kEmailQueue)
      shop_concurrency += concurrency;
  db::PoolOptions jpo = w.db()->options();
  jpo.size = std::max(jpo.size, std::min(shop_concurrency, 16));
  auto job_pool = std::make_unique<db::Pool>(w.loop(), jpo);
  job_pool->start();
  auto shop = Shop::create(w.loop(), *w.db(), *job_pool, clientEnqueue(**client), so);
  if (!shop) return shop.error();
  queue::Client& shop_client = **client;
  (*shop)->adoptClient(std::move(*client));
  (*shop)->adoptJobPool(std::move(job_pool));
  (*shop)->registerRoutes(w.router());
  std::shared_ptr<Shop> keep = *shop;
  w.metrics().addSource([keep](std::string& out) { keep->renderMetrics(out); });

  // The shop's jobs run on the worker's one consumer, alongside the
  // built-in handlers, so the worker's drain on SIGTERM covers them too.
  // A worker that consumes none of the shop's queues only serves the API.
  if (queue::Consumer* consumer = w.consumer()) {
    keep->registerHandlers(*consumer);
    // The ledger is pruned where it is written: by the shop's job runners,
    // not by processes that only serve the API.
    if (shop_concurrency > 0) keep->startLedgerPruner();
    // Whoever processes orders also re-enqueues the ones whose job was lost.
    if (o.spec.queues.count(kOrdersQueue)) {
      keep->startOrderSweeper(shop_client);
      log::info("jobs",
                "order.process groups wait up to {} ms for more orders (CLUSTERD_ORDER_GROUP_WAIT)",
                keep->services().order_group_wait.count());
    }
  }
  return success();
}

}  // namespace clusterd::jobs
