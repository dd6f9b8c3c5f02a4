// order.process: reserve stock for every line of a pending order, or reject
// it with a reason, in one transaction with the ledger row and the
// confirmation email (a transactional outbox), then enqueue email.batch.
// Order jobs running at the same time in one process share that transaction
// (jobs/order_group.h decides each order; this file runs the group).
//
// Design: a group costs two round trips and one WAL flush however many
// orders it holds. The first pipeline (with BEGIN) inserts the jobs' ledger
// rows (sorted), locks the orders by ascending id and then their variants by
// ascending id, and reads the lines and the pending emails. If a job carries
// an order whose row is not there (a crash lost it: the checkout's insert
// does not wait for a WAL flush; docs/JOBS.md, "Durability of a checkout"),
// the group rolls back and runs again with statements that recreate those
// rows before the orders are locked; only a crash costs that second run, and
// the statements' planning is saved on every other group. Every group takes
// its row locks in that one order, so concurrent groups (and inventory.adjust,
// which locks variants by id too) queue behind each other instead of
// deadlocking, and the stock read under the locks is the stock the decisions
// use: no overselling. The second pipeline writes every decision with
// set-based statements inside a savepoint and COMMITs. If a write fails for
// a permanent reason (bad data), the group goes back to that savepoint and
// writes order by order, each in its own savepoint: the order at fault fails
// alone (its ledger row removed, so a later retry of its job is not taken
// for a redelivery), the decisions after it are made again without it, and
// the others commit. A transient error (connection lost, deadlock,
// serialization failure) retries every job of the group.
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>

#include "common/log.h"
#include "config/load.h"
#include "jobs/job.h"
#include "jobs/order_group.h"
#include "jobs/store.h"

namespace clusterd::jobs {
namespace {

// Orders committed within one 100 ms window share one email.batch job, due
// just after the window closes: its unique key names the window, so the
// first order enqueues it and the others get its id. The job runs after
// every enqueue of its window, hence after every commit that preceded them.
constexpr int64_t kEmailWindowMs = 100;

void enqueueEmailBatch(Services& s, std::function<void(std::optional<std::string>)> done) {
  if (!s.enqueue) return done(std::nullopt);
  int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  int64_t window = now / kEmailWindowMs;
  EnqueueOptions opts;
  opts.delay = std::chrono::milliseconds((window + 1) * kEmailWindowMs - now + 5);
  opts.unique = fmt::format("email.batch@{}", window);
  s.enqueue(kEmailQueue, kEmailBatch, nlohmann::json::object(), opts,
            [done = std::move(done)](Result<std::string> r) {
              if (!r) return done(r.error().message);
              done(std::nullopt);
            });
}

// One group on one transaction, from the first pipeline to the answers.
class GroupRun : public std::enable_shared_from_this<GroupRun> {
 public:
  // `recover`: recreate the lost pending rows of the orders the jobs carry.
  GroupRun(Services& s, db::TransactionPtr tx, std::vector<OrderJob> jobs, bool recover)
      : s_(s), tx_(std::move(tx)), group_(std::move(jobs)), recover_(recover) {}

  void start() {
    std::vector<int64_t> order_ids = group_.orderIds();
    std::vector<std::string> job_ids = group_.jobIds();
    std::vector<db::Statement> batch{
        db::stmt("INSERT INTO job_ledger (job_id, job_name)"
                 " SELECT id, 'order.process' FROM unnest($1::text[]) AS id ORDER BY id"
                 " ON CONFLICT (job_id) DO NOTHING RETURNING job_id",
                 db::textArray(job_ids))};
    if (recover_)
      for (db::Statement& st : group_.recoveryStatements()) batch.push_back(std::move(st));
    for (db::Statement st :
         {db::stmt("SELECT id, status, customer, (extract(epoch FROM created_at) * 1000000)::bigint"
                   " FROM orders WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE",
                   db::int64Array(order_ids)),
          // `= ANY(ARRAY(...))` rather than `IN (SELECT ...)`: the planner
          // then looks each SKU up in variants' unique index instead of
          // hashing a sequential scan of every variant, each of whose rows
          // carries a multixact (locked here, updated under the savepoint)
          // that costs a lookup to check.
          db::stmt("SELECT id, sku, stock, price_cents FROM variants"
                   " WHERE sku = ANY (ARRAY(SELECT sku FROM order_lines"
                   "                        WHERE order_id = ANY($1::bigint[])))"
                   " ORDER BY id FOR UPDATE",
                   db::int64Array(order_ids)),
          db::stmt("SELECT order_id, line_no, sku, qty FROM order_lines"
                   " WHERE order_id = ANY($1::bigint[]) ORDER BY order_id, line_no",
                   db::int64Array(order_ids)),
          // Every email of the orders, filtered here: with `status =
          // 'pending'` in the query, the planner ANDs in a bitmap scan of
          // the whole pending-email index, which holds an entry for every
          // email sent since the table's last vacuum.
          db::stmt("SELECT order_id, status FROM email_outbox WHERE order_id = ANY($1::bigint[])",
                   db::int64Array(order_ids))})
      batch.push_back(std::move(st));
    auto self = shared_from_this();
    tx_->run(std::move(batch), [self](db::Reply r) { self->onRead(std::move(r)); });
  }

 private:
  void onRead(db::Reply r) {
    if (!r.ok()) {
      if (!r.error->transient() && group_.size() > 1) {
        // Something about one job's data broke a statement of the whole
        // group: run each job on its own so only that one fails.
        tx_->rollback();
        for (OrderJob& j : group_.takeJobs()) processOrderAlone(s_, std::move(j));
        return;
      }
      return answerAll(fromDbError("order.process", *r.error));
    }
    // Replies: the ledger rows, the recovery statements if any, the reads.
    constexpr size_t kRec = 1;
    const size_t at_orders = kRec + (recover_ ? OrderGroup::kRecoveryStatements : 0);
    const size_t at_variants = at_orders + 1, at_lines = at_orders + 2, at_emails = at_orders + 3;
    GroupSnapshot snap;
    const db::Rows& orders = r[at_orders];
    for (int i = 0; i < orders.size(); ++i)
      snap.orders[orders.int64(i, 0)] = {orders.str(i, 1), orders.str(i, 2), orders.int64(i, 3)};
    if (!recover_ && group_.lostCarriedOrder(snap.orders)) {
      tx_->rollback();
      return runGroup(s_, group_.takeJobs(), true);
    }
    for (int i = 0; i < r[0].size(); ++i) snap.inserted.insert(r[0].str(i, 0));
    if (recover_) {
      OrderGroup::readRecovery(r[kRec + OrderGroup::kRecreatedReply],
                               r[kRec + OrderGroup::kKeyOwnersReply], snap);
      if (!snap.recreated.empty())
        log::warn(
            "jobs",
            "order.process: recreated {} pending order(s) lost before processing (first id {})",
            snap.recreated.size(), *snap.recreated.begin());
    }
    const db::Rows& variants = r[at_variants];
    for (int i = 0; i < variants.size(); ++i)
      snap.variants[variants.str(i, 1)] = {variants.int64(i, 0), variants.int64(i, 2),
                                           variants.int64(i, 3)};
    const db::Rows& lines = r[at_lines];
    for (int i = 0; i < lines.size(); ++i)
      snap.lines[lines.int64(i, 0)].push_back(
          {static_cast<int>(lines.int64(i, 1)), lines.str(i, 2), lines.int64(i, 3)});
    for (int i = 0; i < r[at_emails].size(); ++i)
      if (r[at_emails].str(i, 1) == "pending") snap.pending_email.insert(r[at_emails].int64(i, 0));
    group_.decide(std::move(snap));
    if (!group_.writes() && group_.ledgerDeletes().empty()) {
      // Nothing to write: redeliveries, or orders decided by other jobs.
      // The ledger rows of the latter still commit.
      return commit({});
    }
    writeBulk();
  }

  // Every decision in one savepoint; COMMIT in the same pipeline.
  void writeBulk() {
    std::vector<db::Statement> batch{db::Statement{"SAVEPOINT grp", {}}};
    size_t first = batch.size();
    group_.appendWrites(0, group_.decisionCount(), batch);
    size_t end = batch.size();
    batch.push_back(db::Statement{"RELEASE SAVEPOINT grp", {}});
    appendLedgerDeletes(batch);
    batch.push_back(durableCommit());
    auto self = shared_from_this();
    tx_->commit(
        std::move(batch),
        [self, first, end](db::Reply r) {
          if (r.ok()) return self->committed();
          if (r.error->transient() || !self->tx_->open() || !r.failed_at || *r.failed_at < first ||
              *r.failed_at >= end)
            return self->answerAll(fromDbError("order.process", *r.error));
          log::warn("jobs",
                    "order.process: a group of {} hit a permanent error ({}); writing its "
                    "orders one by one",
                    self->group_.size(), r.error->message);
          self->writeEach(0, {db::Statement{"ROLLBACK TO SAVEPOINT grp", {}}});
        },
        db::OnError::kKeep);
  }

  // Decisions [from, end) each in its own savepoint, after `prefix`.
  void writeEach(size_t from, std::vector<db::Statement> prefix) {
    std::vector<db::Statement> batch = std::move(prefix);
    std::vector<std::pair<size_t, size_t>> ranges;  // statement range of each decision
    for (size_t d = from; d < group_.decisionCount(); ++d) {
      size_t begin = batch.size();
      batch.push_back(db::Statement{fmt::format("SAVEPOINT ord{}", d), {}});
      group_.appendWrites(d, d + 1, batch);
      batch.push_back(db::Statement{fmt::format("RELEASE SAVEPOINT ord{}", d), {}});
      ranges.emplace_back(begin, batch.size());
    }
    appendLedgerDeletes(batch);
    batch.push_back(durableCommit());
    auto self = shared_from_this();
    tx_->commit(
        std::move(batch),
        [self, from, ranges](db::Reply r) {
          if (r.ok()) return self->committed();
          if (r.error->transient() || !self->tx_->open() || !r.failed_at)
            return self->answerAll(fromDbError("order.process", *r.error));
          for (size_t k = 0; k < ranges.size(); ++k) {
            if (*r.failed_at < ranges[k].first || *r.failed_at >= ranges[k].second) continue;
            size_t d = from + k;
            // That order fails alone; the ones after it are decided again
            // without it (the stock it would have taken is still there).
            self->group_.failDecision(d, "order.process: " + r.error->message);
            return self->writeEach(
                d + 1, {db::Statement{fmt::format("ROLLBACK TO SAVEPOINT ord{}", d), {}}});
          }
          self->answerAll(fromDbError("order.process", *r.error));
        },
        db::OnError::kKeep);
  }

  void appendLedgerDeletes(std::vector<db::Statement>& batch) {
    const auto& ids = group_.ledgerDeletes();
    if (!ids.empty())
      batch.push_back(
          db::stmt("DELETE FROM job_ledger WHERE job_id = ANY($1::text[])", db::textArray(ids)));
  }

  void commit(std::vector<db::Statement> batch) {
    batch.push_back(durableCommit());
    auto self = shared_from_this();
    tx_->commit(std::move(batch), [self](db::Reply r) {
      if (!r.ok()) return self->answerAll(fromDbError("order.process", *r.error));
      self->committed();
    });
  }

  void committed() {
    std::vector<std::string> skus = group_.changedSkus();
    if (!skus.empty() && s_.invalidate) s_.invalidate(skus);
    if (!group_.needsEmailHandOff()) return answer(std::nullopt);
    auto self = shared_from_this();
    enqueueEmailBatch(s_, [self](std::optional<std::string> err) { self->answer(err); });
  }

  void answer(std::optional<std::string> enqueue_error) {
    for (auto& [job, result] : group_.results(enqueue_error)) job.done(std::move(result));
  }

  void answerAll(JobResult r) {
    for (OrderJob& j : group_.takeJobs()) j.done(r);
  }

  Services& s_;
  db::TransactionPtr tx_;
  OrderGroup group_;
  bool recover_;
};

}  // namespace

void runGroup(Services& s, std::vector<OrderJob> jobs, bool recover) {
  auto shared = std::make_shared<std::vector<OrderJob>>(std::move(jobs));
  s.pool->transaction([&s, shared, recover](db::TransactionPtr tx, std::optional<db::DbError> err) {
    if (err) {
      JobResult r = fromDbError("order.process", *err);
      for (OrderJob& j : *shared) j.done(r);
      return;
    }
    std::make_shared<GroupRun>(s, std::move(tx), std::move(*shared), recover)->start();
  });
}

Result<std::chrono::milliseconds> orderGroupWaitFromEnv() {
  const char* v = std::getenv("CLUSTERD_ORDER_GROUP_WAIT");
  if (!v || !*v) return kDefaultOrderGroupWait;
  config::Millis d{0};
  if (!config::parseDuration(v, d) || d > std::chrono::seconds(1))
    return Error{fmt::format(
        "CLUSTERD_ORDER_GROUP_WAIT={}: expected a duration from 0 to 1s, such as 10ms or 0", v)};
  return d;
}

std::string ledgerKey(const Job& job) {
  if (job.queue.empty()) return job.id;
  if (job.uid.empty()) return job.queue + ":" + job.id;
  return job.queue + ":" + job.id + ":" + job.uid;
}

JobResult fromDbError(const std::string& what, const db::DbError& e) {
  return JobResult{e.transient() ? Outcome::kRetry : Outcome::kFail, what + ": " + e.message};
}

db::Statement durableCommit() {
  return db::Statement{"SELECT set_config('synchronous_commit', 'on', true)"
                       " WHERE current_setting('synchronous_commit') = 'off'",
                       {}};
}

// Collects the order jobs that arrive while a connection is being found and
// runs them as one group. Owned by Services (one per process).
class OrderGrouper : public std::enable_shared_from_this<OrderGrouper> {
 public:
  explicit OrderGrouper(Services& s) : s_(s) {
    uv_timer_init(s.loop, timer_.get());
    timer_->data = this;
  }

  void add(OrderJob job) {
    pending_.push_back(std::move(job));
    if (waiting_ && pending_.size() >= kMaxOrderGroup) {
      // A full group need not wait for more.
      uv_timer_stop(timer_.get());
      waiting_ = false;
      return request();
    }
    if (requesting_) return;
    requesting_ = true;
    waiting_ = true;
    // Jobs handed over in the same loop turn (a reserved batch), or within
    // the group wait, join the same group.
    uv_timer_start(
        timer_.get(),
        [](uv_timer_t* t) {
          auto* self = static_cast<OrderGrouper*>(t->data);
          self->waiting_ = false;
          self->request();
        },
        static_cast<uint64_t>(s_.order_group_wait.count()), 0);
  }

 private:
  void request() {
    std::weak_ptr<OrderGrouper> weak = weak_from_this();
    s_.pool->transaction([weak](db::TransactionPtr tx, std::optional<db::DbError> err) {
      auto self = weak.lock();
      if (!self) return;
      self->granted(std::move(tx), std::move(err));
    });
  }

  void granted(db::TransactionPtr tx, std::optional<db::DbError> err) {
    requesting_ = false;
    // Up to kMaxOrderGroup jobs, oldest first; a job naming an order (or
    // a job id) already in the group waits for the next one, so that each
    // order is decided once per transaction.
    std::vector<OrderJob> group, rest;
    std::set<int64_t> orders;
    std::set<std::string> ids;
    for (OrderJob& j : pending_) {
      if (group.size() < kMaxOrderGroup && !orders.count(j.order_id) && !ids.count(j.job_id)) {
        orders.insert(j.order_id);
        ids.insert(j.job_id);
        group.push_back(std::move(j));
      } else {
        rest.push_back(std::move(j));
      }
    }
    pending_ = std::move(rest);
    if (!pending_.empty()) {
      // More arrived than one group takes, or while this one waited: the
      // next group waits for the next connection.
      requesting_ = true;
      request();
    }
    if (err) {
      JobResult r = fromDbError("order.process", *err);
      for (OrderJob& j : group) j.done(r);
      return;
    }
    if (group.empty()) return;  // the transaction is dropped unused
    std::make_shared<GroupRun>(s_, std::move(tx), std::move(group), false)->start();
  }

  Services& s_;
  UvHandle<uv_timer_t> timer_;
  std::vector<OrderJob> pending_;
  bool requesting_ = false;  // a group is waiting (below) or asking for a connection
  bool waiting_ = false;     // the group wait's timer is running
};

void processOrderAlone(Services& s, OrderJob job) {
  std::vector<OrderJob> one;
  one.push_back(std::move(job));
  runGroup(s, std::move(one), false);
}

void processOrder(Services& s, const Job& job, JobDone done) {
  const auto& d = job.data;
  if (!d.is_object() || !d.contains("order_id") || !d["order_id"].is_number_integer() ||
      (d["order_id"].is_number_unsigned() &&
       d["order_id"].get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) ||
      d["order_id"].get<int64_t>() < 1)
    return done(JobResult{Outcome::kFail, "data.order_id: expected a positive integer order id"});
  OrderJob oj{ledgerKey(job), d["order_id"].get<int64_t>(), {}};
  // Optional (jobs from before the order rode along have only order_id):
  // the order itself, to recreate its row if a crash lost it.
  if (d.contains("created_us")) {
    if (!d["created_us"].is_number_integer() || d["created_us"].get<int64_t>() < 1)
      return done(JobResult{Outcome::kFail, "data.created_us: expected the order's creation time "
                                            "in microseconds since the epoch"});
    oj.created_us = d["created_us"].get<int64_t>();
  }
  if (d.contains("customer") || d.contains("lines")) {
    if (oj.created_us == 0)
      return done(JobResult{Outcome::kFail,
                            "data.created_us: required with the order's customer and lines"});
    auto order = parseOrderRequest(d);
    if (auto* fe = std::get_if<FieldError>(&order))
      return done(JobResult{Outcome::kFail, "data." + fe->field + ": " + fe->message});
    oj.order = std::move(std::get<OrderRequest>(order));
  }
  oj.done = std::move(done);
  if (!s.order_grouper) s.order_grouper = std::make_shared<OrderGrouper>(s);
  s.order_grouper->add(std::move(oj));
}

}  // namespace clusterd::jobs
