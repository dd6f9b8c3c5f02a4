// Implementation of jobs/api.h.
#include "jobs/api.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <charconv>
#include <memory>

#include <uv.h>

#include "common/log.h"
#include "common/nesting.h"
#include "jobs/store.h"
#include "worker/http.h"
#include "worker/router.h"

namespace clusterd::jobs {
namespace {

using worker::Request;
using worker::Responder;

std::optional<int64_t> parseId(std::string_view s) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < 1) return std::nullopt;
  return v;
}

// Reads an optional positive integer query parameter within [1, max].
bool intParam(const Request& req, std::string_view name, int max, int& out, Responder& res) {
  auto v = req.queryParam(name);
  if (!v) return true;
  auto n = parseId(*v);
  if (!n || *n > max) {
    res.error(400, fmt::format("expected an integer from 1 to {}", max), name);
    return false;
  }
  out = static_cast<int>(*n);
  return true;
}

// The database's message stays in the log: it may name tables, users and
// hosts, which are not the client's business.
void dbFailure(Responder& res, const db::DbError& e) {
  if (e.transient()) {
    res.header("Retry-After", "1");
    res.error(503, "database unavailable, retry shortly");
  } else {
    const Request& req = res.request();
    log::error("jobs", "{} {}: database error: {}", worker::methodName(req.method), req.path,
               e.message);
    res.error(500, "database error; the server's log has the detail");
  }
}

void sendCached(Responder& res, std::string body, const char* layer, int max_age_s) {
  res.header("Cache-Control", fmt::format("public, max-age={}", max_age_s));
  res.header("X-Cache", layer);
  res.send(200, std::move(body), "application/json");
}

const char* layerName(CacheLayer l) {
  switch (l) {
    case CacheLayer::kLocal: return "hit-local";
    case CacheLayer::kRedis: return "hit-redis";
    case CacheLayer::kNone: return "miss";
  }
  return "miss";
}

}  // namespace

void ShopApi::registerRoutes(worker::Router& router) {
  router.post("/v1/orders", [this](const Request& req, Responder res) {
    auto body = parseJsonLimited(req.body);
    if (!body) {
      ++stats_.orders_invalid;
      return res.error(400, "the body is " + body.error().message, "body");
    }
    auto parsed = parseOrderRequest(*body);
    if (auto* fe = std::get_if<FieldError>(&parsed)) {
      ++stats_.orders_invalid;
      return res.error(400, fe->message, fe->field);
    }
    uint64_t started = uv_hrtime();
    auto order = std::make_shared<OrderRequest>(std::move(std::get<OrderRequest>(parsed)));
    insertOrder(pool_, *order,
                [this, res, started, order](PlacedOrder o, std::optional<db::DbError> err) mutable {
                  if (err) return dbFailure(res, *err);
                  if (!o.created && !o.same_request) {
                    // As payment APIs do: a key names one request, and a
                    // different body under it is a client bug, not a replay.
                    ++stats_.orders_invalid;
                    return res.error(422,
                                     "idempotency_key was already used for a different order; "
                                     "use a new key for a new order",
                                     "idempotency_key");
                  }
                  uint64_t inserted = uv_hrtime();
                  if (o.created) ++stats_.orders_accepted; else ++stats_.orders_replayed;
                  nlohmann::json out{{"order_id", o.order_id}, {"status", o.status}};
                  if (!o.created) out["replayed"] = true;
                  if (o.status != "pending") {
                    out["job_id"] = nullptr;
                    return res.json(200, out);
                  }
                  // The unique key makes a replay (or a retry after a 503)
                  // return the job already waiting instead of a second one.
                  // The job carries the order, so it can recreate a pending
                  // row lost in a crash (the insert does not wait for a flush).
                  EnqueueOptions opts;
                  opts.unique = orderJobUniqueKey(o);
                  enqueue_(kOrdersQueue, kOrderProcess, orderJobPayload(*order, o), opts,
                           [this, res, out, started, inserted](Result<std::string> id) mutable {
                             if (id) {
                               ++stats_.checkouts_timed;
                               stats_.insert_ns += inserted - started;
                               stats_.enqueue_ns += uv_hrtime() - inserted;
                             }
                             if (!id) {
                               res.header("Retry-After", "1");
                               nlohmann::json e{{"error", "queue unavailable, retry with the same "
                                                          "idempotency_key"},
                                                {"order_id", out["order_id"]}};
                               return res.json(503, e);
                             }
                             out["job_id"] = *id;
                             res.header("Location",
                                        fmt::format("/v1/orders/{}", out["order_id"].get<int64_t>()));
                             res.json(202, out);
                           });
                });
  });

  router.get("/v1/orders/{order_id}", [this](const Request& req, Responder res) {
    auto id = parseId(req.param("order_id"));
    if (!id) return res.error(400, "expected a positive integer order id", "order_id");
    getOrder(pool_, *id, [res](std::optional<nlohmann::json> doc,
                               std::optional<db::DbError> err) mutable {
      if (err) return dbFailure(res, *err);
      res.header("Cache-Control", "no-store");
      if (!doc) return res.error(404, "no such order");
      res.json(200, *doc);
    });
  });

  router.get("/v1/orders", [this](const Request& req, Responder res) {
    auto customer = req.queryParam("customer");
    if (!customer || customer->empty())
      return res.error(400, "required: the customer's email address", "customer");
    int limit = 20;
    if (!intParam(req, "limit", 100, limit, res)) return;
    listCustomerOrders(pool_, *customer, limit,
                       [res](nlohmann::json doc, std::optional<db::DbError> err) mutable {
                         if (err) return dbFailure(res, *err);
                         res.header("Cache-Control", "no-store");
                         res.json(200, doc);
                       });
  });

  int max_age = static_cast<int>(std::max<int64_t>(1, cache_.options().local_ttl.count() / 1000));
  router.get("/v1/products", [this, max_age](const Request& req, Responder res) {
    int page = 1, limit = 20;
    if (!intParam(req, "page", 1'000'000, page, res)) return;
    if (!intParam(req, "limit", 100, limit, res)) return;
    std::string key = ProductCache::listKey(page, limit);
    cache_.get(key, [this, res, key, page, limit, max_age](std::optional<std::string> hit,
                                                         CacheLayer layer) mutable {
      if (hit) return sendCached(res, std::move(*hit), layerName(layer), max_age);
      listProducts(pool_, page, limit,
                   [this, res, key, max_age](nlohmann::json doc,
                                             std::optional<db::DbError> err) mutable {
                     if (err) return dbFailure(res, *err);
                     std::string body = doc.dump();
                     cache_.put(key, body);
                     sendCached(res, std::move(body), "miss", max_age);
                   });
    });
  });

  router.get("/v1/products/{sku}", [this, max_age](const Request& req, Responder res) {
    std::string sku(req.param("sku"));
    if (sku.size() > 64) return res.error(400, "a SKU has at most 64 characters", "sku");
    std::string key = ProductCache::productKey(sku);
    cache_.get(key, [this, res, key, sku, max_age](std::optional<std::string> hit,
                                                   CacheLayer layer) mutable {
      if (hit) return sendCached(res, std::move(*hit), layerName(layer), max_age);
      getProduct(pool_, sku,
                 [this, res, key, max_age](std::optional<nlohmann::json> doc,
                                           std::optional<db::DbError> err) mutable {
                   if (err) return dbFailure(res, *err);
                   if (!doc) return res.error(404, "no such sku");
                   std::string body = doc->dump();
                   cache_.put(key, body);
                   sendCached(res, std::move(body), "miss", max_age);
                 });
    });
  });
}

}  // namespace clusterd::jobs
