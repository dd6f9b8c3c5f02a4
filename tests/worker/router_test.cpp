// Unit tests of worker::Router matching and of the small HTTP helpers.
#include <catch2/catch.hpp>

#include "worker/exchange.h"
#include "worker/router.h"

namespace worker_router_test {

using namespace clusterd::worker;

namespace {
Handler noop() {
  return [](const Request&, Responder) {};
}
}  // namespace

TEST_CASE("router matches literal paths and fills parameters", "[worker][router]") {
  Router r;
  r.get("/health", noop());
  r.get("/v1/queues/{queue}/jobs/{id}", noop());
  r.post("/v1/queues/{queue}/jobs", noop());

  auto m = r.match(Method::kGet, "/v1/queues/orders/jobs/42");
  REQUIRE(m.route == 1);
  REQUIRE(m.params.size() == 2);
  CHECK(m.params[0] == std::pair<std::string, std::string>{"queue", "orders"});
  CHECK(m.params[1] == std::pair<std::string, std::string>{"id", "42"});

  CHECK(r.match(Method::kGet, "/health").route == 0);
  CHECK(r.match(Method::kGet, "/health/").route == -1);
  CHECK(r.match(Method::kGet, "/v1/queues//jobs/1").route == -1);
  CHECK(r.match(Method::kGet, "/nothing").path_known == false);
}

TEST_CASE("router prefers literal segments over parameters", "[worker][router]") {
  Router r;
  r.get("/v1/products/{sku}", noop());
  r.get("/v1/products/featured", noop());
  CHECK(r.match(Method::kGet, "/v1/products/featured").route == 1);
  CHECK(r.match(Method::kGet, "/v1/products/SKU-1").route == 0);
}

TEST_CASE("router reports the allowed methods for a known path", "[worker][router]") {
  Router r;
  r.get("/v1/queues/{queue}/jobs/{id}", noop());
  r.post("/v1/queues/{queue}/jobs", noop());
  auto m = r.match(Method::kDelete, "/v1/queues/q/jobs");
  CHECK(m.route == -1);
  CHECK(m.path_known);
  CHECK(m.allow == "POST");
  auto g = r.match(Method::kPut, "/v1/queues/q/jobs/1");
  CHECK(g.allow == "GET, HEAD");
}

TEST_CASE("router serves HEAD from a GET route", "[worker][router]") {
  Router r;
  r.get("/health", noop());
  CHECK(r.match(Method::kHead, "/health").route == 0);
}

TEST_CASE("router replaces a route registered twice", "[worker][router]") {
  Router r;
  r.get("/a", noop());
  r.get("/a", noop());
  CHECK(r.routes().size() == 1);
}

TEST_CASE("Accept-Encoding parsing honours q=0", "[worker][gzip]") {
  CHECK(acceptsGzip("gzip"));
  CHECK(acceptsGzip("deflate, gzip;q=0.5"));
  CHECK(acceptsGzip("*"));
  CHECK_FALSE(acceptsGzip("gzip;q=0"));
  CHECK_FALSE(acceptsGzip("*, gzip;q=0.0"));
  CHECK_FALSE(acceptsGzip("identity"));
  CHECK_FALSE(acceptsGzip(""));
}

TEST_CASE("query parameters are percent-decoded", "[worker][router]") {
  Request req;
  req.query = "page=2&q=red+shoes%21&empty&limit=";
  CHECK(req.queryParam("page") == "2");
  CHECK(req.queryParam("q") == "red shoes!");
  CHECK(req.queryParam("empty") == "");
  CHECK(req.queryParam("limit") == "");
  CHECK_FALSE(req.queryParam("missing").has_value());
}

}  // namespace worker_router_test
