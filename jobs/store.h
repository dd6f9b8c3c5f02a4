// The shop's reads and writes behind the HTTP API: validating and recording
// an order, reading an order back, and the product catalogue. Each call is
// one round trip (one statement or one pipeline) on the pool.
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
};

// Records a pending order with its lines; with an idempotency key already
// used, answers the existing order instead.
void insertOrder(db::Pool& pool, const OrderRequest& req,
                 std::function<void(PlacedOrder, std::optional<db::DbError>)> done);

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
