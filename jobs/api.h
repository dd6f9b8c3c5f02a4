// The shop's HTTP API on the built-in worker's router:
//   POST /v1/orders               record a pending order, enqueue order.process, 202
//   GET  /v1/orders/{order_id}    the order, its status and lines
//   GET  /v1/orders?customer=     a customer's recent orders
//   GET  /v1/products?page=&limit=  the catalogue, paginated (cached)
//   GET  /v1/products/{sku}       the product holding a SKU (cached)
// Bad input answers 400 with the field at fault; a database or queue that
// is down answers 503 (the client may retry with its idempotency key).
#pragma once

#include <memory>
#include <string>

#include "db/pool.h"
#include "jobs/cache.h"
#include "jobs/job.h"
#include "jobs/order_ids.h"

namespace clusterd::worker {
class Router;
}

namespace clusterd::jobs {

struct ApiStats {
  uint64_t orders_accepted = 0;
  uint64_t orders_replayed = 0;
  uint64_t orders_invalid = 0;
  // Where an accepted checkout spends its time: the order insert (waiting
  // for a connection, the grouped transaction, its commit) and the
  // order.process enqueue (Redis), summed over `checkouts_timed`.
  uint64_t checkouts_timed = 0;
  uint64_t insert_ns = 0;
  uint64_t enqueue_ns = 0;
};

class ShopApi {
 public:
  // The checkouts run on `pool`, whose every session is checked first for
  // a PostgreSQL crash that may have taken back order ids (jobs/order_ids.h).
  ShopApi(db::Pool& pool, ProductCache& cache, EnqueueFn enqueue)
      : pool_(pool),
        cache_(cache),
        enqueue_(std::move(enqueue)),
        order_id_guard_(guardOrderIds(pool)) {}
  void registerRoutes(worker::Router& router);
  const ApiStats& stats() const { return stats_; }

 private:
  db::Pool& pool_;
  ProductCache& cache_;
  EnqueueFn enqueue_;
  std::unique_ptr<db::SessionSetup> order_id_guard_;
  ApiStats stats_;
};

}  // namespace clusterd::jobs
