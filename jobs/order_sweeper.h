// OrderSweeper: finds orders that stayed `pending` past a grace period and
// enqueues their order.process job again, from a timer on the loop of each
// worker that consumes the `orders` queue, so that no order stays pending
// because its job was lost (an OS crash inside Redis' AOF fsync window, or a
// checkout whose enqueue failed after its insert committed).
//
// Design: a round takes a PostgreSQL advisory lock for its transaction
// (pg_try_advisory_xact_lock, kOrderSweepLock); a process that does not get
// it skips the round, so one sweeper acts at a time across processes and
// hosts, and the lock goes with the connection if the process dies (a Redis
// lease would need a TTL chosen against the round's length). The lock saves
// work; it is not what keeps effects single: the job is enqueued with the
// checkout's unique key `order-<id>-<created_us>`, so an order whose job
// still waits, runs or waits to be retried gets that job back and nothing
// new, and a job that does run twice for one order finds the order decided
// (order.process never decides an order that is not pending, under the
// order's row lock). The swept job keeps its unique key for `hold` after it
// finishes, so an order whose job fails permanently comes back at most once
// per hold instead of every round. Pages walk the stale pending orders by
// (created_at, id) on the partial index orders_pending_created_at; a round
// reads at most `pages` pages and the next round continues from where it
// stopped, so old orders that keep failing cannot hide newer lost ones.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include "common/result.h"
#include "common/uv_handle.h"
#include "db/pool.h"

namespace clusterd::queue {
class Client;
}

namespace clusterd::jobs {

// pg_try_advisory_xact_lock key: "ordsweep" in ASCII (see pg_locks).
inline constexpr int64_t kOrderSweepLock = 0x6f72647377656570;

struct SweepOptions {
  bool enabled = true;
  std::chrono::milliseconds interval{30'000};  // between rounds
  std::chrono::milliseconds grace{60'000};     // an order younger than this is left alone
  int batch = 200;                             // orders per page (one SELECT, one enqueue call)
  int pages = 10;                              // pages per round at most
  std::chrono::milliseconds hold{3'600'000};   // a swept job's unique key, after it finished
};

// CLUSTERD_ORDER_SWEEP_INTERVAL ("30s", "2m"; "off" disables the sweeper)
// and CLUSTERD_ORDER_SWEEP_GRACE ("60s"), else the defaults; both at least
// 1 s. A bad value is an error naming the variable.
Result<SweepOptions> sweepOptionsFromEnv();

struct SweepResult {
  bool locked_elsewhere = false;  // another process holds the sweep lock: nothing done
  int64_t stale = 0;              // pending orders past the grace period that were looked at
  int64_t requeued = 0;           // of those, orders that got a new job
};

class OrderSweeper {
 public:
  OrderSweeper(uv_loop_t* loop, db::Pool& pool, queue::Client& client, SweepOptions options);
  ~OrderSweeper();
  OrderSweeper(const OrderSweeper&) = delete;
  OrderSweeper& operator=(const OrderSweeper&) = delete;

  // Sweeps every `interval` (the timer does not keep the loop alive).
  void start();
  // One round now: up to `pages` pages, or fewer when a page comes back short.
  void sweepOnce(std::function<void(Result<SweepResult>)> done);

  uint64_t requeued() const { return requeued_; }

 private:
  struct Round;
  void round();
  void page(std::shared_ptr<Round> r);

  uv_loop_t* loop_;
  db::Pool& pool_;
  queue::Client& client_;
  SweepOptions options_;
  UvHandle<uv_timer_t> timer_;
  std::shared_ptr<OrderSweeper*> self_;
  uint64_t requeued_ = 0;
  bool running_ = false;
  // Where the next page starts: (created_at in µs, id) of the last order seen.
  int64_t cursor_us_ = 0;
  int64_t cursor_id_ = 0;
};

}  // namespace clusterd::jobs
