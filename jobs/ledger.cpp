// Implementation of jobs/ledger.h.
#include "jobs/ledger.h"

#include <cstdlib>

#include <fmt/format.h>

#include "common/log.h"
#include "config/load.h"

namespace clusterd::jobs {

Result<LedgerRetention> ledgerRetentionFromEnv() {
  LedgerRetention r;
  const char* v = std::getenv("CLUSTERD_LEDGER_RETENTION");
  if (!v || !*v) return r;
  config::Millis age{0};
  if (!config::parseDuration(v, age))
    return Error{
        fmt::format("CLUSTERD_LEDGER_RETENTION={}: expected a duration such as 7d or 48h", v)};
  if (age < kMinRetention)
    return Error{
        fmt::format("CLUSTERD_LEDGER_RETENTION={}: at least 1h, so that a redelivered job "
                    "still finds its ledger row",
                    v)};
  r.age = age;
  return r;
}

LedgerPruner::LedgerPruner(uv_loop_t* loop, db::Pool& pool, LedgerRetention retention)
    : loop_(loop),
      pool_(pool),
      retention_(retention),
      self_(std::make_shared<LedgerPruner*>(this)) {
  uv_timer_init(loop_, timer_.get());
  timer_->data = this;
}

LedgerPruner::~LedgerPruner() {
  self_.reset();
}

void LedgerPruner::start() {
  // The first round runs after one interval: a worker starting up has better
  // things to do, and a restart loop must not turn into a DELETE loop.
  uv_timer_start(
      timer_.get(), [](uv_timer_t* t) { static_cast<LedgerPruner*>(t->data)->round(); },
      static_cast<uint64_t>(retention_.interval.count()),
      static_cast<uint64_t>(retention_.interval.count()));
  uv_unref(timer_.handle());
}

void LedgerPruner::round() {
  if (running_) return;
  running_ = true;
  std::weak_ptr<LedgerPruner*> weak = self_;
  auto next = std::make_shared<std::function<void(Result<int64_t>)>>();
  *next = [weak, next](Result<int64_t> r) {
    auto self = weak.lock();
    if (!self) return;
    LedgerPruner* p = *self;
    if (r && *r >= p->retention_.batch) return p->pruneOnce(*next);
    if (!r)
      log::warn("jobs", "job_ledger pruning failed (next try in {} s): {}",
                p->retention_.interval.count() / 1000, r.error().message);
    p->running_ = false;
    *next = nullptr;  // breaks the self-reference
  };
  pruneOnce(*next);
}

void LedgerPruner::pruneOnce(std::function<void(Result<int64_t>)> done) {
  std::weak_ptr<LedgerPruner*> weak = self_;
  double seconds = static_cast<double>(retention_.age.count()) / 1000.0;
  pool_.query(db::stmt("DELETE FROM job_ledger WHERE job_id IN ("
                       " SELECT job_id FROM job_ledger"
                       " WHERE processed_at < now() - make_interval(secs => $1::float8)"
                       " ORDER BY processed_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
                       fmt::format("{}", seconds), retention_.batch),
              [weak, done = std::move(done)](db::Reply r) {
                if (!r.ok()) return done(Error{"DELETE FROM job_ledger: " + r.error->message});
                int64_t n = r[0].affected();
                if (auto self = weak.lock()) (*self)->pruned_ += static_cast<uint64_t>(n);
                done(n);
              });
}

}  // namespace clusterd::jobs
