// End to end over HTTP: standalone `clusterd worker` processes sharing one
// port serve the shop API and consume the orders and email queues, against
// real Redis and Postgres, while the test SIGKILLs them at random.
#include <catch2/catch.hpp>

#include <dirent.h>
#include <signal.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "tests/jobs/http_client.h"
#include "tests/support/process.h"
#include "tests/support/servers.h"

namespace jobs_e2e_test {

using namespace clusterd::test;
using namespace std::chrono_literals;

namespace {

struct Stack {
  RedisServer redis;
  PostgresServer pg;
  TempDir home{"clusterd-shop"};
  int port = reservedTcpPort();
  std::vector<std::unique_ptr<Child>> workers;
  int spawned = 0;

  Stack(int products, int stock) {
    auto m = runClusterd({"db", "migrate", "--postgres", pg.url()});
    REQUIRE(m.exit_code == 0);
    auto s = runClusterd({"db", "seed", "--products", std::to_string(products), "--stock",
                          std::to_string(stock), "--postgres", pg.url()});
    REQUIRE(s.exit_code == 0);
  }

  std::unique_ptr<Child> spawn() {
    int n = spawned++;
    return std::make_unique<Child>(
        std::vector<std::string>{CLUSTERD_BIN, "worker", "--listen",
                                 "127.0.0.1:" + std::to_string(port), "--queues",
                                 "orders:16,email:4", "--redis", redis.url(), "--postgres",
                                 pg.url()},
        std::map<std::string, std::string>{{"CLUSTERD_HOME", home.path()}},
        home.file("worker-" + std::to_string(n) + ".log"));
  }

  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port) + path;
  }
};

std::vector<std::string> listDir(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') out.push_back(e->d_name);
    closedir(d);
  }
  return out;
}

}  // namespace

TEST_CASE("2000 orders from 100 clients while workers are SIGKILLed: each applied exactly once",
          "[jobs][e2e][postgres][redis]") {
  constexpr int kOrders = 2000, kProducts = 40, kStock = 30;
  Stack st(kProducts, kStock);
  for (int i = 0; i < 3; ++i) st.workers.push_back(st.spawn());
  REQUIRE(waitFor([&] { return tcpConnects(st.port); }, 20s));

  std::vector<HttpRequest> reqs;
  for (int i = 0; i < kOrders; ++i) {
    nlohmann::json body{{"customer", fmt::format("c{}@example.com", i)},
                        {"lines",
                         {{{"sku", fmt::format("SKU-{:06}", i % kProducts + 1)}, {"qty", 1 + i % 2}},
                          {{"sku", fmt::format("SKU-{:06}", (i * 7) % kProducts + 1)}, {"qty", 1}}}},
                        {"idempotency_key", fmt::format("k{}", i)}};
    reqs.push_back({"POST", st.url("/v1/orders"), body.dump()});
  }

  std::atomic<bool> loading{true};
  std::vector<HttpResponse> resp;
  std::thread load([&] {
    resp = httpRun(reqs, 100);
    loading = false;
  });
  // Kill a random worker every 150 ms while the load runs (at most 12 kills).
  std::mt19937 rng(42);
  int kills = 0;
  while (loading && kills < 12) {
    std::this_thread::sleep_for(150ms);
    auto& victim = st.workers[rng() % st.workers.size()];
    victim->signal(SIGKILL);
    victim->wait(5s);
    victim = st.spawn();
    ++kills;
  }
  load.join();
  CHECK(kills > 0);
  size_t first_failures = 0;
  for (auto& r : resp) first_failures += (r.status != 202 && r.status != 200);
  INFO("workers killed: " << kills << ", requests to retry: " << first_failures);

  // Clients retry what failed with the same idempotency key, as they should.
  std::map<int64_t, int> accepted;  // order id -> request index
  for (int round = 0; round < 10; ++round) {
    std::vector<size_t> failed;
    std::vector<HttpRequest> again;
    for (size_t i = 0; i < resp.size(); ++i) {
      if (resp[i].status == 202 || resp[i].status == 200) continue;
      failed.push_back(i);
    }
    if (failed.empty()) break;
    REQUIRE(waitFor([&] { return tcpConnects(st.port); }, 10s));
    for (size_t i : failed) again.push_back(reqs[i]);
    auto r = httpRun(again, 50);
    for (size_t k = 0; k < failed.size(); ++k) resp[failed[k]] = r[k];
  }
  for (size_t i = 0; i < resp.size(); ++i) {
    INFO("request " << i << " status " << resp[i].status << " " << resp[i].error << resp[i].body);
    REQUIRE((resp[i].status == 202 || resp[i].status == 200));
    auto j = nlohmann::json::parse(resp[i].body);
    int64_t id = j["order_id"].get<int64_t>();
    // One idempotency key, one order.
    REQUIRE(accepted.emplace(id, static_cast<int>(i)).second);
  }
  auto& pg = st.pg;
  CHECK(pg.scalar("SELECT count(*) FROM orders") == std::to_string(kOrders));

  // Every accepted order gets processed, despite the kills (leases expire and
  // the jobs run again on a live worker).
  REQUIRE(waitFor([&] { return pg.scalar("SELECT count(*) FROM orders WHERE status = 'pending'") == "0"; },
                  90s));
  // Exactly once: the stock taken equals what the confirmed lines ordered.
  auto rows = pg.query(
      "SELECT v.sku, v.stock, coalesce(sum(l.qty) FILTER (WHERE o.status = 'confirmed'), 0)"
      " FROM variants v LEFT JOIN order_lines l ON l.sku = v.sku"
      " LEFT JOIN orders o ON o.id = l.order_id GROUP BY v.sku, v.stock");
  REQUIRE(rows.size() == static_cast<size_t>(kProducts));
  for (auto& r : rows) {
    INFO(r[0]);
    CHECK(std::stoll(r[1]) + std::stoll(r[2]) == kStock);
  }
  std::string confirmed = pg.scalar("SELECT count(*) FROM orders WHERE status = 'confirmed'");
  CHECK(std::stoi(confirmed) > 0);
  CHECK(pg.scalar("SELECT count(*) FROM orders WHERE status = 'rejected'") != "0");
  CHECK(pg.scalar("SELECT count(*) FROM email_outbox") == confirmed);

  // One email per confirmed order in the maildir, no more, no fewer.
  REQUIRE(waitFor([&] { return pg.scalar("SELECT count(*) FROM email_outbox WHERE status <> 'sent'") == "0"; },
                  60s));
  auto files = listDir(st.home.path() + "/mail/new");
  CHECK(files.size() == static_cast<size_t>(std::stoi(confirmed)));
  std::set<std::string> distinct(files.begin(), files.end());
  CHECK(distinct.size() == files.size());
  for (auto& w : st.workers) w->signal(SIGTERM);
  for (auto& w : st.workers) CHECK(w->wait(15s) == 0);
}

}  // namespace jobs_e2e_test
