// The worker's guards and lifecycle with real processes: bearer auth on
// /v1/, rate limits shared by two workers through Redis, a graceful drain
// under a bounded load loop (no failed request, no lost job), and the
// READY/CLUSTERD_STATS reports as the master shows them.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "tests/support/servers.h"
#include "tests/worker/http_client.h"

namespace worker_lifecycle_test {

using namespace clusterd::test;
using namespace std::chrono_literals;
using nlohmann::json;

TEST_CASE("/v1/ needs the bearer token from the environment but /health and /metrics do not", "[worker][auth]") {
  RedisServer redis;
  WorkerProcess w({"--redis", redis.url(), "--auth-token-env", "API_TOKEN", "--job-api", "q=*"},
                  {{"API_TOKEN", "s3cret-token"}});
  const std::string job = R"({"name":"x"})";
  auto none = httpPost(w.port(), "/v1/queues/q/jobs", job);
  REQUIRE(none);
  CHECK(none->status == 401);
  CHECK(none->header("www-authenticate") == "Bearer");
  for (std::string bad : {"Bearer wrong", "Bearer s3cret-toke", "Bearer s3cret-token2", "s3cret-token",
                          "Basic czNjcmV0LXRva2Vu"}) {
    auto r = httpPost(w.port(), "/v1/queues/q/jobs", job, "Authorization: " + bad + "\r\n");
    REQUIRE(r);
    CHECK(r->status == 401);
  }
  auto ok = httpPost(w.port(), "/v1/queues/q/jobs", job, "Authorization: Bearer s3cret-token\r\n");
  REQUIRE(ok);
  CHECK(ok->status == 202);
  CHECK(httpGet(w.port(), "/v1/queues", "Authorization: Bearer s3cret-token\r\n")->status == 200);
  CHECK(httpGet(w.port(), "/v1/queues")->status == 401);
  CHECK(httpGet(w.port(), "/health")->status == 200);
  CHECK(httpGet(w.port(), "/metrics")->status == 200);
  // Only the authorised request reached Redis.
  CHECK(redis.command({"SCARD", "cq:queues"}) == "1");
}

TEST_CASE("an auth_token_env naming an empty variable is a usage error", "[worker][auth]") {
  auto r = runClusterd({"worker", "--listen", "127.0.0.1:0", "--auth-token-env", "NO_SUCH_TOKEN_VAR"},
                       {.timeout = 10s});
  CHECK(r.exit_code == 100);
  CHECK(r.err.find("NO_SUCH_TOKEN_VAR") != std::string::npos);
}

TEST_CASE("rate limits are shared by two worker processes through Redis", "[worker][rate-limit]") {
  RedisServer redis;
  std::vector<std::string> args = {
      "--redis",      redis.url(),  "--job-api",    "strict=*",
      "--rate-limit", "/v1/=10/1m", "--rate-limit", "POST /v1/queues/strict/jobs=2/5m"};
  WorkerProcess a(args), b(args);
  int passed = 0, limited = 0;
  int64_t last_remaining = 11;
  for (int i = 0; i < 14; ++i) {
    WorkerProcess& w = i % 2 == 0 ? a : b;
    auto r = httpGet(w.port(), "/v1/queues");
    REQUIRE(r);
    CHECK(r->header("x-ratelimit-limit") == "10");
    REQUIRE(!r->header("x-ratelimit-reset").empty());
    CHECK(std::stoll(r->header("x-ratelimit-reset")) <= 60);
    if (r->status == 200) {
      ++passed;
      int64_t remaining = std::stoll(r->header("x-ratelimit-remaining"));
      CHECK(remaining < last_remaining);
      last_remaining = remaining;
    } else {
      CHECK(r->status == 429);
      ++limited;
      CHECK(r->header("x-ratelimit-remaining") == "0");
      int64_t retry = std::stoll(r->header("retry-after"));
      CHECK(retry >= 1);
      CHECK(retry <= 120);
    }
  }
  CHECK(passed == 10);
  CHECK(limited == 4);
  // /health and /metrics are never limited.
  for (int i = 0; i < 5; ++i) CHECK(httpGet(a.port(), "/health")->status == 200);
  // The more specific tier applies on its own route, with its own budget.
  for (int i = 0; i < 3; ++i) {
    auto r = httpPost(i % 2 ? a.port() : b.port(), "/v1/queues/strict/jobs", R"({"name":"x"})");
    REQUIRE(r);
    CHECK(r->header("x-ratelimit-limit") == "2");
    CHECK(r->status == (i < 2 ? 202 : 429));
  }
  // Both workers counted the refusals.
  auto metric = [](WorkerProcess& w) {
    std::string body = httpGet(w.port(), "/metrics")->body;
    size_t p = body.find("\nclusterd_http_rate_limited_total ");
    REQUIRE(p != std::string::npos);
    return std::stoi(body.substr(p + 34));
  };
  CHECK(metric(a) + metric(b) == 5);
}

namespace {

// Keep-alive POST load on `clients` connections to one port until stopped
// or `max_requests` in all. A request fails when no complete 202 arrives;
// a connection the server closes with `Connection: close` is reopened.
// A draining worker closes a keep-alive connection that stayed idle for
// drain_idle_ms, and a request sent as that close is under way is never
// read: HTTP clients resend a request that found a reused connection closed
// (RFC 9112, 9.3.1). This one does so once, on a new connection; the job's
// unique key makes the resend safe even had the first copy been read.
class EnqueueLoad {
 public:
  EnqueueLoad(int port, int clients, int max_requests) : port_(port), max_(max_requests) {
    for (int i = 0; i < clients; ++i) threads_.emplace_back([this] { run(); });
  }
  ~EnqueueLoad() { stop(); }
  void stop() {
    stop_ = true;
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }
  int sent() const { return sent_; }
  int failed() const { return failed_; }
  int resent() const { return resent_; }
  std::set<std::string> ids() {
    std::lock_guard<std::mutex> l(mu_);
    return ids_;
  }

 private:
  void run() {
    std::unique_ptr<HttpConn> c;
    bool reused = false;  // c has answered a request before
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!stop_ && std::chrono::steady_clock::now() < deadline) {
      int n = sent_.fetch_add(1);
      if (n >= max_) break;
      std::string request = postRequest(
          "/v1/queues/drain/jobs",
          json{{"name", "sleep"}, {"data", {{"ms", 10}}}, {"unique", "load-" + std::to_string(n)}}.dump());
      auto attempt = [&]() -> std::optional<HttpResponse> {
        if (!c || !c->connected()) {
          c = std::make_unique<HttpConn>(port_);
          reused = false;
        }
        auto r = c->send(request) ? c->read(10s) : std::nullopt;
        if (!r) c.reset();
        return r;
      };
      bool was_reused = c && c->connected() && reused;
      auto r = attempt();
      if (!r && was_reused) {
        ++resent_;
        r = attempt();
      }
      if (!r || r->status != 202) {
        ++failed_;
        c.reset();
        continue;
      }
      reused = true;
      {
        std::lock_guard<std::mutex> l(mu_);
        ids_.insert(json::parse(r->body)["id"].get<std::string>());
      }
      if (r->header("connection") == "close") c.reset();
      std::this_thread::sleep_for(3ms);  // about 300 requests/s per client
    }
  }
  int port_;
  int max_;
  std::atomic<bool> stop_{false};
  std::atomic<int> sent_{0}, failed_{0}, resent_{0};
  std::mutex mu_;
  std::set<std::string> ids_;
  std::vector<std::thread> threads_;
};

}  // namespace

TEST_CASE("SIGTERM under load drains with no failed request and no lost job and exits 0", "[worker][drain]") {
  RedisServer redis;
  int port = 0;
  int fd = inheritableListener(port);
  std::vector<std::string> args = {"--redis",        redis.url(), "--queues",  "drain:16",
                                   "--kill-timeout", "3s",        "--job-api", "drain=*"};
  auto a = std::make_unique<WorkerProcess>(fd, args);
  WorkerProcess b(fd, args);
  ::close(fd);

  EnqueueLoad load(port, 6, 20000);
  REQUIRE(waitFor([&] { return load.sent() > 300; }, 15s));
  // Worker a holds requests and running jobs right now.
  REQUIRE(a->terminate(10s) == 0);
  int after = load.sent();
  REQUIRE(waitFor([&] { return load.sent() > after + 200; }, 15s));
  load.stop();
  INFO("requests resent after a reused connection closed: " << load.resent());
  CHECK(load.failed() == 0);
  std::string log = a->log();
  INFO(log);
  CHECK(log.find("drained") != std::string::npos);

  // Every acknowledged job runs to completion on the remaining worker
  // (jobs a still held were finished or released, none left active).
  auto ids = load.ids();
  REQUIRE(ids.size() > 500);
  REQUIRE(waitFor([&] {
    auto r = httpGet(port, "/v1/queues");
    if (!r || r->status != 200) return false;
    json q = json::parse(r->body);
    return q.size() == 1 && q[0]["waiting"] == 0 && q[0]["active"] == 0 && q[0]["delayed"] == 0;
  }, 60s));
  json q = json::parse(httpGet(port, "/v1/queues")->body);
  CHECK(q[0]["dead"] == 0);
  CHECK(q[0]["completed"] == static_cast<int64_t>(ids.size()));
  CHECK(q[0]["enqueued"] == static_cast<int64_t>(ids.size()));
}

TEST_CASE("the master shows the built-in worker's READY and CLUSTERD_STATS in status and describe", "[worker][stats]") {
  RedisServer redis;
  TempDir home("clusterd-stats");
  int port = reservedTcpPort();
  writeFile(home.file("eco.yaml"),
            "apps:\n"
            "  - name: api\n"
            "    script: builtin:worker\n"
            "    exec_mode: cluster\n"
            "    instances: 2\n"
            "    listen: 127.0.0.1:" +
                std::to_string(port) +
                "\n"
                "    wait_ready: true\n"
                "    queues:\n"
                "      stats: 4\n"
                "    http:\n"
                "      job_api:\n"
                "        queues:\n"
                "          stats: ['*']\n"
                "queue:\n"
                "  redis_url: " +
                redis.url() + "\n");
  RunOptions env{.env = {{"CLUSTERD_HOME", home.path()}}, .timeout = 30s};
  struct Stopper {
    RunOptions env;
    ~Stopper() { runClusterd({"kill"}, env); }
  } stopper{env};
  auto started = runClusterd({"start", home.file("eco.yaml")}, env);
  INFO(started.out << started.err);
  REQUIRE(started.exit_code == 0);

  auto status = [&] {
    auto r = runClusterd({"status", "--json"}, env);
    REQUIRE(r.exit_code == 0);
    return json::parse(r.out);
  };
  // READY=1 arrives only once the worker listens and reached Redis.
  REQUIRE(waitFor([&] {
    json s = status();
    int online = 0;
    for (auto& w : s) online += w["state"] == "online";
    return online == 2;
  }, 20s));

  json batch = json::array();
  for (int i = 0; i < 40; ++i) batch.push_back({{"name", "noop"}});
  auto r = httpPost(port, "/v1/queues/stats/jobs", batch.dump());
  REQUIRE(r);
  REQUIRE(r->status == 202);

  // Stats arrive every second; both workers' jobs_done add up to 40.
  json rows;
  REQUIRE(waitFor([&] {
    rows = status();
    int64_t done = 0;
    for (auto& w : rows) {
      if (!w["stats"].is_object()) return false;
      done += w["stats"]["jobs_done"].get<int64_t>();
    }
    return done == 40;
  }, 20s));
  int64_t requests = 0;
  for (auto& w : rows) {
    const json& st = w["stats"];
    for (const char* key : {"requests", "jobs_done", "jobs_failed", "in_flight", "loop_lag_ms", "rss"})
      CHECK(st.contains(key));
    CHECK(st["rss"].get<int64_t>() > 1'000'000);
    CHECK(st["jobs_failed"] == 0);
    requests += st["requests"].get<int64_t>();
  }
  CHECK(requests >= 1);
  auto describe = runClusterd({"describe", "api"}, env);
  REQUIRE(describe.exit_code == 0);
  CHECK(describe.out.find("stats: {") != std::string::npos);
  CHECK(describe.out.find("\"jobs_done\"") != std::string::npos);
}

TEST_CASE("the --queues flag without any Redis URL is a usage error", "[worker][cli]") {
  auto r = runClusterd({"worker", "--listen", "127.0.0.1:0", "--queues", "q"},
                       {.env = {{"CLUSTERD_REDIS_URL", ""}}, .timeout = 10s});
  CHECK(r.exit_code == 100);
  CHECK(r.err.find("--queues needs Redis") != std::string::npos);
}

TEST_CASE("clusterd worker --help lists the options with examples and exit codes", "[worker][cli]") {
  auto r = runClusterd({"worker", "--help"});
  CHECK(r.exit_code == 0);
  for (const char* text :
       {"--listen", "--health-listen", "--queues", "--concurrency", "--ecosystem", "--app",
        "--max-body", "--kill-timeout", "--auth-token-env", "--rate-limit", "--access-log",
        "Examples:", "Exit codes:", "SIGTERM", "runs only its\nconsumers",
        "--queues orders:50 --redis redis://127.0.0.1:6379 --health-listen"})
    CHECK(r.out.find(text) != std::string::npos);
}

}  // namespace worker_lifecycle_test
