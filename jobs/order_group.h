// The decisions of one group of order.process jobs that share a transaction
// (jobs/order_process.cpp runs the group): which jobs are redeliveries,
// which orders are confirmed or rejected against the stock read under the
// row locks, the set-based statements that write them, and each job's
// answer once the transaction is over; and the recovery of a pending order
// row lost in a crash from the order its job carries. It also declares what
// order_process.cpp offers around a group: the group wait's setting and the
// calls that run a group on a transaction of its own.
//
// Design: pure data, no I/O, so the decisions are made once from the rows
// read and made again, identically for the orders before it, when one
// order's writes fail: orders are decided in the group's order against one
// running stock count, so taking an order out changes only the decisions
// after it.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "db/types.h"
#include "jobs/job.h"
#include "jobs/order_ids.h"
#include "jobs/store.h"

namespace clusterd::jobs {

// At most this many orders share a transaction. Each may need a savepoint
// when the group falls back to writing order by order, and PostgreSQL keeps
// up to 64 subtransactions per backend in shared memory before every
// snapshot in the cluster gets slower.
inline constexpr size_t kMaxOrderGroup = 32;

// The group wait of the shop's workers (Services::order_group_wait):
// CLUSTERD_ORDER_GROUP_WAIT, a duration from 0 to 1s such as 10ms, or
// kDefaultOrderGroupWait when unset. At 2,000 orders a second, 10 ms gathers
// about nine orders per transaction against two or three without waiting,
// and cuts PostgreSQL's CPU per order by a quarter (docs/BENCHMARKS.md).
inline constexpr std::chrono::milliseconds kDefaultOrderGroupWait{10};
Result<std::chrono::milliseconds> orderGroupWaitFromEnv();

struct OrderJob {
  std::string job_id;  // the ledger key (ledgerKey())
  int64_t order_id = 0;
  JobDone done;
  // From the payload (jobs/store.h, orderJobPayload()): when the order was
  // created (0: not given, the row is not checked), and the order itself,
  // to recreate its pending row if a crash lost it (nullopt: not given).
  int64_t created_us = 0;
  std::optional<OrderRequest> order;
};

// What the first pipeline of a group read (under the row locks).
struct GroupSnapshot {
  struct Order {
    std::string status;
    std::string customer;
    int64_t created_us = 0;
  };
  struct Variant {
    int64_t id = 0;
    int64_t stock = 0;
    int64_t price_cents = 0;
  };
  struct Line {
    int line_no = 0;
    std::string sku;
    int64_t qty = 0;
  };
  std::set<std::string> inserted;  // job ids whose ledger row this transaction inserted
  std::map<int64_t, Order> orders;
  std::map<std::string, Variant> variants;     // by SKU
  std::map<int64_t, std::vector<Line>> lines;  // by order id, in line order
  std::set<int64_t> pending_email;             // orders with an unsent email
  std::set<int64_t> recreated;                 // orders whose lost row this transaction recreated
  std::map<std::string, int64_t> key_owners;   // idempotency key -> order id, for jobs' keys
};

class OrderGroup {
 public:
  // Job ids and order ids must be distinct within a group.
  explicit OrderGroup(std::vector<OrderJob> jobs);

  size_t size() const { return jobs_.size(); }
  std::vector<int64_t> orderIds() const;    // sorted
  std::vector<std::string> jobIds() const;  // sorted (the ledger insert order)
  // Hands the jobs back (to answer them all alike, or to run them apart).
  std::vector<OrderJob> takeJobs();

  // Whether a job carries an order that `orders` (the rows read under the
  // lock) lacks: its pending row was lost in a crash, and the group must
  // run again with the recovery statements below.
  bool lostCarriedOrder(const std::map<int64_t, GroupSnapshot::Order>& orders) const;
  // Statements for the first pipeline, before the orders are locked: take
  // kOrderIdLock (jobs/order_ids.h); recreate the pending rows (and lines)
  // of orders whose jobs carry them and whose rows are missing, in id
  // order; move the order id sequence past those ids if it is behind them
  // (the checkout pool's guard moves it on after a crash before any
  // checkout, so this is a second line of defence); read which orders hold
  // the jobs' idempotency keys. Their replies fill `recreated` and
  // `key_owners` (readRecovery(), with the replies at kRecreatedReply and
  // kKeyOwnersReply of these statements).
  std::vector<db::Statement> recoveryStatements() const;
  // How far past the order id sequence a lost order's id may be: as far as
  // a crash can take the sequence back (kMaxLostOrderIds). A job naming an
  // id beyond it fails as a missing order.
  static constexpr int64_t kMaxLostOrdersAhead = kMaxLostOrderIds;
  static constexpr size_t kRecoveryStatements = 4;
  static constexpr size_t kRecreatedReply = 1;
  static constexpr size_t kKeyOwnersReply = 3;
  static void readRecovery(const db::Rows& recreated, const db::Rows& key_owners,
                           GroupSnapshot& snap);

  void decide(GroupSnapshot snapshot);
  // Orders with writes (confirmed or rejected), in the group's order.
  size_t decisionCount() const { return writers_.size(); }
  bool writes() const { return !writers_.empty(); }
  // The statements writing decisions [begin, end): one of each kind at most.
  void appendWrites(size_t begin, size_t end, std::vector<db::Statement>& out) const;
  // Decision `d` could not be written: its job fails with `message`, its
  // ledger row goes, and the decisions after it are made again without it.
  void failDecision(size_t d, std::string message);
  // Ledger rows this transaction inserted for jobs that fail: deleted before
  // COMMIT, so a retry of such a job is not taken for a redelivery.
  const std::vector<std::string>& ledgerDeletes() const { return ledger_deletes_; }
  // SKUs whose stock the group takes (for the product cache).
  std::vector<std::string> changedSkus() const;
  // Whether an email.batch must be enqueued after COMMIT.
  bool needsEmailHandOff() const;
  // Each job with its answer, after COMMIT; `enqueue_error` is why the
  // email.batch hand-off failed, if it did (those jobs are retried).
  std::vector<std::pair<OrderJob, JobResult>> results(
      const std::optional<std::string>& enqueue_error);

 private:
  enum class Verdict {
    kRedelivered,
    kMissing,
    kSuperseded,  // the order was lost and its idempotency key names a newer order
    kIdReused,    // the order was lost and its id names a newer order
    kAlreadyDecided,
    kConfirmed,
    kRejected,
    kFailed
  };
  struct Entry {
    OrderJob job;
    Verdict verdict = Verdict::kRedelivered;
    int64_t other_order = 0;     // kSuperseded: the order holding the key
    int64_t row_created_us = 0;  // kIdReused: the creation time of the row found
    std::string status;          // kAlreadyDecided: the order's status
    std::string reason;          // kRejected: why; kFailed: the error
    int64_t total_cents = 0;
    std::map<int64_t, int64_t> take;  // kConfirmed: variant id -> qty
  };
  void decideStock();

  std::vector<Entry> jobs_;
  GroupSnapshot snap_;
  std::vector<size_t> writers_;  // indexes into jobs_
  std::vector<std::string> ledger_deletes_;
};

// Runs `jobs` as one group on a transaction of their own; `recover` adds
// the statements that recreate lost pending rows (recoveryStatements()).
void runGroup(Services& s, std::vector<OrderJob> jobs, bool recover);
// Runs one order job in a group of its own (after its group's shared read
// failed for a reason that may be that job's alone).
void processOrderAlone(Services& s, OrderJob job);

}  // namespace clusterd::jobs
