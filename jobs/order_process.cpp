// order.process: reserve stock for every line of a pending order, or reject
// it with a reason, in one transaction with the ledger row and the
// confirmation email (a transactional outbox), then enqueue email.batch.
//
// Design: two round trips. The first pipeline (with BEGIN) inserts the
// ledger row, locks the order, and locks the order's variants ordered by id:
// every order takes its row locks in the same order, so concurrent orders
// queue behind each other instead of deadlocking, and the stock read under
// the lock is the stock the decision uses (no overselling). The decision is
// made here; the second pipeline writes it and COMMITs. A redelivered job
// finds its ledger row (the INSERT ... ON CONFLICT DO NOTHING touches no row)
// and only re-sends the email.batch hand-off if the email is still pending,
// so a crash between COMMIT and enqueue loses no email.
#include <fmt/format.h>

#include <map>
#include <memory>

#include "common/log.h"
#include "jobs/job.h"

namespace clusterd::jobs {
namespace {

struct Line {
  int line_no = 0;
  std::string sku;
  int64_t qty = 0;
};

struct Variant {
  int64_t id = 0;
  int64_t stock = 0;
  int64_t price_cents = 0;
};

// Orders committed within one 100 ms window share one email.batch job, due
// just after the window closes: its unique key names the window, so the
// first order enqueues it and the others get its id. The job runs after
// every enqueue of its window, hence after every commit that preceded them.
constexpr int64_t kEmailWindowMs = 100;

void enqueueEmailBatch(Services& s, int64_t order_id, JobResult result, JobDone done) {
  if (!s.enqueue) return done(std::move(result));
  int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  int64_t window = now / kEmailWindowMs;
  EnqueueOptions opts;
  opts.delay = std::chrono::milliseconds((window + 1) * kEmailWindowMs - now + 5);
  opts.unique = fmt::format("email.batch@{}", window);
  s.enqueue(kEmailQueue, kEmailBatch, nlohmann::json{{"order_id", order_id}}, opts,
            [result = std::move(result), done = std::move(done)](Result<std::string> r) mutable {
              if (!r) {
                // The order is committed; the retry finds the ledger row and
                // hands the pending email over again.
                return done(JobResult{Outcome::kRetry,
                                      "order committed, enqueue of email.batch failed: " +
                                          r.error().message});
              }
              done(std::move(result));
            });
}

void decide(Services& s, int64_t order_id, db::TransactionPtr tx,
            const db::Reply& r, JobDone done) {
  // r[0] ledger insert, r[1] order, r[2] variants (locked), r[3] lines, r[4] pending emails.
  if (r[0].affected() == 0) {
    tx->rollback();
    JobResult res{Outcome::kDone, "already processed (job ledger)"};
    if (r[4].int64(0, 0) > 0) return enqueueEmailBatch(s, order_id, std::move(res), std::move(done));
    return done(std::move(res));
  }
  if (r[1].size() == 0) {
    tx->rollback();
    return done(JobResult{Outcome::kFail, fmt::format("data.order_id: order {} does not exist",
                                                      order_id)});
  }
  std::string status = r[1].str(0, 0);
  std::string customer = r[1].str(0, 1);
  if (status != "pending") {
    // Decided by an earlier job for the same order: record this one, change nothing.
    tx->commit([done = std::move(done), status](db::Reply c) {
      if (!c.ok()) return done(fromDbError("order.process", *c.error));
      done(JobResult{Outcome::kDone, "order already " + status});
    });
    return;
  }
  std::map<std::string, Variant> variants;
  for (int i = 0; i < r[2].size(); ++i)
    variants[r[2].str(i, 1)] = Variant{r[2].int64(i, 0), r[2].int64(i, 2), r[2].int64(i, 3)};
  std::vector<Line> lines;
  for (int i = 0; i < r[3].size(); ++i)
    lines.push_back(Line{static_cast<int>(r[3].int64(i, 0)), r[3].str(i, 1), r[3].int64(i, 2)});

  std::string reason;
  std::map<int64_t, int64_t> take;  // variant id -> qty, lines of one SKU summed
  int64_t total = 0;
  if (lines.empty()) reason = "order has no lines";
  for (const Line& l : lines) {
    auto it = variants.find(l.sku);
    if (it == variants.end()) {
      reason = fmt::format("unknown sku {}", l.sku);
      break;
    }
    take[it->second.id] += l.qty;
    total += l.qty * it->second.price_cents;
  }
  if (reason.empty()) {
    for (auto& [sku, v] : variants) {
      auto t = take.find(v.id);
      if (t != take.end() && t->second > v.stock) {
        reason = fmt::format("insufficient stock for {}: requested {}, available {}", sku,
                             t->second, v.stock);
        break;
      }
    }
  }

  if (!reason.empty()) {
    tx->commit({db::stmt("UPDATE orders SET status = 'rejected', reason = $2, processed_at = now()"
                         " WHERE id = $1",
                         order_id, reason)},
               [done = std::move(done), reason](db::Reply c) {
                 if (!c.ok()) return done(fromDbError("order.process", *c.error));
                 done(JobResult{Outcome::kDone, "rejected: " + reason,
                                {{"status", "rejected"}, {"reason", reason}}});
               });
    return;
  }

  std::vector<int64_t> ids, qtys, line_nos, line_vids, line_prices;
  for (auto& [id, qty] : take) ids.push_back(id), qtys.push_back(qty);
  nlohmann::json email_lines = nlohmann::json::array();
  std::vector<std::string> skus;
  for (const Line& l : lines) {
    const Variant& v = variants[l.sku];
    line_nos.push_back(l.line_no);
    line_vids.push_back(v.id);
    line_prices.push_back(v.price_cents);
    email_lines.push_back({{"sku", l.sku}, {"qty", l.qty}, {"price_cents", v.price_cents}});
  }
  for (auto& [sku, v] : variants) skus.push_back(sku);
  nlohmann::json email{{"order_id", order_id}, {"customer", customer}, {"lines", email_lines},
                       {"total_cents", total}};
  tx->commit(
      {db::stmt("UPDATE variants v SET stock = v.stock - d.qty, updated_at = now()"
                " FROM unnest($1::bigint[], $2::bigint[]) AS d(id, qty) WHERE v.id = d.id",
                db::int64Array(ids), db::int64Array(qtys)),
       db::stmt("UPDATE order_lines l SET variant_id = d.vid, price_cents = d.price"
                " FROM unnest($2::int[], $3::bigint[], $4::bigint[]) AS d(line_no, vid, price)"
                " WHERE l.order_id = $1 AND l.line_no = d.line_no",
                order_id, db::int64Array(line_nos), db::int64Array(line_vids),
                db::int64Array(line_prices)),
       db::stmt("UPDATE orders SET status = 'confirmed', total_cents = $2, processed_at = now()"
                " WHERE id = $1",
                order_id, total),
       db::stmt("INSERT INTO email_outbox (order_id, recipient, template, data)"
                " VALUES ($1, $2, 'order_confirmed', $3::jsonb)",
                order_id, customer, email.dump())},
      [&s, order_id, skus, total, done = std::move(done)](db::Reply c) mutable {
        if (!c.ok()) return done(fromDbError("order.process", *c.error));
        if (s.invalidate) s.invalidate(skus);
        enqueueEmailBatch(s, order_id,
                          JobResult{Outcome::kDone, "confirmed",
                                    {{"status", "confirmed"}, {"total_cents", total}}},
                          std::move(done));
      });
}

}  // namespace

JobResult fromDbError(const std::string& what, const db::DbError& e) {
  return JobResult{e.transient() ? Outcome::kRetry : Outcome::kFail, what + ": " + e.message};
}

void processOrder(Services& s, const Job& job, JobDone done) {
  const auto& d = job.data;
  if (!d.is_object() || !d.contains("order_id") || !d["order_id"].is_number_integer())
    return done(JobResult{Outcome::kFail, "data.order_id: expected an integer order id"});
  int64_t order_id = d["order_id"].get<int64_t>();
  s.pool->transaction([&s, job, order_id, done = std::move(done)](
                          db::TransactionPtr tx, std::optional<db::DbError> err) mutable {
    if (err) return done(fromDbError("order.process", *err));
    tx->run(
        {db::stmt("INSERT INTO job_ledger (job_id, job_name) VALUES ($1, $2)"
                  " ON CONFLICT (job_id) DO NOTHING",
                  job.id, job.name),
         db::stmt("SELECT status, customer FROM orders WHERE id = $1 FOR UPDATE", order_id),
         db::stmt("SELECT id, sku, stock, price_cents FROM variants"
                  " WHERE sku IN (SELECT sku FROM order_lines WHERE order_id = $1)"
                  " ORDER BY id FOR UPDATE",
                  order_id),
         db::stmt("SELECT line_no, sku, qty FROM order_lines WHERE order_id = $1 ORDER BY line_no",
                  order_id),
         db::stmt("SELECT count(*) FROM email_outbox WHERE order_id = $1 AND status = 'pending'",
                  order_id)},
        [&s, job, order_id, tx, done = std::move(done)](db::Reply r) mutable {
          if (!r.ok()) return done(fromDbError("order.process", *r.error));
          decide(s, order_id, tx, r, std::move(done));
        });
  });
}

}  // namespace clusterd::jobs
