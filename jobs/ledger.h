// Bounded retention of job_ledger, the table that makes job effects happen
// exactly once: LedgerPruner deletes the rows older than a retention age, in
// small batches, from a timer on the worker's loop.
//
// Design: a ledger row only matters while its job can still be delivered
// again. With consumers running, that window is short: a job whose effects
// committed but whose acknowledgement was lost comes back once its lease
// (10 s) expires, at most max_stalls (3) times, and a retried job comes back
// within its backoff schedule (the longest in ecosystem/shop.yaml, email's
// 8 attempts from 5 s doubling, ends within about 11 minutes). Only a queue
// left without consumers (or Redis down) while a job sits leased stretches
// it, for as long as that outage lasts. The default retention, 7 days, is
// far beyond both, and retention is never allowed below kMinRetention (1 h).
// order.process has a second guard besides the ledger: an order that is no
// longer pending is never decided again. Batches are small
// (`FOR UPDATE SKIP LOCKED`, default 1,000 rows) so pruning never holds many
// locks or a long transaction, and several workers pruning at once split the
// rows instead of waiting on each other.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/result.h"
#include "common/uv_handle.h"
#include "db/pool.h"

namespace clusterd::jobs {

inline constexpr std::chrono::hours kDefaultLedgerRetention{24 * 7};
inline constexpr std::chrono::hours kMinRetention{1};

struct LedgerRetention {
  std::chrono::milliseconds age = kDefaultLedgerRetention;  // rows older than this go
  int batch = 1000;                                         // rows per DELETE
  std::chrono::milliseconds interval{60'000};               // between pruning rounds
};

// The retention from CLUSTERD_LEDGER_RETENTION ("7d", "48h", ...; set it in
// an app's env in the ecosystem file), else the default; an unparsable value
// or one below kMinRetention is an error naming the variable.
Result<LedgerRetention> ledgerRetentionFromEnv();

class LedgerPruner {
 public:
  LedgerPruner(uv_loop_t* loop, db::Pool& pool, LedgerRetention retention);
  ~LedgerPruner();
  LedgerPruner(const LedgerPruner&) = delete;
  LedgerPruner& operator=(const LedgerPruner&) = delete;

  // Prunes every `interval` (the timer does not keep the loop alive); a full
  // batch is followed by the next one at once, until a batch comes back short.
  void start();
  // One DELETE of at most `batch` expired rows; `done` gets how many went.
  void pruneOnce(std::function<void(Result<int64_t>)> done);

  uint64_t pruned() const { return pruned_; }
  const LedgerRetention& retention() const { return retention_; }

 private:
  void round();

  uv_loop_t* loop_;
  db::Pool& pool_;
  LedgerRetention retention_;
  UvHandle<uv_timer_t> timer_;
  std::shared_ptr<LedgerPruner*> self_;
  uint64_t pruned_ = 0;
  bool running_ = false;
};

}  // namespace clusterd::jobs
