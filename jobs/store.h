// The shop's reads and writes behind the HTTP API: validating and recording
// an order, reading an order back, and the product catalogue. Each call is
// one round trip (one statement or one pipeline) on the pool.
//
// Design: the pending-order insert commits with synchronous_commit off (it
// does not wait for a WAL flush), because the order.process job that
// follows it is only as durable as Redis' AOF anyway. The job carries the
// order itself (orderJobPayload()), so an order lost in an OS crash is
// recreated by its job (docs/JOBS.md, "Durability of a checkout"), and the
// checkout pool's session setup keeps the crash from handing its id to
// another order (jobs/order_ids.h).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "db/pool.h"

namespace clusterd::jobs {

struct OrderLineRequest {
  std::string sku;
  int64_t qty = 0;
};

struct OrderRequest {
  std::string customer;  // an email address
  std::vector<OrderLineRequest> lines;
  std::string idempotency_key;  // empty = none
};

// A request a client got wrong, by field ("lines[2].qty").
struct FieldError {
  std::string field;
  std::string message;
};

constexpr size_t kMaxOrderLines = 100;

std::variant<OrderRequest, FieldError> parseOrderRequest(const nlohmann::json& body);

struct PlacedOrder {
  int64_t order_id = 0;
  bool created = false;     // false: the idempotency key named an existing order
  std::string status;       // "pending" for a new order
  int64_t created_us = 0;   // created_at in microseconds since the epoch
  bool same_request = true;  // a replay asked for this order (customer and lines), not another
};

// Records a pending order with its lines; with an idempotency key already
// used, answers the existing order instead (same_request false when the key
// was used for a different customer or lines). The commit does not wait for a
// WAL flush (see the Design note above).
void insertOrder(db::Pool& pool, const OrderRequest& req,
                 std::function<void(PlacedOrder, std::optional<db::DbError>)> done);

// The order.process payload for a placed order: {"order_id", "created_us",
// "customer", "lines": [{"sku", "qty"}], "idempotency_key"?}. The order's
// id and creation time name the order; the rest lets the handler recreate a
// pending row that a crash lost (the row, when present, is authoritative).
nlohmann::json orderJobPayload(const OrderRequest& req, const PlacedOrder& placed);

// The enqueue's unique key for a placed order: a replay (or a retry after a
// 503) gets the job already waiting. It names the creation time as well as
// the id, so an order that reuses the id of a lost one gets its own job.
std::string orderJobUniqueKey(const PlacedOrder& placed);

// GET /v1/orders/{id}: the JSON document, or nullopt when there is no such order.
void getOrder(db::Pool& pool, int64_t order_id,
              std::function<void(std::optional<nlohmann::json>, std::optional<db::DbError>)> done);

// GET /v1/orders?customer=: the customer's most recent orders, newest first.
void listCustomerOrders(db::Pool& pool, const std::string& customer, int limit,
                        std::function<void(nlohmann::json, std::optional<db::DbError>)> done);

// GET /v1/products?page=&limit=: {"products": [...], "page", "limit", "total", "has_next"}.
void listProducts(db::Pool& pool, int page, int limit,
                  std::function<void(nlohmann::json, std::optional<db::DbError>)> done);

// GET /v1/products/{sku}: the product holding that SKU, or nullopt.
void getProduct(db::Pool& pool, const std::string& sku,
                std::function<void(std::optional<nlohmann::json>, std::optional<db::DbError>)> done);

}  // namespace clusterd::jobs
