// Implementation of jobs/order_group.h.
#include "jobs/order_group.h"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>
#include <ctime>

namespace clusterd::jobs {
namespace {

// Microseconds since the epoch as 2026-11-30T23:05:01.123456Z.
std::string isoTime(int64_t us) {
  std::time_t secs = static_cast<std::time_t>(us / 1'000'000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:06}Z", buf, us % 1'000'000);
}

}  // namespace

OrderGroup::OrderGroup(std::vector<OrderJob> jobs) {
  for (OrderJob& j : jobs) jobs_.push_back(Entry{std::move(j)});
}

std::vector<int64_t> OrderGroup::orderIds() const {
  std::vector<int64_t> ids;
  for (const Entry& e : jobs_) ids.push_back(e.job.order_id);
  std::sort(ids.begin(), ids.end());
  assert(std::adjacent_find(ids.begin(), ids.end()) == ids.end());
  return ids;
}

std::vector<std::string> OrderGroup::jobIds() const {
  std::vector<std::string> ids;
  for (const Entry& e : jobs_) ids.push_back(e.job.job_id);
  std::sort(ids.begin(), ids.end());
  assert(std::adjacent_find(ids.begin(), ids.end()) == ids.end());
  return ids;
}

std::vector<OrderJob> OrderGroup::takeJobs() {
  std::vector<OrderJob> out;
  for (Entry& e : jobs_) out.push_back(std::move(e.job));
  jobs_.clear();
  writers_.clear();
  return out;
}

bool OrderGroup::lostCarriedOrder(const std::map<int64_t, GroupSnapshot::Order>& orders) const {
  for (const Entry& e : jobs_)
    if (e.job.order && e.job.created_us > 0 && !orders.count(e.job.order_id)) return true;
  return false;
}

std::vector<db::Statement> OrderGroup::recoveryStatements() const {
  std::vector<int64_t> ids, created, line_orders, line_nos, qtys;
  std::vector<std::string> customers, keys, skus, owned_keys;
  std::vector<const OrderJob*> carried;
  for (const Entry& e : jobs_)
    if (e.job.order && e.job.created_us > 0) carried.push_back(&e.job);
  // In id order, like every other lock the group takes.
  std::sort(carried.begin(), carried.end(),
            [](const OrderJob* a, const OrderJob* b) { return a->order_id < b->order_id; });
  for (const OrderJob* j : carried) {
    ids.push_back(j->order_id);
    created.push_back(j->created_us);
    customers.push_back(j->order->customer);
    keys.push_back(j->order->idempotency_key);  // '' = none
    if (!j->order->idempotency_key.empty()) owned_keys.push_back(j->order->idempotency_key);
    for (size_t n = 0; n < j->order->lines.size(); ++n) {
      line_orders.push_back(j->order_id);
      line_nos.push_back(static_cast<int64_t>(n + 1));
      skus.push_back(j->order->lines[n].sku);
      qtys.push_back(j->order->lines[n].qty);
    }
  }
  std::vector<db::Statement> out;
  // Held to COMMIT: the guard (jobs/order_ids.h) and this group never move
  // the sequence at the same time, so neither sets it back below the other.
  out.push_back(db::stmt("SELECT pg_advisory_xact_lock($1)", kOrderIdLock));
  out.push_back(
      db::stmt("WITH o AS ("
               "  INSERT INTO orders (id, customer, idempotency_key, created_at)"
               "  SELECT s.id, s.customer, NULLIF(s.idem, ''),"
               "         timestamptz 'epoch' + s.us * interval '1 microsecond'"
               "  FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[])"
               "       AS s(id, customer, idem, us)"
               "  WHERE NOT EXISTS (SELECT 1 FROM orders x WHERE x.id = s.id)"
               "    AND s.id <= (SELECT last_value FROM orders_id_seq) + $9"
               "  ORDER BY s.id"
               "  ON CONFLICT DO NOTHING RETURNING id),"
               " l AS ("
               "  INSERT INTO order_lines (order_id, line_no, sku, qty)"
               "  SELECT l.order_id, l.line_no, l.sku, l.qty"
               "  FROM unnest($5::bigint[], $6::int[], $7::text[], $8::int[])"
               "       AS l(order_id, line_no, sku, qty)"
               "  WHERE l.order_id IN (SELECT id FROM o))"
               " SELECT id FROM o ORDER BY id",
               db::int64Array(ids), db::textArray(customers), db::textArray(keys),
               db::int64Array(created), db::int64Array(line_orders), db::int64Array(line_nos),
               db::textArray(skus), db::int64Array(qtys), kMaxLostOrdersAhead));
  // Read-only unless the sequence is behind an id the jobs name, which only
  // a crash that lost the sequence's advance can cause, and only until the
  // checkout pool's guard moves it on past every lost id (jobs/order_ids.h;
  // no checkout runs before that). Only ids within
  // kMaxLostOrdersAhead of the sequence count: an id the shop could not have
  // handed out (a forged job's, say 2^63 - 1) is left missing, its job fails,
  // and the sequence stays where it is.
  out.push_back(
      db::stmt("SELECT setval('orders_id_seq', m.id) FROM orders_id_seq,"
               "  (SELECT max(id) AS id FROM orders WHERE id = ANY($1::bigint[])) m"
               " WHERE m.id IS NOT NULL AND m.id <= last_value + $2"
               "   AND (last_value < m.id OR (last_value = m.id AND NOT is_called))",
               db::int64Array(ids), kMaxLostOrdersAhead));
  out.push_back(db::stmt(
      "SELECT idempotency_key, id FROM orders WHERE idempotency_key = ANY($1::text[])",
      db::textArray(owned_keys)));
  return out;
}

void OrderGroup::readRecovery(const db::Rows& recreated, const db::Rows& key_owners,
                              GroupSnapshot& snap) {
  for (int i = 0; i < recreated.size(); ++i) snap.recreated.insert(recreated.int64(i, 0));
  for (int i = 0; i < key_owners.size(); ++i)
    snap.key_owners[key_owners.str(i, 0)] = key_owners.int64(i, 1);
}

void OrderGroup::decide(GroupSnapshot snapshot) {
  snap_ = std::move(snapshot);
  writers_.clear();
  for (size_t i = 0; i < jobs_.size(); ++i) {
    Entry& e = jobs_[i];
    if (!snap_.inserted.count(e.job.job_id)) {
      e.verdict = Verdict::kRedelivered;
      continue;
    }
    auto o = snap_.orders.find(e.job.order_id);
    if (o == snap_.orders.end()) {
      // A job that carries its order had its row recreated unless its
      // idempotency key now names another order: the client placed it again
      // after the crash, and that order's own job processes it.
      auto owner = e.job.order ? snap_.key_owners.find(e.job.order->idempotency_key)
                               : snap_.key_owners.end();
      if (owner != snap_.key_owners.end() && owner->second != e.job.order_id) {
        e.verdict = Verdict::kSuperseded;
        e.other_order = owner->second;
        continue;
      }
      e.verdict = Verdict::kMissing;
      ledger_deletes_.push_back(e.job.job_id);
      continue;
    }
    if (e.job.created_us > 0 && o->second.created_us != e.job.created_us) {
      // Not this job's order: its row was lost and a later checkout got the
      // same id. That order has a job of its own (its unique key differs).
      e.verdict = Verdict::kIdReused;
      e.row_created_us = o->second.created_us;
      ledger_deletes_.push_back(e.job.job_id);
      continue;
    }
    if (o->second.status != "pending") {
      // Decided by an earlier job for the same order: record this one
      // (its ledger row commits), change nothing.
      e.verdict = Verdict::kAlreadyDecided;
      e.status = o->second.status;
      continue;
    }
    writers_.push_back(i);
  }
  decideStock();
}

void OrderGroup::decideStock() {
  std::map<int64_t, int64_t> stock;  // variant id -> units left
  for (const auto& [sku, v] : snap_.variants) stock[v.id] = v.stock;
  for (size_t w : writers_) {
    Entry& e = jobs_[w];
    if (e.verdict == Verdict::kFailed) continue;
    e.take.clear();
    e.total_cents = 0;
    e.reason.clear();
    const auto& lines = snap_.lines[e.job.order_id];
    if (lines.empty()) e.reason = "order has no lines";
    for (const auto& l : lines) {
      auto v = snap_.variants.find(l.sku);
      if (v == snap_.variants.end()) {
        e.reason = fmt::format("unknown sku {}", l.sku);
        break;
      }
      e.take[v->second.id] += l.qty;
      e.total_cents += l.qty * v->second.price_cents;
    }
    if (e.reason.empty()) {
      // Report the first short SKU in SKU order (the order it is read in).
      for (const auto& [sku, v] : snap_.variants) {
        auto t = e.take.find(v.id);
        if (t != e.take.end() && t->second > stock[v.id]) {
          e.reason = fmt::format("insufficient stock for {}: requested {}, available {}", sku,
                                 t->second, stock[v.id]);
          break;
        }
      }
    }
    if (!e.reason.empty()) {
      e.verdict = Verdict::kRejected;
      e.take.clear();
      continue;
    }
    e.verdict = Verdict::kConfirmed;
    for (const auto& [id, qty] : e.take) stock[id] -= qty;
  }
}

void OrderGroup::appendWrites(size_t begin, size_t end, std::vector<db::Statement>& out) const {
  std::map<int64_t, int64_t> take;
  std::vector<int64_t> line_orders, line_nos, line_vids, line_prices;
  std::vector<int64_t> confirmed, totals, rejected;
  std::vector<std::string> reasons, recipients, emails;
  for (size_t d = begin; d < end && d < writers_.size(); ++d) {
    const Entry& e = jobs_[writers_[d]];
    int64_t id = e.job.order_id;
    if (e.verdict == Verdict::kRejected) {
      rejected.push_back(id);
      reasons.push_back(e.reason);
      continue;
    }
    if (e.verdict != Verdict::kConfirmed) continue;
    for (const auto& [vid, qty] : e.take) take[vid] += qty;
    nlohmann::json email_lines = nlohmann::json::array();
    for (const auto& l : snap_.lines.at(id)) {
      const auto& v = snap_.variants.at(l.sku);
      line_orders.push_back(id);
      line_nos.push_back(l.line_no);
      line_vids.push_back(v.id);
      line_prices.push_back(v.price_cents);
      email_lines.push_back({{"sku", l.sku}, {"qty", l.qty}, {"price_cents", v.price_cents}});
    }
    const std::string& customer = snap_.orders.at(id).customer;
    confirmed.push_back(id);
    totals.push_back(e.total_cents);
    recipients.push_back(customer);
    emails.push_back(nlohmann::json{
        {"order_id", id},
        {"customer", customer},
        {"lines", email_lines},
        {"total_cents",
         e.total_cents}}.dump());
  }
  if (!take.empty()) {
    std::vector<int64_t> ids, qtys;
    for (const auto& [id, qty] : take) ids.push_back(id), qtys.push_back(qty);
    out.push_back(
        db::stmt("UPDATE variants v SET stock = v.stock - d.qty, updated_at = now()"
                 " FROM unnest($1::bigint[], $2::bigint[]) AS d(id, qty) WHERE v.id = d.id",
                 db::int64Array(ids), db::int64Array(qtys)));
    out.push_back(
        db::stmt("UPDATE order_lines l SET variant_id = d.vid, price_cents = d.price"
                 " FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::bigint[])"
                 " AS d(order_id, line_no, vid, price)"
                 " WHERE l.order_id = d.order_id AND l.line_no = d.line_no",
                 db::int64Array(line_orders), db::int64Array(line_nos), db::int64Array(line_vids),
                 db::int64Array(line_prices)));
    out.push_back(db::stmt(
        "UPDATE orders o SET status = 'confirmed', total_cents = d.total, processed_at = now()"
        " FROM unnest($1::bigint[], $2::bigint[]) AS d(id, total) WHERE o.id = d.id",
        db::int64Array(confirmed), db::int64Array(totals)));
    out.push_back(
        db::stmt("INSERT INTO email_outbox (order_id, recipient, template, data)"
                 " SELECT d.id, d.rcpt, 'order_confirmed', d.data::jsonb"
                 " FROM unnest($1::bigint[], $2::text[], $3::text[]) AS d(id, rcpt, data)",
                 db::int64Array(confirmed), db::textArray(recipients), db::textArray(emails)));
  }
  if (!rejected.empty())
    out.push_back(
        db::stmt("UPDATE orders o SET status = 'rejected', reason = d.reason, processed_at = now()"
                 " FROM unnest($1::bigint[], $2::text[]) AS d(id, reason) WHERE o.id = d.id",
                 db::int64Array(rejected), db::textArray(reasons)));
}

void OrderGroup::failDecision(size_t d, std::string message) {
  assert(d < writers_.size());
  Entry& e = jobs_[writers_[d]];
  e.verdict = Verdict::kFailed;
  e.reason = std::move(message);
  e.take.clear();
  ledger_deletes_.push_back(e.job.job_id);
  decideStock();
}

std::vector<std::string> OrderGroup::changedSkus() const {
  std::set<int64_t> ids;
  for (const Entry& e : jobs_)
    if (e.verdict == Verdict::kConfirmed)
      for (const auto& [id, qty] : e.take) ids.insert(id);
  std::vector<std::string> skus;
  for (const auto& [sku, v] : snap_.variants)
    if (ids.count(v.id)) skus.push_back(sku);
  return skus;
}

bool OrderGroup::needsEmailHandOff() const {
  for (const Entry& e : jobs_) {
    if (e.verdict == Verdict::kConfirmed) return true;
    if (e.verdict == Verdict::kRedelivered && snap_.pending_email.count(e.job.order_id))
      return true;
  }
  return false;
}

std::vector<std::pair<OrderJob, JobResult>> OrderGroup::results(
    const std::optional<std::string>& enqueue_error) {
  std::vector<std::pair<OrderJob, JobResult>> out;
  for (Entry& e : jobs_) {
    JobResult r;
    bool hands_off = false;
    switch (e.verdict) {
      case Verdict::kRedelivered:
        r = {Outcome::kDone, "already processed (job ledger)"};
        hands_off = snap_.pending_email.count(e.job.order_id) > 0;
        break;
      case Verdict::kMissing:
        r = {Outcome::kFail, fmt::format("data.order_id: order {} does not exist", e.job.order_id)};
        break;
      case Verdict::kSuperseded:
        r = {Outcome::kDone,
             fmt::format("order {} was lost before it was processed; its idempotency key now "
                         "names order {}, which its own job processes",
                         e.job.order_id, e.other_order),
             {{"status", "superseded"}, {"order_id", e.other_order}}};
        break;
      case Verdict::kIdReused:
        r = {Outcome::kFail,
             fmt::format("data.created_us: order {} of this job (created {}) was lost before it "
                         "was processed and its id now names a later order (created {}); "
                         "nothing was applied",
                         e.job.order_id, isoTime(e.job.created_us), isoTime(e.row_created_us))};
        break;
      case Verdict::kAlreadyDecided:
        r = {Outcome::kDone, "order already " + e.status};
        break;
      case Verdict::kConfirmed:
        r = {
            Outcome::kDone, "confirmed", {{"status", "confirmed"}, {"total_cents", e.total_cents}}};
        hands_off = true;
        break;
      case Verdict::kRejected:
        r = {Outcome::kDone,
             "rejected: " + e.reason,
             {{"status", "rejected"}, {"reason", e.reason}}};
        break;
      case Verdict::kFailed:
        r = {Outcome::kFail, e.reason};
        break;
    }
    if (snap_.recreated.count(e.job.order_id) &&
        (e.verdict == Verdict::kConfirmed || e.verdict == Verdict::kRejected)) {
      r.message += " (its pending row, lost in a crash, was recreated from the job)";
      r.result["recreated"] = true;
    }
    if (hands_off && enqueue_error) {
      // The order is committed; the retry finds the ledger row and hands
      // the pending email over again.
      r = {Outcome::kRetry, "order committed, enqueue of email.batch failed: " + *enqueue_error};
    }
    out.emplace_back(std::move(e.job), std::move(r));
  }
  jobs_.clear();
  writers_.clear();
  return out;
}

}  // namespace clusterd::jobs
