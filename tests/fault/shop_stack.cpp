// Implementation of tests/fault/shop_stack.h.
#include "tests/fault/shop_stack.h"

#include <dirent.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <iostream>
#include <sstream>
#include <thread>
#include <tuple>

#include "queue/client.h"
#include "tests/queue/loop_support.h"

namespace clusterd::test::fault {
using namespace std::chrono_literals;

namespace {

std::vector<std::string> splitLines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string l;
  while (std::getline(in, l))
    if (!l.empty()) out.push_back(l);
  return out;
}

std::set<std::string> asSet(const std::string& text) {
  auto v = splitLines(text);
  return {v.begin(), v.end()};
}

std::string key(const std::string& queue, const std::string& name) {
  return "cq:{" + queue + "}:" + name;
}

size_t countOf(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1)) ++n;
  return n;
}

std::vector<std::string> listDir(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') out.push_back(e->d_name);
    closedir(d);
  }
  return out;
}

std::string sku(int n) {
  return fmt::format("SKU-{:06}", n);
}

}  // namespace

ShopStack::ShopStack(RedisServer::Options redis_options, int products_, int stock_)
    : redis(std::move(redis_options)), products(products_), stock(stock_) {
  auto m = runClusterd({"db", "migrate", "--postgres", pg.url()});
  REQUIRE(m.exit_code == 0);
  auto s = runClusterd({"db", "seed", "--products", std::to_string(products), "--stock",
                        std::to_string(stock), "--postgres", pg.url()});
  REQUIRE(s.exit_code == 0);
  // Short leases and quick retries, so that what a fault interrupts comes
  // back within the test; completed jobs are all kept for the accounting.
  // The sweeper runs every second for orders pending over 5 s.
  std::string queue_defaults =
      "{attempts: 12, backoff: 100ms, backoff_type: exponential, lease: 2s, "
      "keep_completed: 1000000, keep_completed_age: 1h}";
  ecosystem = home.file("fault.yaml");
  writeFile(ecosystem,
            fmt::format(R"(apps:
  - name: api
    script: builtin:worker
    exec_mode: cluster
    instances: 1
    listen: 127.0.0.1:{api_port}
    kill_timeout: 5s
  - name: jobs
    script: builtin:worker
    exec_mode: cluster
    instances: 2
    listen: 127.0.0.1:{jobs_port}
    kill_timeout: 5s
    queues:
      orders: 16
      inventory: 8
      email: 4
    env:
      CLUSTERD_ORDER_SWEEP_INTERVAL: 1s
      CLUSTERD_ORDER_SWEEP_GRACE: 5s
queue:
  redis_url: {redis}
  queues:
    orders: {defaults}
    inventory: {defaults}
    email: {defaults}
postgres:
  url: {pg}
  pool_size: 4
mail:
  transport: maildir
  maildir: {home}/mail
  from: shop@fault.test
)",
                        fmt::arg("api_port", api_port), fmt::arg("jobs_port", jobs_port),
                        fmt::arg("redis", redis.url()), fmt::arg("pg", pg.url()),
                        fmt::arg("defaults", queue_defaults), fmt::arg("home", home.path())));
}

std::unique_ptr<Child> ShopStack::spawn(const std::string& app) {
  int n = spawned_++;
  std::string log = home.file(fmt::format("{}-{}.log", app, n));
  auto child = std::make_unique<Child>(
      std::vector<std::string>{CLUSTERD_BIN, "worker", "--ecosystem", ecosystem, "--app", app}, env(), log);
  logs_[child->pid()] = log;
  return child;
}

void ShopStack::checkExitsCleanly(Child& worker) const {
  int status = worker.wait(15s);
  std::string out;
  if (auto it = logs_.find(worker.pid()); it != logs_.end()) out = readFile(it->second);
  if (out.size() > 6000) out = "..." + out.substr(out.size() - 6000);
  INFO("wait status " << status << "; the worker's output ends with:\n" << out);
  CHECK(status == 0);
}

std::string ShopStack::apiUrl(const std::string& path) const {
  return fmt::format("http://127.0.0.1:{}{}", api_port, path);
}

std::map<std::string, std::string> ShopStack::env() const {
  return {{"CLUSTERD_HOME", home.path()}};
}

void ShopStack::waitAccepting(int port) const {
  REQUIRE(waitFor([&] { return tcpConnects(port); }, 30s));
}

std::string ShopStack::orderSku(int i) const {
  return sku(i % (products / 2) + 1);
}

std::string ShopStack::inventorySku(int i) const {
  return sku(products / 2 + i % (products - products / 2) + 1);
}

std::vector<HttpRequest> checkoutRequests(const ShopStack& st, int count) {
  std::vector<HttpRequest> reqs;
  for (int i = 0; i < count; ++i) {
    nlohmann::json lines = nlohmann::json::array();
    lines.push_back({{"sku", st.orderSku(i)}, {"qty", 1 + i % 3}});
    if (i % 2) lines.push_back({{"sku", st.orderSku(i * 7 + 3)}, {"qty", 1}});
    nlohmann::json body{{"customer", fmt::format("c{}@fault.test", i)},
                        {"lines", lines},
                        {"idempotency_key", fmt::format("fault-{}", i)}};
    reqs.push_back({"POST", st.apiUrl("/v1/orders"), body.dump()});
  }
  return reqs;
}

int retryUnaccepted(const ShopStack& st, const std::vector<HttpRequest>& requests,
                    std::vector<HttpResponse>& responses, int rounds) {
  std::set<size_t> retried;
  for (int round = 0; round < rounds; ++round) {
    std::vector<size_t> failed;
    for (size_t i = 0; i < responses.size(); ++i)
      if (responses[i].status != 202 && responses[i].status != 200) failed.push_back(i);
    if (failed.empty()) break;
    retried.insert(failed.begin(), failed.end());
    st.waitAccepting(st.api_port);
    if (round > 0) std::this_thread::sleep_for(500ms);  // a 503 comes with Retry-After
    std::vector<HttpRequest> again;
    for (size_t i : failed) again.push_back(requests[i]);
    auto r = httpRun(again, 20);
    for (size_t k = 0; k < failed.size(); ++k) responses[failed[k]] = r[k];
  }
  return static_cast<int>(retried.size());
}

std::string inventoryPayload(const ShopStack& st, int i) {
  return nlohmann::json{{"adjustments", {{{"sku", st.inventorySku(i)}, {"delta", 1}}}}}.dump();
}

QueueAccount accountQueue(ShopStack& st, const std::string& q) {
  auto& r = st.redis;
  QueueAccount a;
  a.completed = asSet(r.command({"ZRANGE", key(q, "completed"), "0", "-1"}));
  a.dead = asSet(r.command({"ZRANGE", key(q, "dead"), "0", "-1"}));
  a.active = asSet(r.command({"HKEYS", key(q, "active")}));
  for (auto& id : asSet(r.command({"LRANGE", key(q, "wait"), "0", "-1"}))) a.waiting.insert(id);
  for (auto& id : asSet(r.command({"ZRANGE", key(q, "prio"), "0", "-1"}))) a.waiting.insert(id);
  for (auto& id : asSet(r.command({"ZRANGE", key(q, "delayed"), "0", "-1"}))) a.waiting.insert(id);
  a.leases = std::stoll(r.command({"ZCARD", key(q, "leases")}));
  auto stats = splitLines(r.command({"HGETALL", key(q, "stats")}));
  for (size_t i = 0; i + 1 < stats.size(); i += 2) a.stats[stats[i]] = std::stoll(stats[i + 1]);
  // A redelivery whose effects were committed completes with the note the
  // handler gave it instead of a result of its own.
  std::string results = r.command({"HVALS", key(q, "results")});
  a.duplicates_prevented = static_cast<int64_t>(countOf(results, "already processed") +
                                                countOf(results, "order already"));
  for (auto& id : a.dead) {
    auto shown = runClusterd({"job", q, id, "--json"}, {.env = {{"CLUSTERD_REDIS_URL", r.url()}}});
    std::string reason;
    if (shown.exit_code == 0) reason = nlohmann::json::parse(shown.out).value("reason", "");
    a.dead_reasons[id] = reason;
  }
  return a;
}

bool waitQueueDrained(ShopStack& st, const std::string& q, std::chrono::seconds limit) {
  return waitFor(
      [&] {
        auto& r = st.redis;
        return r.command({"LLEN", key(q, "wait")}) == "0" &&
               r.command({"ZCARD", key(q, "prio")}) == "0" &&
               r.command({"ZCARD", key(q, "delayed")}) == "0" &&
               r.command({"HLEN", key(q, "active")}) == "0";
      },
      limit);
}

void checkJobsAccounted(const QueueAccount& a, const std::set<std::string>& accepted) {
  size_t lost = 0;
  for (auto& id : accepted) {
    if (a.completed.count(id) || a.dead.count(id)) continue;
    ++lost;
    INFO("accepted job " << id << " is neither completed nor dead");
    CHECK(false);
    if (lost >= 10) break;  // enough to see what happened
  }
  CHECK(lost == 0);
  for (auto& [id, reason] : a.dead_reasons) {
    INFO("dead job " << id);
    CHECK(!reason.empty());
  }
  CHECK(a.active.empty());
  CHECK(a.waiting.empty());
  CHECK(a.leases == 0);
  // Nothing is both completed and dead.
  for (auto& id : a.completed) CHECK(a.dead.count(id) == 0);
}

void checkInventoryExactlyOnce(ShopStack& st, const QueueAccount& a) {
  // Ledger keys are inventory:<id>:<uid>; a multiset, so two rows for one id
  // (an effect applied twice) fail the count below.
  std::multiset<std::string> ledger;
  for (auto& row : st.pg.query("SELECT job_id FROM job_ledger WHERE job_id LIKE 'inventory:%'")) {
    std::string rest = row[0].substr(std::string("inventory:").size());
    ledger.insert(rest.substr(0, rest.find(':')));
  }
  for (auto& id : a.completed) {
    INFO("completed inventory job " << id << " has no ledger row");
    CHECK(ledger.count(id) == 1);
  }
  for (auto& id : ledger) {
    INFO("ledger row of inventory job " << id << ", which is neither completed nor dead");
    CHECK((a.completed.count(id) == 1 || a.dead.count(id) == 1));
  }
  std::string skus;
  for (int i = st.products / 2 + 1; i <= st.products; ++i)
    skus += (skus.empty() ? "'" : ",'") + sku(i) + "'";
  int64_t added = std::stoll(st.pg.scalar(fmt::format(
      "SELECT coalesce(sum(stock - {}), 0) FROM variants WHERE sku IN ({})", st.stock, skus)));
  // Each job adds 1 once: units added = jobs whose effects committed.
  CHECK(added == static_cast<int64_t>(ledger.size()));
}

std::map<int64_t, std::string> acceptedOrders(const std::vector<HttpRequest>& requests,
                                              const std::vector<HttpResponse>& responses) {
  std::map<int64_t, std::string> out;
  for (size_t i = 0; i < responses.size(); ++i) {
    INFO("checkout " << i << ": status " << responses[i].status << " " << responses[i].error
                     << responses[i].body);
    REQUIRE((responses[i].status == 202 || responses[i].status == 200));
    int64_t id = nlohmann::json::parse(responses[i].body).at("order_id").get<int64_t>();
    std::string key = nlohmann::json::parse(requests[i].body).at("idempotency_key");
    // One order id per accepted checkout (and so per idempotency key): an
    // id given out before a PostgreSQL crash is never given out again.
    REQUIRE(out.emplace(id, key).second);
  }
  return out;
}

std::set<std::string> acceptedOrderJobs(const std::vector<HttpResponse>& responses) {
  std::set<std::string> out;
  for (auto& r : responses) {
    auto j = nlohmann::json::parse(r.body);
    if (j.contains("job_id") && j["job_id"].is_string()) out.insert(j["job_id"].get<std::string>());
  }
  return out;
}

bool waitOrdersSettled(ShopStack& st, std::chrono::seconds limit) {
  return waitFor(
      [&] {
        return st.pg.scalar("SELECT count(*) FROM orders WHERE status = 'pending'") == "0" &&
               st.pg.scalar("SELECT count(*) FROM email_outbox WHERE status = 'pending'") == "0";
      },
      limit);
}

std::pair<int64_t, int64_t> checkOrdersAccounted(ShopStack& st,
                                                 const std::map<int64_t, std::string>& accepted) {
  std::map<int64_t, std::pair<std::string, std::string>> rows;  // id -> status, key
  for (auto& r : st.pg.query("SELECT id, status, coalesce(idempotency_key, '') FROM orders"))
    rows[std::stoll(r[0])] = {r[1], r[2]};
  size_t missing = 0;
  for (auto& [id, k] : accepted) {
    auto it = rows.find(id);
    INFO("accepted order " << id << " (" << k << ")");
    if (it == rows.end()) {
      ++missing;
      CHECK(false);
      continue;
    }
    CHECK(it->second.second == k);
    CHECK((it->second.first == "confirmed" || it->second.first == "rejected"));
  }
  CHECK(missing == 0);
  // No order beyond the accepted ones, none pending.
  CHECK(rows.size() == accepted.size());
  int64_t confirmed =
      std::stoll(st.pg.scalar("SELECT count(*) FROM orders WHERE status = 'confirmed'"));
  int64_t rejected =
      std::stoll(st.pg.scalar("SELECT count(*) FROM orders WHERE status = 'rejected'"));
  CHECK(confirmed + rejected == static_cast<int64_t>(rows.size()));

  // Exactly once: per SKU, the stock taken is what the confirmed lines ordered.
  auto stock = st.pg.query(
      "SELECT v.sku, v.stock, coalesce(sum(l.qty) FILTER (WHERE o.status = 'confirmed'), 0)"
      " FROM variants v LEFT JOIN order_lines l ON l.sku = v.sku"
      " LEFT JOIN orders o ON o.id = l.order_id GROUP BY v.sku, v.stock ORDER BY v.sku");
  REQUIRE(stock.size() == static_cast<size_t>(st.products));
  for (int i = 0; i < st.products / 2; ++i) {
    INFO(stock[i][0] << ": stock " << stock[i][1] << ", confirmed " << stock[i][2]);
    CHECK(std::stoll(stock[i][1]) + std::stoll(stock[i][2]) == st.stock);
  }
  // One confirmation per confirmed order, sent, and one file for each.
  CHECK(st.pg.scalar("SELECT count(*) FROM email_outbox") == std::to_string(confirmed));
  CHECK(st.pg.scalar("SELECT count(*) FROM orders o WHERE status = 'confirmed' AND NOT EXISTS"
                     " (SELECT 1 FROM email_outbox e WHERE e.order_id = o.id)") == "0");
  CHECK(st.pg.scalar("SELECT count(*) FROM email_outbox WHERE status <> 'sent'") == "0");
  auto files = listDir(st.home.path() + "/mail/new");
  CHECK(files.size() == static_cast<size_t>(confirmed));
  CHECK(std::set<std::string>(files.begin(), files.end()).size() == files.size());
  return {confirmed, rejected};
}

void report(const std::string& name,
            const std::vector<std::pair<std::string, std::string>>& numbers) {
  std::string line = "fault " + name + ":";
  for (auto& [k, v] : numbers) line += " " + k + "=" + v;
  std::cout << line << std::endl;
}

double secondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::set<std::string> enqueueInventoryJobs(const ShopStack& st, int count) {
  TestLoop loop;
  auto client = queue::Client::create(loop.get(), {.redis_url = st.redis.url()}).value();
  std::vector<queue::NewJob> jobs;
  for (int i = 0; i < count; ++i)
    jobs.push_back({"inventory.adjust", queue::payloadFromJson(nlohmann::json::parse(inventoryPayload(st, i))),
                    {.attempts = 12, .backoff = 100ms}});
  std::optional<Result<std::vector<queue::Enqueued>>> r;
  client->enqueueBulk("inventory", std::move(jobs), [&](auto res) { r.emplace(std::move(res)); });
  REQUIRE(loop.runUntil([&] { return r.has_value(); }, 10s));
  REQUIRE(*r);
  std::set<std::string> ids;
  for (auto& e : **r) ids.insert(e.id);
  return ids;
}

Settled settleAndAccount(ShopStack& st, const std::map<int64_t, std::string>& accepted,
                         const std::vector<HttpResponse>& responses,
                         const std::set<std::string>& accepted_inventory_jobs) {
  REQUIRE(waitOrdersSettled(st, 90s));
  REQUIRE(waitQueueDrained(st, "orders", 60s));
  REQUIRE(waitQueueDrained(st, "inventory", 60s));
  REQUIRE(waitQueueDrained(st, "email", 60s));
  Settled out;
  std::tie(out.confirmed, out.rejected) = checkOrdersAccounted(st, accepted);
  out.orders = accountQueue(st, "orders");
  out.inventory = accountQueue(st, "inventory");
  checkJobsAccounted(out.orders, acceptedOrderJobs(responses));
  checkJobsAccounted(out.inventory, accepted_inventory_jobs);
  checkInventoryExactlyOnce(st, out.inventory);
  return out;
}

}  // namespace clusterd::test::fault
