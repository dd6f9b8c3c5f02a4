// Who may use a real `clusterd worker`'s job API, and what its answers and
// limits show: off unless configured, only the listed queues and job names,
// a bearer token unless on loopback, no credentials in 503 or /health
// bodies, a nesting limit on bodies, and clients behind trusted proxies
// counted by their own address.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "tests/support/servers.h"
#include "tests/worker/http_client.h"

namespace worker_job_api_access_test {

using namespace clusterd::test;
using namespace std::chrono_literals;
using nlohmann::json;

TEST_CASE("the job API is off unless configured", "[worker][job-api]") {
  RedisServer redis;
  WorkerProcess w({"--redis", redis.url()});
  auto post = httpPost(w.port(), "/v1/queues/orders/jobs",
                       R"({"name":"order.process","data":{"order_id":1}})");
  REQUIRE(post);
  CHECK(post->status == 404);
  CHECK(httpGet(w.port(), "/v1/queues")->status == 404);
  CHECK(httpGet(w.port(), "/v1/queues/orders/jobs/1")->status == 404);
  CHECK(redis.command({"SCARD", "cq:queues"}) == "0");
}

TEST_CASE("the job API takes only the queues and job names it lists", "[worker][job-api]") {
  RedisServer redis;
  WorkerProcess w(
      {"--redis", redis.url(), "--job-api", "mail=welcome,reset", "--job-api", "any=*"});
  CHECK(httpPost(w.port(), "/v1/queues/mail/jobs", R"({"name":"welcome"})")->status == 202);
  CHECK(httpPost(w.port(), "/v1/queues/any/jobs", R"({"name":"whatever"})")->status == 202);

  auto name =
      httpPost(w.port(), "/v1/queues/mail/jobs", R"({"name":"sleep","data":{"ms":600000}})");
  REQUIRE(name);
  CHECK(name->status == 403);
  CHECK(json::parse(name->body)["field"] == "name");

  auto queue = httpPost(w.port(), "/v1/queues/invented-1/jobs", R"({"name":"welcome"})");
  REQUIRE(queue);
  CHECK(queue->status == 403);
  CHECK(json::parse(queue->body)["field"] == "queue");
  CHECK(httpGet(w.port(), "/v1/queues/invented-1/jobs/1")->status == 403);

  // An array with one job the list does not allow enqueues none of them.
  auto mixed =
      httpPost(w.port(), "/v1/queues/mail/jobs", R"([{"name":"reset"},{"name":"order.process"}])");
  REQUIRE(mixed);
  CHECK(mixed->status == 403);
  CHECK(json::parse(mixed->body)["field"] == "[1].name");

  // Only the listed queues exist in Redis, and only they are listed.
  CHECK(redis.command({"SCARD", "cq:queues"}) == "2");
  json list = json::parse(httpGet(w.port(), "/v1/queues")->body);
  CHECK(list.size() == 2);
}

TEST_CASE("the job API needs a bearer token unless it listens on loopback only",
          "[worker][job-api][auth]") {
  RedisServer redis;
  int port = reservedTcpPort();
  auto open = runClusterd({"worker", "--listen", "0.0.0.0:" + std::to_string(port), "--redis",
                           redis.url(), "--job-api", "q=*"},
                          {.timeout = 20s});
  CHECK(open.exit_code == 111);
  CHECK(open.err.find("token") != std::string::npos);

  // A worker app in an ecosystem file: `clusterd validate` says the same.
  TempDir dir("clusterd-job-api");
  writeFile(dir.file("eco.yaml"),
            "apps:\n"
            "  - name: api\n"
            "    script: builtin:worker\n"
            "    listen: 0.0.0.0:" +
                std::to_string(port) +
                "\n"
                "    http:\n"
                "      job_api:\n"
                "        queues:\n"
                "          q: ['*']\n"
                "queue:\n"
                "  redis_url: " +
                redis.url() + "\n");
  auto validated = runClusterd({"validate", dir.file("eco.yaml")}, {.timeout = 20s});
  CHECK(validated.exit_code != 0);
  CHECK((validated.out + validated.err).find("job_api") != std::string::npos);

  // With a token (from a file here), requests without it get 401.
  writeFile(dir.file("token"), "t0ken-from-a-file\n");
  WorkerProcess w(
      {"--redis", redis.url(), "--job-api", "q=*", "--job-api-token-file", dir.file("token")});
  auto none = httpPost(w.port(), "/v1/queues/q/jobs", R"({"name":"x"})");
  REQUIRE(none);
  CHECK(none->status == 401);
  CHECK(none->header("www-authenticate") == "Bearer");
  CHECK(
      httpPost(w.port(), "/v1/queues/q/jobs", R"({"name":"x"})", "Authorization: Bearer wrong\r\n")
          ->status == 401);
  CHECK(httpGet(w.port(), "/v1/queues")->status == 401);
  auto ok = httpPost(w.port(), "/v1/queues/q/jobs", R"({"name":"x"})",
                     "Authorization: Bearer t0ken-from-a-file\r\n");
  REQUIRE(ok);
  CHECK(ok->status == 202);
  CHECK(w.log().find("t0ken-from-a-file") == std::string::npos);

  auto empty = runClusterd({"worker", "--listen", "127.0.0.1:0", "--redis", redis.url(),
                            "--job-api", "q=*", "--job-api-token-env", "NO_SUCH_JOB_TOKEN"},
                           {.timeout = 10s});
  CHECK(empty.exit_code == 100);
  CHECK(empty.err.find("NO_SUCH_JOB_TOKEN") != std::string::npos);
}

TEST_CASE("503 and /health bodies never show the Redis URL or its password",
          "[worker][job-api][health]") {
  int dead = reservedTcpPort();  // nothing listens there
  std::string url = "redis://:hunter2-secret@127.0.0.1:" + std::to_string(dead);
  WorkerProcess w({"--redis", url, "--job-api", "q=*", "--ready-wait", "100ms"});
  auto post = httpPost(w.port(), "/v1/queues/q/jobs", R"({"name":"x"})");
  REQUIRE(post);
  CHECK(post->status == 503);
  CHECK(post->body.find("hunter2") == std::string::npos);
  CHECK(post->body.find(std::to_string(dead)) == std::string::npos);
  auto health = httpGet(w.port(), "/health");
  REQUIRE(health);
  CHECK(health->status == 503);
  CHECK(json::parse(health->body)["redis"] == "unavailable");
  CHECK(health->body.find("hunter2") == std::string::npos);
  CHECK(w.log().find("hunter2") == std::string::npos);
}

TEST_CASE("a body nested past the limit is a 400 naming it and the worker lives",
          "[worker][job-api][limits]") {
  RedisServer redis;
  WorkerProcess w({"--redis", redis.url(), "--job-api", "q=*", "--max-body", "4M"});
  std::string deep = std::string(1'000'000, '[') + std::string(1'000'000, ']');
  for (const std::string& body :
       {deep, R"({"name":"x","data":)" + std::string(100, '[') + std::string(100, ']') + "}"}) {
    auto r = httpPost(w.port(), "/v1/queues/q/jobs", body);
    REQUIRE(r);
    CHECK(r->status == 400);
    CHECK(json::parse(r->body)["field"] == "body");
    CHECK(r->body.find("64") != std::string::npos);
  }
  // Nesting within the limit is a job like any other.
  auto ok = httpPost(w.port(), "/v1/queues/q/jobs",
                     R"({"name":"x","data":)" + std::string(60, '[') + std::string(60, ']') + "}");
  REQUIRE(ok);
  CHECK(ok->status == 202);
  CHECK(w.child().running());
}

TEST_CASE("behind a trusted proxy each client has its own rate-limit bucket",
          "[worker][rate-limit]") {
  RedisServer redis;
  auto get = [](int port, const std::string& xff) {
    auto r = httpGet(port, "/v1/queues", "X-Forwarded-For: " + xff + "\r\n");
    REQUIRE(r);
    return r->status;
  };
  SECTION("the peer is a listed proxy: X-Forwarded-For names the client") {
    WorkerProcess w({"--redis", redis.url(), "--job-api", "q=*", "--rate-limit", "/v1/=2/1m",
                     "--trusted-proxy", "127.0.0.0/8"});
    CHECK(get(w.port(), "203.0.113.7") == 200);
    CHECK(get(w.port(), "203.0.113.7") == 200);
    CHECK(get(w.port(), "203.0.113.7") == 429);
    CHECK(get(w.port(), "203.0.113.8") == 200);
    // Walked from the right: the spoofed entry a client put first does not
    // count, the one our proxy appended does; trusted hops are skipped.
    CHECK(get(w.port(), "198.51.100.1, 203.0.113.8") == 200);
    CHECK(get(w.port(), "198.51.100.2, 203.0.113.8, 127.0.0.1") == 429);
  }
  SECTION("the peer is not a listed proxy: X-Forwarded-For is ignored") {
    WorkerProcess w({"--redis", redis.url(), "--job-api", "q=*", "--rate-limit", "/v1/=2/1m",
                     "--trusted-proxy", "10.0.0.0/8"});
    CHECK(get(w.port(), "203.0.113.7") == 200);
    CHECK(get(w.port(), "203.0.113.8") == 200);
    CHECK(get(w.port(), "203.0.113.9") == 429);
  }
}

}  // namespace worker_job_api_access_test
