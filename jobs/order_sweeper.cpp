// Implementation of jobs/order_sweeper.h.
#include "jobs/order_sweeper.h"

#include <cstdlib>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "common/log.h"
#include "config/load.h"
#include "jobs/job.h"
#include "jobs/store.h"
#include "queue/client.h"
#include "queue/job.h"

namespace clusterd::jobs {
namespace {

// A duration variable of at least one second; with `off`, "off" sets it.
Result<void> durationFromEnv(const char* name, std::chrono::milliseconds& out, bool* off) {
  const char* v = std::getenv(name);
  if (!v || !*v) return success();
  std::string text = v;
  if (off && text == "off") {
    *off = true;
    return success();
  }
  config::Millis d{0};
  if (!config::parseDuration(text, d) || d < std::chrono::seconds(1))
    return Error{fmt::format("{}={}: expected a duration of at least 1s, such as 30s or 2m{}", name,
                             text, off ? ", or off" : "")};
  out = d;
  return success();
}

}  // namespace

Result<SweepOptions> sweepOptionsFromEnv() {
  SweepOptions o;
  bool off = false;
  if (auto r = durationFromEnv("CLUSTERD_ORDER_SWEEP_INTERVAL", o.interval, &off); !r)
    return r.error();
  if (auto r = durationFromEnv("CLUSTERD_ORDER_SWEEP_GRACE", o.grace, nullptr); !r)
    return r.error();
  o.enabled = !off;
  return o;
}

// One round: its transaction (which holds the sweep lock) and its tally.
struct OrderSweeper::Round {
  db::TransactionPtr tx;
  SweepResult result;
  int pages_left = 0;
  std::function<void(Result<SweepResult>)> done;

  // Ends the round: the rollback releases the lock (nothing was written).
  void finish(Result<SweepResult> r) {
    if (tx && tx->open()) tx->rollback();
    auto cb = std::move(done);
    cb(std::move(r));
  }
};

OrderSweeper::OrderSweeper(uv_loop_t* loop, db::Pool& pool, queue::Client& client,
                           SweepOptions options)
    : loop_(loop),
      pool_(pool),
      client_(client),
      options_(options),
      self_(std::make_shared<OrderSweeper*>(this)) {
  uv_timer_init(loop_, timer_.get());
  timer_->data = this;
}

OrderSweeper::~OrderSweeper() {
  self_.reset();
}

void OrderSweeper::start() {
  if (!options_.enabled) return;
  // The first round comes after one interval, like the ledger pruner's: a
  // worker in a restart loop must not turn into a sweep loop.
  auto every = static_cast<uint64_t>(options_.interval.count());
  uv_timer_start(
      timer_.get(), [](uv_timer_t* t) { static_cast<OrderSweeper*>(t->data)->round(); }, every,
      every);
  uv_unref(timer_.handle());
}

void OrderSweeper::round() {
  if (running_) return;
  running_ = true;
  std::weak_ptr<OrderSweeper*> weak = self_;
  sweepOnce([weak](Result<SweepResult> r) {
    auto self = weak.lock();
    if (!self) return;
    OrderSweeper* s = *self;
    s->running_ = false;
    if (!r)
      log::warn("jobs", "order sweep failed (next try in {:g} s): {}",
                static_cast<double>(s->options_.interval.count()) / 1000.0, r.error().message);
    else if (r->requeued > 0)
      log::warn("jobs",
                "order sweep: enqueued order.process again for {} of {} stale pending "
                "order(s)",
                r->requeued, r->stale);
  });
}

void OrderSweeper::sweepOnce(std::function<void(Result<SweepResult>)> done) {
  std::weak_ptr<OrderSweeper*> weak = self_;
  pool_.transaction([weak, done = std::move(done)](db::TransactionPtr tx,
                                                   std::optional<db::DbError> err) mutable {
    auto self = weak.lock();
    if (!self) return;
    if (err) return done(Error{"order sweep: " + err->message});
    auto r = std::make_shared<Round>();
    r->tx = std::move(tx);
    r->pages_left = (*self)->options_.pages;
    r->done = std::move(done);
    // Try, never wait: a sweeper that finds the lock taken skips the round.
    r->tx->query(db::stmt("SELECT pg_try_advisory_xact_lock($1)", kOrderSweepLock),
                 [weak, r](db::Reply rep) {
                   auto self = weak.lock();
                   if (!self) return;
                   if (!rep.ok())
                     return r->finish(Error{"order sweep lock: " + rep.error->message});
                   if (!rep[0].boolean(0, 0)) {
                     r->result.locked_elsewhere = true;
                     return r->finish(r->result);
                   }
                   (*self)->page(r);
                 });
  });
}

void OrderSweeper::page(std::shared_ptr<Round> r) {
  std::weak_ptr<OrderSweeper*> weak = self_;
  double grace_s = static_cast<double>(options_.grace.count()) / 1000.0;
  // The stale pending orders after the cursor, oldest first, on the partial
  // index orders_pending_created_at (created_at, id) WHERE status = 'pending'.
  db::Statement st = db::stmt(
      "SELECT id, (extract(epoch FROM created_at) * 1000000)::bigint,"
      " (extract(epoch FROM now() - created_at))::bigint"
      " FROM orders WHERE status = 'pending'"
      " AND created_at < now() - make_interval(secs => $1::float8)"
      " AND (created_at, id) > (timestamptz 'epoch' + $2::bigint * interval '1 microsecond',"
      " $3::bigint)"
      " ORDER BY created_at, id LIMIT $4",
      fmt::format("{}", grace_s), cursor_us_, cursor_id_, options_.batch);
  r->tx->query(std::move(st), [weak, r](db::Reply rep) {
    auto self = weak.lock();
    if (!self) return;
    OrderSweeper* s = *self;
    if (!rep.ok()) return r->finish(Error{"SELECT stale pending orders: " + rep.error->message});
    const db::Rows& rows = rep[0];
    int n = rows.size();
    if (n == 0) {
      // The end of the stale orders: the next round starts from the oldest.
      s->cursor_us_ = s->cursor_id_ = 0;
      return r->finish(r->result);
    }
    struct Stale {
      int64_t id, created_us, age_s;
    };
    std::vector<Stale> stale;
    std::vector<queue::NewJob> jobs;
    for (int i = 0; i < n; ++i) {
      Stale o{rows.int64(i, 0), rows.int64(i, 1), rows.int64(i, 2)};
      PlacedOrder placed{o.id, false, "pending", o.created_us};
      // The id and creation time name the order; the row is committed and
      // flushed long since, so the job need not carry the order to recreate
      // it (and the row, not the payload, is what order.process uses).
      queue::NewJob job;
      job.name = kOrderProcess;
      job.payload = queue::payloadFromJson(
          {{"order_id", o.id}, {"created_us", o.created_us}, {"swept", true}});
      job.options.unique_key = orderJobUniqueKey(placed);
      job.options.unique_ttl = s->options_.hold;
      jobs.push_back(std::move(job));
      stale.push_back(o);
    }
    s->cursor_us_ = stale.back().created_us;
    s->cursor_id_ = stale.back().id;
    s->client_.enqueueBulk(
        kOrdersQueue, std::move(jobs),
        [weak, r, stale = std::move(stale)](Result<std::vector<queue::Enqueued>> e) {
          auto self = weak.lock();
          if (!self) return;
          OrderSweeper* s = *self;
          if (!e) return r->finish(Error{"enqueue order.process: " + e.error().message});
          for (size_t i = 0; i < stale.size() && i < e->size(); ++i) {
            r->result.stale += 1;
            if (!(*e)[i].created) continue;  // its job still waits, runs or retries
            r->result.requeued += 1;
            ++s->requeued_;
            log::warn("jobs",
                      "order {} pending for {} s without an order.process job: enqueued job {}",
                      stale[i].id, stale[i].age_s, (*e)[i].id);
          }
          if (static_cast<int>(stale.size()) < s->options_.batch) {
            s->cursor_us_ = s->cursor_id_ = 0;
            return r->finish(r->result);
          }
          // A full page: more may follow; this round reads at most `pages`,
          // the next one continues from the cursor.
          if (--r->pages_left <= 0) return r->finish(r->result);
          s->page(r);
        });
  });
}

}  // namespace clusterd::jobs
