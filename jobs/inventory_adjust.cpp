// inventory.adjust: restock or correct many variants in one job.
//
// Payload: {"adjustments": [{"sku": "SKU-000001", "delta": 5},
//                           {"sku": "SKU-000002", "set": 0}, ...], "note": "..."}
// `delta` adds (or removes) units, `set` replaces the count. The whole batch
// applies in one transaction with the job's ledger row, so a redelivery
// changes nothing; a line that names an unknown SKU or would take stock below
// zero fails the job with that line's index and applies none of it.
#include <fmt/format.h>

#include <map>

#include "jobs/job.h"

namespace clusterd::jobs {
namespace {

// Bounds on what one job may ask for: far above any real restock, and
// low enough that no sum of them overflows the stock column.
constexpr size_t kMaxAdjustments = 10'000;
constexpr int64_t kMaxUnits = 1'000'000'000;

struct Adjustment {
  std::string sku;
  bool absolute = false;  // "set" rather than "delta"
  int64_t value = 0;
};

Result<std::vector<Adjustment>> parse(const nlohmann::json& d) {
  if (!d.is_object() || !d.contains("adjustments") || !d["adjustments"].is_array() ||
      d["adjustments"].empty())
    return Error{"data.adjustments: expected a non-empty array of {sku, delta|set}"};
  std::vector<Adjustment> out;
  const auto& arr = d["adjustments"];
  if (arr.size() > kMaxAdjustments)
    return Error{fmt::format("data.adjustments: at most {} per job", kMaxAdjustments)};
  for (size_t i = 0; i < arr.size(); ++i) {
    const auto& a = arr[i];
    std::string where = fmt::format("data.adjustments[{}]", i);
    if (!a.is_object() || !a.contains("sku") || !a["sku"].is_string() ||
        a["sku"].get_ref<const std::string&>().empty() ||
        a["sku"].get_ref<const std::string&>().size() > 64)
      return Error{where + ".sku: expected a SKU of 1 to 64 characters"};
    Adjustment adj{a["sku"].get<std::string>()};
    bool has_delta = a.contains("delta"), has_set = a.contains("set");
    if (has_delta == has_set) return Error{where + ": give exactly one of delta or set"};
    const auto& v = has_set ? a["set"] : a["delta"];
    if (!v.is_number_integer()) return Error{where + (has_set ? ".set" : ".delta") + ": expected an integer"};
    adj.absolute = has_set;
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(kMaxUnits))
      return Error{where + (has_set ? ".set" : ".delta") +
                   fmt::format(": at most {} units", kMaxUnits)};
    adj.value = v.get<int64_t>();
    if (adj.absolute && adj.value < 0) return Error{where + ".set: stock cannot be negative"};
    if (adj.value > kMaxUnits || adj.value < -kMaxUnits)
      return Error{where + (has_set ? ".set" : ".delta") +
                   fmt::format(": at most {} units", kMaxUnits)};
    out.push_back(std::move(adj));
  }
  return out;
}

}  // namespace

void adjustInventory(Services& s, const Job& job, JobDone done) {
  auto parsed = parse(job.data);
  if (!parsed) return done(JobResult{Outcome::kFail, parsed.error().message});
  std::vector<std::string> skus;
  for (auto& a : *parsed) skus.push_back(a.sku);
  s.pool->transaction([&s, job, adjustments = std::move(*parsed), skus, done = std::move(done)](
                          db::TransactionPtr tx, std::optional<db::DbError> err) mutable {
    if (err) return done(fromDbError("inventory.adjust", *err));
    tx->run(
        {db::stmt("INSERT INTO job_ledger (job_id, job_name) VALUES ($1, $2)"
                  " ON CONFLICT (job_id) DO NOTHING",
                  ledgerKey(job), job.name),
         db::stmt("SELECT id, sku, stock FROM variants WHERE sku = ANY($1::text[])"
                  " ORDER BY id FOR UPDATE",
                  db::textArray(skus))},
        [&s, tx, adjustments = std::move(adjustments), done = std::move(done)](
            db::Reply r) mutable {
          if (!r.ok()) return done(fromDbError("inventory.adjust", *r.error));
          if (r[0].affected() == 0) {
            tx->rollback();
            return done(JobResult{Outcome::kDone, "already processed (job ledger)"});
          }
          std::map<std::string, std::pair<int64_t, int64_t>> stock;  // sku -> (id, stock)
          for (int i = 0; i < r[1].size(); ++i)
            stock[r[1].str(i, 1)] = {r[1].int64(i, 0), r[1].int64(i, 2)};
          for (size_t i = 0; i < adjustments.size(); ++i) {
            const Adjustment& a = adjustments[i];
            auto it = stock.find(a.sku);
            if (it == stock.end()) {
              tx->rollback();
              return done(JobResult{Outcome::kFail, fmt::format("data.adjustments[{}].sku: "
                                                                "unknown sku {}", i, a.sku)});
            }
            int64_t next = a.absolute ? a.value : it->second.second + a.value;
            if (next < 0) {
              tx->rollback();
              return done(JobResult{
                  Outcome::kFail,
                  fmt::format("data.adjustments[{}]: {} has {} in stock; delta {} would make it "
                              "negative",
                              i, a.sku, it->second.second, a.value)});
            }
            it->second.second = next;
          }
          std::vector<int64_t> ids, values;
          std::vector<std::string> changed;
          nlohmann::json result = nlohmann::json::object();
          for (auto& [sku, v] : stock) {
            ids.push_back(v.first);
            values.push_back(v.second);
            changed.push_back(sku);
            result[sku] = v.second;
          }
          tx->commit({db::stmt("UPDATE variants v SET stock = d.stock, updated_at = now()"
                               " FROM unnest($1::bigint[], $2::bigint[]) AS d(id, stock)"
                               " WHERE v.id = d.id",
                               db::int64Array(ids), db::int64Array(values)),
                      durableCommit()},
                     [&s, changed, result, done = std::move(done)](db::Reply c) {
                       if (!c.ok()) return done(fromDbError("inventory.adjust", *c.error));
                       if (s.invalidate) s.invalidate(changed);
                       done(JobResult{Outcome::kDone,
                                      fmt::format("adjusted {} variant(s)", changed.size()),
                                      {{"stock", result}}});
                     });
        });
  });
}

}  // namespace clusterd::jobs
