// The shop API over HTTP on a standalone `clusterd worker` process, against
// real Redis and Postgres.
#include <catch2/catch.hpp>

#include <signal.h>

#include <nlohmann/json.hpp>

#include "tests/jobs/http_client.h"
#include "tests/support/process.h"
#include "tests/support/servers.h"

namespace jobs_api_test {

using namespace clusterd::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

struct ApiStack {
  RedisServer redis;
  PostgresServer pg;
  TempDir home{"clusterd-shop"};
  int port = reservedTcpPort();
  std::unique_ptr<Child> worker;

  explicit ApiStack(const std::string& queues = "") {
    REQUIRE(runClusterd({"db", "migrate", "--postgres", pg.url()}).exit_code == 0);
    REQUIRE(runClusterd({"db", "seed", "--products", "45", "--stock", "3", "--postgres", pg.url()})
                .exit_code == 0);
    std::vector<std::string> argv{CLUSTERD_BIN, "worker", "--listen",
                                  "127.0.0.1:" + std::to_string(port), "--redis", redis.url(),
                                  "--postgres", pg.url()};
    if (!queues.empty()) argv.insert(argv.end(), {"--queues", queues});
    worker = std::make_unique<Child>(argv, std::map<std::string, std::string>{{"CLUSTERD_HOME", home.path()}},
                                     home.file("worker.log"));
    REQUIRE(waitFor([&] { return tcpConnects(port); }, 20s));
  }
  ~ApiStack() {
    worker->signal(SIGTERM);
    worker->wait(10s);
  }

  HttpResponse call(const std::string& method, const std::string& path, const std::string& body = "") {
    return httpRun({{method, "http://127.0.0.1:" + std::to_string(port) + path, body}}, 1)[0];
  }
};

}  // namespace

TEST_CASE("POST /v1/orders validates fields, answers 202 and replays an idempotency key",
          "[jobs][api][postgres][redis]") {
  ApiStack s;
  auto bad_json = s.call("POST", "/v1/orders", "{nope");
  CHECK(bad_json.status == 400);
  CHECK(json::parse(bad_json.body)["field"] == "body");
  auto bad_qty = s.call("POST", "/v1/orders",
                        R"({"customer":"a@example.com","lines":[{"sku":"SKU-000001","qty":1},{"sku":"SKU-000002","qty":0}]})");
  CHECK(bad_qty.status == 400);
  CHECK(json::parse(bad_qty.body)["field"] == "lines[1].qty");
  auto bad_customer = s.call("POST", "/v1/orders", R"({"customer":"nobody","lines":[{"sku":"S","qty":1}]})");
  CHECK(json::parse(bad_customer.body)["field"] == "customer");

  std::string order = R"({"customer":"a@example.com","lines":[{"sku":"SKU-000001","qty":2}],"idempotency_key":"k-1"})";
  auto first = s.call("POST", "/v1/orders", order);
  REQUIRE(first.status == 202);
  auto j = json::parse(first.body);
  CHECK(j["status"] == "pending");
  CHECK_FALSE(j["job_id"].get<std::string>().empty());
  auto again = s.call("POST", "/v1/orders", order);
  REQUIRE(again.status == 202);
  auto j2 = json::parse(again.body);
  CHECK(j2["order_id"] == j["order_id"]);
  CHECK(j2["replayed"] == true);
  CHECK(s.pg.scalar("SELECT count(*) FROM orders") == "1");

  auto got = s.call("GET", "/v1/orders/" + std::to_string(j["order_id"].get<int64_t>()));
  REQUIRE(got.status == 200);
  auto doc = json::parse(got.body);
  CHECK(doc["status"] == "pending");
  CHECK(doc["lines"][0]["sku"] == "SKU-000001");
  CHECK(s.call("GET", "/v1/orders/999999").status == 404);
  CHECK(s.call("GET", "/v1/orders/abc").status == 400);
  auto mine = s.call("GET", "/v1/orders?customer=a@example.com");
  REQUIRE(mine.status == 200);
  CHECK(json::parse(mine.body)["orders"].size() == 1);
}

TEST_CASE("an idempotency key replayed with a different order answers 422 and changes nothing",
          "[jobs][api][postgres][redis]") {
  ApiStack s;
  std::string order =
      R"({"customer":"a@example.com","lines":[{"sku":"SKU-000001","qty":2}],"idempotency_key":"k-9"})";
  auto first = s.call("POST", "/v1/orders", order);
  REQUIRE(first.status == 202);
  for (
      std::string other :
      {R"({"customer":"a@example.com","lines":[{"sku":"SKU-000001","qty":3}],"idempotency_key":"k-9"})",
       R"({"customer":"b@example.com","lines":[{"sku":"SKU-000001","qty":2}],"idempotency_key":"k-9"})",
       R"({"customer":"a@example.com","lines":[{"sku":"SKU-000001","qty":2},{"sku":"SKU-000002","qty":1}],"idempotency_key":"k-9"})"}) {
    INFO(other);
    auto r = s.call("POST", "/v1/orders", other);
    CHECK(r.status == 422);
    CHECK(json::parse(r.body)["field"] == "idempotency_key");
  }
  // The same order again is still a replay.
  auto again = s.call("POST", "/v1/orders", order);
  CHECK(again.status == 202);
  CHECK(json::parse(again.body)["replayed"] == true);
  CHECK(s.pg.scalar("SELECT count(*) FROM orders") == "1");
  CHECK(s.pg.scalar("SELECT string_agg(sku || 'x' || qty, ',') FROM order_lines") ==
        "SKU-000001x2");
}

TEST_CASE("GET /v1/products pages the catalogue and serves repeats from the cache",
          "[jobs][api][postgres][redis]") {
  ApiStack s;
  auto p1 = s.call("GET", "/v1/products?page=1&limit=20");
  REQUIRE(p1.status == 200);
  auto j = json::parse(p1.body);
  CHECK(j["total"] == 45);
  CHECK(j["has_next"] == true);
  CHECK(j["products"].size() == 20);
  auto p3 = json::parse(s.call("GET", "/v1/products?page=3&limit=20").body);
  CHECK(p3["products"].size() == 5);
  CHECK(p3["has_next"] == false);
  CHECK(s.call("GET", "/v1/products?limit=1000").status == 400);

  auto one = s.call("GET", "/v1/products/SKU-000007");
  REQUIRE(one.status == 200);
  CHECK(json::parse(one.body)["variants"][0]["sku"] == "SKU-000007");
  CHECK(s.call("GET", "/v1/products/SKU-999999").status == 404);
  // The repeat is a cache hit: it shows in /metrics.
  s.call("GET", "/v1/products/SKU-000007");
  auto metrics = s.call("GET", "/metrics");
  CHECK(metrics.body.find("clusterd_shop_cache_hit_ratio") != std::string::npos);
  CHECK(metrics.body.find("clusterd_shop_cache_lookups_total{result=\"miss\"} 0") == std::string::npos);
  CHECK(s.redis.command({"EXISTS", "clusterd:shop:product:SKU-000007"}) == "1");
}

TEST_CASE("only a worker that runs the shop's jobs prunes the job ledger",
          "[jobs][api][postgres][redis]") {
  {
    ApiStack api;
    // Shop::create has logged where mail goes by the time the port answers.
    REQUIRE(waitFor([&] { return readFile(api.home.file("worker.log")).find("mail goes to") !=
                                 std::string::npos; }, 10s));
    CHECK(readFile(api.home.file("worker.log")).find("ledger pruner") == std::string::npos);
    CHECK(readFile(api.home.file("worker.log")).find("order.process groups") == std::string::npos);
  }
  ApiStack jobs("orders:4");
  CHECK(waitFor([&] { return readFile(jobs.home.file("worker.log")).find("ledger pruner: every") !=
                             std::string::npos; }, 10s));
  // It also says how long its order groups wait (the default).
  CHECK(waitFor(
      [&] {
        return readFile(jobs.home.file("worker.log"))
                   .find("order.process groups wait up to 10 ms") != std::string::npos;
      },
      10s));
}

}  // namespace jobs_api_test
