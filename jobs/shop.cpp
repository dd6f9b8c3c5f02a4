// Implementation of jobs/shop.h except registerRoutes() and install()
// (jobs/install.cpp, which alone needs the worker module).
#include "jobs/shop.h"

#include <fmt/format.h>

#include "common/log.h"
#include "jobs/order_group.h"
#include "queue/client.h"
#include "queue/consumer.h"
#include "queue/job.h"
#include "queue/redis.h"

namespace clusterd::jobs {

Shop::Shop() = default;
Shop::~Shop() = default;

void Shop::adoptClient(std::unique_ptr<queue::Client> client) { client_ = std::move(client); }

Result<std::shared_ptr<Shop>> Shop::create(uv_loop_t* loop, db::Pool& pool, db::Pool& job_pool,
                                           EnqueueFn enqueue, const ShopOptions& options) {
  std::shared_ptr<Shop> shop(new Shop());
  shop->loop_ = loop;
  shop->pool_ = &pool;
  shop->job_pool_ = &job_pool;
  std::unique_ptr<queue::RedisConnection> redis;
  if (!options.redis_url.empty()) {
    auto addr = queue::parseRedisUrl(options.redis_url);
    if (!addr) return addr.error();
    redis = std::make_unique<queue::RedisConnection>(
        loop, *addr, queue::RedisOptions{.client_name = "clusterd-shop-cache"});
  }
  shop->cache_ = std::make_unique<ProductCache>(loop, std::move(redis), options.cache);
  auto transport = makeTransport(options.mail, options.home);
  if (!transport) return transport.error();
  log::info("jobs", "mail goes to {}", (*transport)->describe());
  shop->mailer_ = std::make_unique<Mailer>(loop, std::move(*transport), options.mail);
  shop->services_.loop = loop;
  shop->services_.pool = &job_pool;
  shop->services_.enqueue = std::move(enqueue);
  ProductCache* cache = shop->cache_.get();
  shop->services_.invalidate = [cache](const std::vector<std::string>& skus) {
    cache->invalidate(skus);
  };
  shop->services_.mailer = shop->mailer_.get();
  auto group_wait = orderGroupWaitFromEnv();
  if (!group_wait) return group_wait.error();
  shop->services_.order_group_wait = *group_wait;
  shop->api_ = std::make_unique<ShopApi>(pool, *shop->cache_, shop->services_.enqueue);
  LedgerRetention retention;
  if (options.ledger) {
    retention = *options.ledger;
  } else {
    auto r = ledgerRetentionFromEnv();
    if (!r) return r.error();
    retention = *r;
  }
  shop->pruner_ = std::make_unique<LedgerPruner>(loop, job_pool, retention);
  if (options.sweep) {
    shop->sweep_options_ = *options.sweep;
  } else {
    auto sw = sweepOptionsFromEnv();
    if (!sw) return sw.error();
    shop->sweep_options_ = *sw;
  }
  return shop;
}

void Shop::startLedgerPruner() {
  pruner_->start();
  const LedgerRetention& r = pruner_->retention();
  log::info("jobs", "ledger pruner: every {:g} s, job_ledger rows older than {:g} h",
            static_cast<double>(r.interval.count()) / 1000.0,
            static_cast<double>(r.age.count()) / 3.6e6);
}

void Shop::startOrderSweeper(queue::Client& client) {
  if (sweeper_ || !sweep_options_.enabled) return;
  sweeper_ = std::make_unique<OrderSweeper>(loop_, *job_pool_, client, sweep_options_);
  sweeper_->start();
  log::info("jobs", "order sweeper: every {:g} s, orders pending for more than {:g} s",
            static_cast<double>(sweep_options_.interval.count()) / 1000.0,
            static_cast<double>(sweep_options_.grace.count()) / 1000.0);
}

void Shop::run(void (*handler)(Services&, const Job&, JobDone), const std::string& name,
               const queue::Job& job, queue::Done done) {
  const std::string& payload = job.payload;
  auto data = queue::payloadToJson(payload);
  if (!data) {
    ++stats_.jobs_failed;
    return done(queue::permanentFailure(name + ": payload is not msgpack: " + data.error().message));
  }
  std::weak_ptr<Shop> weak = weak_from_this();
  handler(services_, Job{job.id, name, std::move(*data), job.queue, job.uid},
          [weak, done = std::move(done)](JobResult r) {
    auto self = weak.lock();
    if (self) {
      ShopStats& st = self->stats_;
      ++(r.outcome == Outcome::kDone ? st.jobs_done
         : r.outcome == Outcome::kRetry ? st.jobs_retried : st.jobs_failed);
    }
    if (r.outcome == Outcome::kDone) {
      // What the handler reports (an order's status and total, a batch's
      // counts) is kept with the completed job; a job that reports nothing
      // keeps its note instead ("already processed (job ledger)").
      nlohmann::json out = r.result.is_object() ? r.result : nlohmann::json::object();
      if (!r.result.is_null() && !r.result.is_object()) out["value"] = r.result;
      if (out.empty() && !r.message.empty()) out["note"] = r.message;
      return done(out.empty() ? queue::Outcome(success()) : queue::withResult(out));
    }
    // Bad data does not get better: the job goes to dead at once.
    if (r.outcome == Outcome::kFail) return done(queue::permanentFailure(r.message));
    done(Error{r.message});
  });
}

void Shop::registerHandlers(queue::Consumer& consumer) {
  // Weak: the consumer belongs to the worker and may outlive the Shop.
  std::weak_ptr<Shop> weak = weak_from_this();
  struct Entry {
    const char* name;
    void (*fn)(Services&, const Job&, JobDone);
  };
  for (Entry e : {Entry{kOrderProcess, processOrder}, Entry{kInventoryAdjust, adjustInventory},
                  Entry{kEmailBatch, sendEmailBatch}}) {
    std::string name = e.name;
    auto fn = e.fn;
    consumer.handle(name, [weak, name, fn](const queue::Job& job, queue::Done done) {
      auto self = weak.lock();
      if (!self) return done(Error{"the shop is shutting down"});
      self->run(fn, name, job, std::move(done));
    });
  }
}

void Shop::renderMetrics(std::string& out) const {
  const CacheStats& c = cache_->stats();
  uint64_t lookups = c.local_hits + c.redis_hits + c.misses;
  double ratio = lookups ? static_cast<double>(c.local_hits + c.redis_hits) / static_cast<double>(lookups) : 0;
  out += "# HELP clusterd_shop_cache_lookups_total Product cache lookups by the layer that answered.\n"
         "# TYPE clusterd_shop_cache_lookups_total counter\n";
  out += fmt::format("clusterd_shop_cache_lookups_total{{result=\"hit_local\"}} {}\n", c.local_hits);
  out += fmt::format("clusterd_shop_cache_lookups_total{{result=\"hit_redis\"}} {}\n", c.redis_hits);
  out += fmt::format("clusterd_shop_cache_lookups_total{{result=\"miss\"}} {}\n", c.misses);
  out += "# HELP clusterd_shop_cache_hit_ratio Share of product lookups answered by a cache layer.\n"
         "# TYPE clusterd_shop_cache_hit_ratio gauge\n";
  out += fmt::format("clusterd_shop_cache_hit_ratio {:.4f}\n", ratio);
  out += "# TYPE clusterd_shop_cache_invalidations_total counter\n";
  out += fmt::format("clusterd_shop_cache_invalidations_total {}\n", c.invalidations);
  const ApiStats& a = api_->stats();
  out += "# HELP clusterd_shop_orders_total Orders received by POST /v1/orders.\n"
         "# TYPE clusterd_shop_orders_total counter\n";
  out += fmt::format("clusterd_shop_orders_total{{result=\"accepted\"}} {}\n", a.orders_accepted);
  out += fmt::format("clusterd_shop_orders_total{{result=\"replayed\"}} {}\n", a.orders_replayed);
  out += fmt::format("clusterd_shop_orders_total{{result=\"invalid\"}} {}\n", a.orders_invalid);
  out += "# HELP clusterd_shop_checkout_seconds_total Time accepted checkouts spent inserting the order"
         " and enqueueing order.process.\n"
         "# TYPE clusterd_shop_checkout_seconds_total counter\n";
  out += fmt::format("clusterd_shop_checkout_seconds_total{{phase=\"insert\"}} {:.6f}\n",
                     static_cast<double>(a.insert_ns) / 1e9);
  out += fmt::format("clusterd_shop_checkout_seconds_total{{phase=\"enqueue\"}} {:.6f}\n",
                     static_cast<double>(a.enqueue_ns) / 1e9);
  out += "# TYPE clusterd_shop_checkouts_timed_total counter\n";
  out += fmt::format("clusterd_shop_checkouts_timed_total {}\n", a.checkouts_timed);
  out += "# HELP clusterd_shop_jobs_total Shop job attempts by outcome.\n"
         "# TYPE clusterd_shop_jobs_total counter\n";
  out += fmt::format("clusterd_shop_jobs_total{{outcome=\"done\"}} {}\n", stats_.jobs_done);
  out += fmt::format("clusterd_shop_jobs_total{{outcome=\"retry\"}} {}\n", stats_.jobs_retried);
  out += fmt::format("clusterd_shop_jobs_total{{outcome=\"failed\"}} {}\n", stats_.jobs_failed);
  out += "# HELP clusterd_shop_ledger_pruned_total job_ledger rows deleted past their retention.\n"
         "# TYPE clusterd_shop_ledger_pruned_total counter\n";
  out += fmt::format("clusterd_shop_ledger_pruned_total {}\n", pruner_->pruned());
  out += "# HELP clusterd_shop_orders_requeued_total Pending orders whose lost order.process job"
         " the sweeper enqueued again.\n"
         "# TYPE clusterd_shop_orders_requeued_total counter\n";
  out += fmt::format("clusterd_shop_orders_requeued_total {}\n", sweeper_ ? sweeper_->requeued() : 0);
  const auto& m = mailer_->counters();
  out += "# TYPE clusterd_shop_mail_total counter\n";
  out += fmt::format("clusterd_shop_mail_total{{result=\"sent\"}} {}\n", m.sent);
  out += fmt::format("clusterd_shop_mail_total{{result=\"failed\"}} {}\n", m.failed);
  db::PoolStats p = pool_->stats();
  if (job_pool_ != pool_) p += job_pool_->stats();
  out += "# HELP clusterd_db_queries_total Statement batches run on PostgreSQL.\n"
         "# TYPE clusterd_db_queries_total counter\n";
  out += fmt::format("clusterd_db_queries_total {}\n", p.batches);
  out += "# TYPE clusterd_db_errors_total counter\n";
  out += fmt::format("clusterd_db_errors_total {}\n", p.errors);
  out += "# HELP clusterd_db_slow_queries_total Batches slower than postgres.slow_query.\n"
         "# TYPE clusterd_db_slow_queries_total counter\n";
  out += fmt::format("clusterd_db_slow_queries_total {}\n", p.slow_queries);
  out += "# TYPE clusterd_db_reconnects_total counter\n";
  out += fmt::format("clusterd_db_reconnects_total {}\n", p.reconnects);
  out += "# TYPE clusterd_db_connections gauge\n";
  out += fmt::format("clusterd_db_connections{{state=\"open\"}} {}\n", p.connections);
  out += fmt::format("clusterd_db_connections{{state=\"busy\"}} {}\n", p.busy);
  out += "# TYPE clusterd_db_waiting gauge\n";
  out += fmt::format("clusterd_db_waiting {}\n", p.waiting);
}

EnqueueFn clientEnqueue(queue::Client& client) {
  return [&client](const std::string& q, const std::string& name, nlohmann::json data,
                   const EnqueueOptions& opts, std::function<void(Result<std::string>)> done) {
    queue::NewJob job;
    job.name = name;
    job.payload = queue::payloadFromJson(data);
    job.options.delay = opts.delay;
    job.options.unique_key = opts.unique;
    client.enqueue(q, std::move(job), [done = std::move(done)](Result<queue::Enqueued> r) {
      if (!r) return done(r.error());
      done(r->id);
    });
  };
}

}  // namespace clusterd::jobs
