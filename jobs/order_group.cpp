// Implementation of jobs/order_group.h.
#include "jobs/order_group.h"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>

namespace clusterd::jobs {

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
      e.verdict = Verdict::kMissing;
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
