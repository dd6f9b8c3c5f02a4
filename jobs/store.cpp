// Implementation of jobs/store.h.
#include "jobs/store.h"

#include <fmt/format.h>

#include <memory>

namespace clusterd::jobs {
namespace {

bool plausibleEmail(const std::string& s) {
  auto at = s.find('@');
  return s.size() <= 254 && at != std::string::npos && at > 0 && at + 1 < s.size() &&
         s.find('@', at + 1) == std::string::npos &&
         s.find_first_of(" \t\r\n<>,;\"") == std::string::npos;
}

// json_agg of a product's variants, for the catalogue reads.
constexpr const char* kVariantsJson =
    "coalesce((SELECT json_agg(json_build_object('sku', v.sku, 'name', v.name,"
    " 'price_cents', v.price_cents, 'stock', v.stock) ORDER BY v.id)"
    " FROM variants v WHERE v.product_id = p.id), '[]')";

nlohmann::json productJson(const db::Rows& r, int i) {
  return {{"id", r.int64(i, 0)},
          {"name", r.str(i, 1)},
          {"description", r.str(i, 2)},
          {"variants", nlohmann::json::parse(r.text(i, 3))}};
}

}  // namespace

std::variant<OrderRequest, FieldError> parseOrderRequest(const nlohmann::json& body) {
  if (!body.is_object()) return FieldError{"body", "expected a JSON object"};
  OrderRequest req;
  if (!body.contains("customer") || !body["customer"].is_string())
    return FieldError{"customer", "required: the customer's email address"};
  req.customer = body["customer"].get<std::string>();
  if (!plausibleEmail(req.customer))
    return FieldError{"customer", "expected an email address like ada@example.com"};
  if (!body.contains("lines") || !body["lines"].is_array() || body["lines"].empty())
    return FieldError{"lines", "required: a non-empty array of {sku, qty}"};
  if (body["lines"].size() > kMaxOrderLines)
    return FieldError{"lines", fmt::format("at most {} lines per order", kMaxOrderLines)};
  for (size_t i = 0; i < body["lines"].size(); ++i) {
    const auto& l = body["lines"][i];
    std::string at = fmt::format("lines[{}]", i);
    if (!l.is_object()) return FieldError{at, "expected an object {sku, qty}"};
    if (!l.contains("sku") || !l["sku"].is_string() || l["sku"].get<std::string>().empty() ||
        l["sku"].get<std::string>().size() > 64)
      return FieldError{at + ".sku", "required: a SKU such as SKU-000001"};
    if (!l.contains("qty") || !l["qty"].is_number_integer() || l["qty"].get<int64_t>() < 1 ||
        l["qty"].get<int64_t>() > 1000)
      return FieldError{at + ".qty", "required: an integer from 1 to 1000"};
    req.lines.push_back({l["sku"].get<std::string>(), l["qty"].get<int64_t>()});
  }
  if (body.contains("idempotency_key") && !body["idempotency_key"].is_null()) {
    if (!body["idempotency_key"].is_string() || body["idempotency_key"].get<std::string>().empty() ||
        body["idempotency_key"].get<std::string>().size() > 200)
      return FieldError{"idempotency_key", "expected a string of 1 to 200 characters"};
    req.idempotency_key = body["idempotency_key"].get<std::string>();
  }
  return req;
}

// created_at as an exact integer (extract() is numeric, not a float).
constexpr const char* kCreatedUs = "(extract(epoch FROM created_at) * 1000000)::bigint";

void insertOrder(db::Pool& pool, const OrderRequest& req,
                 std::function<void(PlacedOrder, std::optional<db::DbError>)> done) {
  std::vector<std::string> skus;
  std::vector<int64_t> qtys;
  for (auto& l : req.lines) skus.push_back(l.sku), qtys.push_back(l.qty);
  std::optional<std::string> key;
  if (!req.idempotency_key.empty()) key = req.idempotency_key;
  // The commit need not wait for a WAL flush: the order.process job that
  // follows is durable only to Redis' AOF (fsync once a second), and the job
  // carries what it takes to recreate this row. set_config(..., true) is SET
  // LOCAL: it ends with the transaction, also inside a shared one, and
  // unlike SET LOCAL it does not warn in a pipeline's implicit transaction.
  db::Statement async_commit{"SELECT set_config('synchronous_commit', 'off', true)", {}};
  // One statement: the order and its lines, or the order the key already
  // names with whether this request asks for the same order (customer and
  // lines, in order): a key reused for a different order is refused.
  db::Statement s = db::stmt(
      fmt::format("WITH ins AS ("
                  "  INSERT INTO orders (customer, idempotency_key) VALUES ($1, $2)"
                  "  ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, {0}),"
                  " lines AS ("
                  "  INSERT INTO order_lines (order_id, line_no, sku, qty)"
                  "  SELECT ins.id, l.n, l.sku, l.qty"
                  "  FROM ins, unnest($3::text[], $4::int[]) WITH ORDINALITY AS l(sku, qty, n))"
                  " SELECT id, true, 'pending', created_us, true FROM ins"
                  " UNION ALL"
                  " SELECT id, false, status, {0},"
                  "  customer = $1"
                  "  AND ARRAY(SELECT sku FROM order_lines x WHERE x.order_id = orders.id"
                  "            ORDER BY line_no) = $3::text[]"
                  "  AND ARRAY(SELECT qty FROM order_lines x WHERE x.order_id = orders.id"
                  "            ORDER BY line_no) = $4::int[]"
                  " FROM orders"
                  "  WHERE $2::text IS NOT NULL AND idempotency_key = $2"
                  "  AND NOT EXISTS (SELECT 1 FROM ins)",
                  fmt::format("{} AS created_us", kCreatedUs)),
      req.customer, key, db::textArray(skus), db::int64Array(qtys));
  auto attempt = std::make_shared<std::function<void(int)>>();
  *attempt = [&pool, async_commit, s, done = std::move(done), attempt](int tries) {
    // Concurrent checkouts share a transaction.
    pool.pipelineGrouped({async_commit, s}, [done, attempt, tries](db::Reply r) {
      if (!r.ok()) {
        done({}, std::move(r.error));
        *attempt = nullptr;
        return;
      }
      const db::Rows& rows = r[1];
      if (rows.size() == 0 && tries < 2) {
        // The key's order was committed by a concurrent request after this
        // statement's snapshot; a second statement sees it.
        return (*attempt)(tries + 1);
      }
      auto cb = std::move(done);
      *attempt = nullptr;  // breaks the self-reference
      if (rows.size() == 0)
        return cb({}, db::DbError{db::ErrorKind::kTransient, "", "idempotency key race, retry"});
      cb(PlacedOrder{rows.int64(0, 0), rows.boolean(0, 1), rows.str(0, 2), rows.int64(0, 3),
                     rows.boolean(0, 4)},
         std::nullopt);
    });
  };
  (*attempt)(0);
}

nlohmann::json orderJobPayload(const OrderRequest& req, const PlacedOrder& placed) {
  nlohmann::json lines = nlohmann::json::array();
  for (const auto& l : req.lines) lines.push_back({{"sku", l.sku}, {"qty", l.qty}});
  nlohmann::json data{{"order_id", placed.order_id},
                      {"created_us", placed.created_us},
                      {"customer", req.customer},
                      {"lines", std::move(lines)}};
  if (!req.idempotency_key.empty()) data["idempotency_key"] = req.idempotency_key;
  return data;
}

std::string orderJobUniqueKey(const PlacedOrder& placed) {
  return fmt::format("order-{}-{}", placed.order_id, placed.created_us);
}

void getOrder(db::Pool& pool, int64_t order_id,
              std::function<void(std::optional<nlohmann::json>, std::optional<db::DbError>)> done) {
  pool.pipeline(
      {db::stmt("SELECT id, customer, status, reason, total_cents,"
                " to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
                " FROM orders WHERE id = $1",
                order_id),
       db::stmt("SELECT sku, qty, price_cents FROM order_lines WHERE order_id = $1 ORDER BY line_no",
                order_id)},
      [done = std::move(done)](db::Reply r) {
        if (!r.ok()) return done(std::nullopt, std::move(r.error));
        if (r[0].size() == 0) return done(std::nullopt, std::nullopt);
        const db::Rows& o = r[0];
        nlohmann::json lines = nlohmann::json::array();
        for (int i = 0; i < r[1].size(); ++i) {
          nlohmann::json l{{"sku", r[1].str(i, 0)}, {"qty", r[1].int64(i, 1)}};
          if (!r[1].isNull(i, 2)) l["price_cents"] = r[1].int64(i, 2);
          lines.push_back(std::move(l));
        }
        nlohmann::json doc{{"order_id", o.int64(0, 0)}, {"customer", o.str(0, 1)},
                           {"status", o.str(0, 2)},     {"lines", lines},
                           {"created_at", o.str(0, 5)}};
        if (!o.isNull(0, 3)) doc["reason"] = o.str(0, 3);
        if (!o.isNull(0, 4)) doc["total_cents"] = o.int64(0, 4);
        done(std::move(doc), std::nullopt);
      });
}

void listCustomerOrders(db::Pool& pool, const std::string& customer, int limit,
                        std::function<void(nlohmann::json, std::optional<db::DbError>)> done) {
  pool.query(db::stmt("SELECT id, status, total_cents FROM orders WHERE customer = $1"
                      " ORDER BY created_at DESC LIMIT $2",
                      customer, limit),
             [done = std::move(done)](db::Reply r) {
               if (!r.ok()) return done({}, std::move(r.error));
               nlohmann::json out = nlohmann::json::array();
               for (int i = 0; i < r[0].size(); ++i) {
                 nlohmann::json o{{"order_id", r[0].int64(i, 0)}, {"status", r[0].str(i, 1)}};
                 if (!r[0].isNull(i, 2)) o["total_cents"] = r[0].int64(i, 2);
                 out.push_back(std::move(o));
               }
               done({{"orders", out}}, std::nullopt);
             });
}

void listProducts(db::Pool& pool, int page, int limit,
                  std::function<void(nlohmann::json, std::optional<db::DbError>)> done) {
  int64_t offset = static_cast<int64_t>(page - 1) * limit;
  pool.pipeline(
      {db::Statement{"SELECT count(*) FROM products", {}},
       db::stmt(fmt::format("SELECT p.id, p.name, p.description, {} FROM products p"
                            " ORDER BY p.id LIMIT $1 OFFSET $2",
                            kVariantsJson),
                limit, offset)},
      [page, limit, offset, done = std::move(done)](db::Reply r) {
        if (!r.ok()) return done({}, std::move(r.error));
        int64_t total = r[0].int64(0, 0);
        nlohmann::json products = nlohmann::json::array();
        for (int i = 0; i < r[1].size(); ++i) products.push_back(productJson(r[1], i));
        done({{"products", products},
              {"page", page},
              {"limit", limit},
              {"total", total},
              {"has_next", offset + r[1].size() < total}},
             std::nullopt);
      });
}

void getProduct(db::Pool& pool, const std::string& sku,
                std::function<void(std::optional<nlohmann::json>, std::optional<db::DbError>)> done) {
  pool.query(db::stmt(fmt::format("SELECT p.id, p.name, p.description, {}"
                                  " FROM variants v0 JOIN products p ON p.id = v0.product_id"
                                  " WHERE v0.sku = $1",
                                  kVariantsJson),
                      sku),
             [done = std::move(done)](db::Reply r) {
               if (!r.ok()) return done(std::nullopt, std::move(r.error));
               if (r[0].size() == 0) return done(std::nullopt, std::nullopt);
               done(productJson(r[0], 0), std::nullopt);
             });
}

}  // namespace clusterd::jobs
