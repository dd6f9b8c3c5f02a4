// The job API of a real `clusterd worker` on a real Redis: enqueue (one and
// many), field errors, unique keys, job lookup, the queue list (checked
// against `clusterd queues --json`), consuming configured queues with the
// built-in and command handlers, and 503s while Redis is down.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <signal.h>

#include <set>
#include <thread>

#include "tests/support/servers.h"
#include "tests/worker/http_client.h"

namespace worker_queue_api_test {

using namespace clusterd::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

json body(const std::optional<HttpResponse>& r) {
  REQUIRE(r);
  return json::parse(r->body);
}

json getJob(int port, const std::string& queue, const std::string& id) {
  auto r = httpGet(port, "/v1/queues/" + queue + "/jobs/" + id);
  REQUIRE(r);
  REQUIRE(r->status == 200);
  return json::parse(r->body);
}

// `clusterd worker` flags: `redis`, the job API open to any job name of
// `queues`, then `more`.
std::vector<std::string> apiFlags(const RedisServer& redis, const std::vector<std::string>& queues,
                                  const std::vector<std::string>& more = {}) {
  std::vector<std::string> args = {"--redis", redis.url()};
  for (const auto& q : queues) {
    args.push_back("--job-api");
    args.push_back(q + "=*");
  }
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

}  // namespace

TEST_CASE("POST /v1/queues/{queue}/jobs enqueues one job and answers 202 with its id", "[worker][queue-api]") {
  RedisServer redis;
  WorkerProcess w(apiFlags(redis, {"mail"}));
  auto r = httpPost(w.port(), "/v1/queues/mail/jobs",
                    R"({"name":"welcome","data":{"to":"a@example.com","n":[1,2]},"priority":5,"attempts":7})");
  REQUIRE(r);
  CHECK(r->status == 202);
  json j = json::parse(r->body);
  std::string id = j["id"];
  CHECK(j["created"] == true);
  CHECK(r->header("location") == "/v1/queues/mail/jobs/" + id);

  // The queue module reads the record back: msgpack payload and options.
  auto listed = runClusterd({"--redis", redis.url(), "jobs", "mail", "--state", "waiting", "--json"});
  REQUIRE(listed.exit_code == 0);
  json jobs = json::parse(listed.out);
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0]["id"] == id);
  CHECK(jobs[0]["name"] == "welcome");
  CHECK(jobs[0]["payload"] == json::parse(R"({"to":"a@example.com","n":[1,2]})"));
  CHECK(jobs[0]["priority"] == 5);
  CHECK(jobs[0]["attempts"] == 7);

  json got = getJob(w.port(), "mail", id);
  CHECK(got["state"] == "waiting");
  CHECK(got["attempts_made"] == 0);
  CHECK(got["last_error"].is_null());
}

TEST_CASE("an array body enqueues every job and answers their ids in order", "[worker][queue-api]") {
  RedisServer redis;
  WorkerProcess w(apiFlags(redis, {"bulk"}));
  json batch = json::array();
  for (int i = 0; i < 120; ++i) batch.push_back({{"name", "n"}, {"data", {{"i", i}}}});
  batch.push_back({{"name", "later"}, {"delay", "1h"}});
  auto r = httpPost(w.port(), "/v1/queues/bulk/jobs", batch.dump());
  REQUIRE(r);
  REQUIRE(r->status == 202);
  json j = json::parse(r->body);
  REQUIRE(j["ids"].size() == 121);
  CHECK(j["created"].size() == 121);
  CHECK(getJob(w.port(), "bulk", j["ids"][7])["payload"]["i"] == 7);
  CHECK(getJob(w.port(), "bulk", j["ids"][120])["state"] == "delayed");
  json queues = body(httpGet(w.port(), "/v1/queues"));
  REQUIRE(queues.size() == 1);
  CHECK(queues[0]["waiting"] == 120);
  CHECK(queues[0]["delayed"] == 1);
}

TEST_CASE("bad bodies and fields answer 400 naming the field", "[worker][queue-api]") {
  RedisServer redis;
  WorkerProcess w(apiFlags(redis, {"q", "tenant:7." + std::string(119, 'q')}));
  struct Case {
    std::string path, body, field;
  };
  std::vector<Case> cases = {
      {"/v1/queues/q/jobs", "{not json", "body"},
      {"/v1/queues/q/jobs", "[]", "body"},
      {"/v1/queues/q/jobs", "42", "body"},
      {"/v1/queues/q/jobs", R"({"data":{}})", "name"},
      {"/v1/queues/q/jobs", R"({"name":""})", "name"},
      {"/v1/queues/q/jobs", R"({"name":"x","delay":-5})", "delay"},
      {"/v1/queues/q/jobs", R"({"name":"x","delay":"soon"})", "delay"},
      {"/v1/queues/q/jobs", R"({"name":"x","priority":5000})", "priority"},
      {"/v1/queues/q/jobs", R"({"name":"x","priority":"high"})", "priority"},
      {"/v1/queues/q/jobs", R"({"name":"x","attempts":0})", "attempts"},
      {"/v1/queues/q/jobs", R"({"name":"x","unique":7})", "unique"},
      {"/v1/queues/q/jobs", R"({"name":"x","colour":"red"})", "colour"},
      {"/v1/queues/q/jobs", R"([{"name":"a"},{"name":"b","attempts":-1}])", "[1].attempts"},
      {"/v1/queues/q/jobs", R"([{"name":"a"},"b"])", "[1]"},
      {"/v1/queues/bad%20name/jobs", R"({"name":"x"})", "queue"},
      {"/v1/queues/" + std::string(129, 'q') + "/jobs", R"({"name":"x"})", "queue"},
  };
  for (const auto& c : cases) {
    INFO(c.path << " " << c.body);
    auto r = httpPost(w.port(), c.path, c.body);
    REQUIRE(r);
    CHECK(r->status == 400);
    json j = json::parse(r->body);
    CHECK(j["field"] == c.field);
    CHECK(!j["error"].get<std::string>().empty());
  }
  // Nothing from the failed requests was enqueued (the array is all or nothing).
  CHECK(body(httpGet(w.port(), "/v1/queues")).empty());
  // The queue name rule is the queue module's (and the ecosystem file's): up to
  // 128 characters, ':' allowed; the error names the rule.
  auto bad = httpGet(w.port(), "/v1/queues/bad%20name/jobs/1");
  REQUIRE(bad);
  CHECK(bad->status == 400);
  CHECK(json::parse(bad->body)["error"] == "invalid queue name 'bad name': use 1-128 characters of A-Z a-z 0-9 _ . - :");
  std::string longest = "tenant:7." + std::string(119, 'q');
  auto ok = httpPost(w.port(), "/v1/queues/" + longest + "/jobs", R"({"name":"x"})");
  REQUIRE(ok);
  CHECK(ok->status == 202);
}

TEST_CASE("a unique key enqueues once and answers the first id again", "[worker][queue-api]") {
  RedisServer redis;
  WorkerProcess w(apiFlags(redis, {"q"}));
  json a = body(httpPost(w.port(), "/v1/queues/q/jobs", R"({"name":"x","unique":"order-7"})"));
  json b = body(httpPost(w.port(), "/v1/queues/q/jobs", R"({"name":"x","unique":"order-7"})"));
  CHECK(a["created"] == true);
  CHECK(b["created"] == false);
  CHECK(a["id"] == b["id"]);
}

TEST_CASE("GET a job that does not exist answers 404", "[worker][queue-api]") {
  RedisServer redis;
  WorkerProcess w(apiFlags(redis, {"q"}));
  auto r = httpGet(w.port(), "/v1/queues/q/jobs/12345");
  REQUIRE(r);
  CHECK(r->status == 404);
  CHECK(json::parse(r->body)["error"].get<std::string>().find("12345") != std::string::npos);
}

TEST_CASE("a worker accepts no request before its Redis link is up, then answers it",
          "[worker][queue-api]") {
  RedisServer redis;
  redis.kill();
  int port = reservedTcpPort();
  TempDir dir("clusterd-worker");
  Child worker({CLUSTERD_BIN, "worker", "--listen", "127.0.0.1:" + std::to_string(port), "--redis",
                redis.url(), "--ready-wait", "60s", "--job-api", "q=*"},
               {}, dir.file("out.log"));
  // The socket listens (the kernel completes the handshake), but nobody
  // accepts yet: a worker that did would answer this enqueue with a 503.
  REQUIRE(waitFor([&] { return tcpConnects(port); }));
  HttpConn c(port);
  REQUIRE(c.connected());
  REQUIRE(c.send(postRequest("/v1/queues/q/jobs", R"({"name":"x"})")));
  CHECK_FALSE(c.read(500ms).has_value());
  redis.start();
  auto r = c.read(20s);
  INFO(readFile(dir.file("out.log")));
  REQUIRE(r);
  CHECK(r->status == 202);
  worker.signal(SIGTERM);
  CHECK(worker.wait(10s) == 0);
}

TEST_CASE("GET /v1/queues answers the same JSON as clusterd queues --json", "[worker][queue-api]") {
  RedisServer redis;
  WorkerProcess w(apiFlags(redis, {"alpha", "beta"}));
  for (const char* q : {"alpha", "beta", "beta"})
    REQUIRE(httpPost(w.port(), std::string("/v1/queues/") + q + "/jobs", R"({"name":"x"})")->status == 202);
  REQUIRE(runClusterd({"--redis", redis.url(), "queue", "alpha", "pause"}).exit_code == 0);
  json http = body(httpGet(w.port(), "/v1/queues"));
  auto cli = runClusterd({"--redis", redis.url(), "queues", "--json"});
  REQUIRE(cli.exit_code == 0);
  CHECK(http == json::parse(cli.out));
  REQUIRE(http.size() == 2);
  CHECK(http[0]["paused"] == true);
  CHECK(http[1]["waiting"] == 2);
}

TEST_CASE("the --queues flag consumes jobs with the built-in handlers and counts them in /metrics", "[worker][queue-api]") {
  RedisServer redis;
  WorkerProcess w(apiFlags(redis, {"fast", "slow", "other"}, {"--queues", "fast:4,slow:2"}));
  std::vector<std::string> ids;
  json batch = json::array();
  for (int i = 0; i < 30; ++i) batch.push_back({{"name", "noop"}});
  json fast = body(httpPost(w.port(), "/v1/queues/fast/jobs", batch.dump()));
  json slow = body(httpPost(w.port(), "/v1/queues/slow/jobs", R"([{"name":"sleep","data":{"ms":50}},{"name":"sleep","data":{"ms":50}}])"));
  REQUIRE(waitFor([&] {
    for (const auto& id : fast["ids"])
      if (getJob(w.port(), "fast", id)["state"] != "completed") return false;
    for (const auto& id : slow["ids"])
      if (getJob(w.port(), "slow", id)["state"] != "completed") return false;
    return true;
  }));
  auto m = httpGet(w.port(), "/metrics");
  REQUIRE(m);
  INFO(m->body);
  CHECK(m->body.find("clusterd_worker_jobs_total{outcome=\"done\"} 32") != std::string::npos);
  CHECK(m->body.find("clusterd_worker_jobs_in_flight 0") != std::string::npos);
  // This process's counters by queue.
  CHECK(m->body.find("clusterd_jobs_processed_total{queue=\"fast\"} 30\n") != std::string::npos);
  CHECK(m->body.find("clusterd_jobs_processed_total{queue=\"slow\"} 2\n") != std::string::npos);
  CHECK(m->body.find("clusterd_jobs_failed_total{queue=\"fast\"} 0\n") != std::string::npos);
  CHECK(m->body.find("clusterd_jobs_dead_total{queue=\"slow\"} 0\n") != std::string::npos);
  CHECK(m->body.find("clusterd_jobs_in_flight{queue=\"slow\"} 0\n") != std::string::npos);
  CHECK(m->body.find("# TYPE clusterd_jobs_in_flight gauge") != std::string::npos);
  CHECK(m->body.find("clusterd_queue_processed_total{queue=\"fast\",outcome=\"completed\"} 30") != std::string::npos);
  CHECK(m->body.find("clusterd_queue_jobs{queue=\"slow\",state=\"waiting\"} 0") != std::string::npos);
  // A queue that is not configured is not consumed.
  json other = body(httpPost(w.port(), "/v1/queues/other/jobs", R"({"name":"noop"})"));
  std::this_thread::sleep_for(300ms);
  CHECK(getJob(w.port(), "other", other["id"])["state"] == "waiting");
}

TEST_CASE("command handlers from the ecosystem file run jobs, stdout is the result, stderr the log or the last_error",
          "[worker][queue-api]") {
  RedisServer redis;
  TempDir dir("clusterd-handlers");
  writeFile(dir.file("eco.yaml"),
            "apps:\n"
            "  - name: api\n"
            "    script: builtin:worker\n"
            "    queues:\n"
            "      work: 2\n"
            "    http:\n"
            "      job_api:\n"
            "        queues:\n"
            "          work: [copy, broken, count]\n"
            "queue:\n"
            "  redis_url: " +
                redis.url() +
                "\n"
                "  queues:\n"
                "    work:\n"
                "      attempts: 1\n"
                "handlers:\n"
                "  copy: [sh, -c, 'cat > " +
                dir.file("copied.json") +
                "']\n"
                "  broken: [sh, -c, 'echo disk on fire >&2; exit 3']\n"
                "  count: [sh, -c, 'echo \"{\\\"rows\\\": 3}\"; echo counted three rows >&2']\n");
  WorkerProcess w({"--ecosystem", dir.file("eco.yaml"), "--app", "api"});
  json ok = body(httpPost(w.port(), "/v1/queues/work/jobs", R"({"name":"copy","data":{"k":"v"}})"));
  json bad = body(httpPost(w.port(), "/v1/queues/work/jobs", R"({"name":"broken"})"));
  json counted = body(httpPost(w.port(), "/v1/queues/work/jobs", R"({"name":"count"})"));
  REQUIRE(waitFor([&] { return getJob(w.port(), "work", bad["id"])["state"] == "dead"; }));
  REQUIRE(waitFor([&] { return getJob(w.port(), "work", ok["id"])["state"] == "completed"; }));
  REQUIRE(waitFor([&] { return getJob(w.port(), "work", counted["id"])["state"] == "completed"; }));
  CHECK(json::parse(readFile(dir.file("copied.json"))) == json{{"k", "v"}});
  json dead = getJob(w.port(), "work", bad["id"]);
  CHECK(dead["last_error"].get<std::string>().find("disk on fire") != std::string::npos);
  CHECK(dead["attempts_made"] == 1);
  CHECK(dead["result"].is_null());
  // A command's stdout is its job's result: JSON here; none for a silent one.
  CHECK(getJob(w.port(), "work", counted["id"])["result"] == json{{"rows", 3}});
  json copied = getJob(w.port(), "work", ok["id"]);
  REQUIRE(copied.contains("result"));
  CHECK(copied["result"].is_null());
  // A successful command's stderr is logged with the job it belongs to.
  std::string expected = "count job work:" + counted["id"].get<std::string>() + " succeeded; its stderr: counted three rows";
  CHECK(waitFor([&] { return w.log().find(expected) != std::string::npos; }));
}

TEST_CASE("job routes answer 503 while Redis is down and /health turns 503 and back to 200", "[worker][queue-api][health]") {
  RedisServer redis;
  WorkerProcess w(apiFlags(redis, {"q"}));
  auto h = httpGet(w.port(), "/health");
  REQUIRE(h);
  CHECK(h->status == 200);
  CHECK(json::parse(h->body)["redis"] == "ok");

  redis.stop();
  // /health is cached for a second; it must turn within a few.
  REQUIRE(waitFor([&] {
    auto r = httpGet(w.port(), "/health");
    return r && r->status == 503;
  }, 5s));
  json down = body(httpGet(w.port(), "/health"));
  CHECK(down["status"] == "unavailable");
  CHECK(down["redis"] != "ok");
  for (auto r : {httpPost(w.port(), "/v1/queues/q/jobs", R"({"name":"x"})"),
                 httpGet(w.port(), "/v1/queues/q/jobs/1"), httpGet(w.port(), "/v1/queues")}) {
    REQUIRE(r);
    CHECK(r->status == 503);
    CHECK(r->header("retry-after") == "1");
  }
  // Bad input is still a 400, not a 503: the client must fix it either way.
  CHECK(httpPost(w.port(), "/v1/queues/q/jobs", "{")->status == 400);

  redis.start();
  REQUIRE(waitFor([&] {
    auto r = httpGet(w.port(), "/health");
    return r && r->status == 200;
  }, 10s));
  CHECK(httpPost(w.port(), "/v1/queues/q/jobs", R"({"name":"x"})")->status == 202);
  CHECK(w.child().running());
}

TEST_CASE("a strict queue on a Redis that may lose jobs stops the worker with exit 111", "[worker][queue-api]") {
  RedisServer redis(RedisServer::Options{.appendonly = false});
  TempDir dir("clusterd-strict");
  int port = reservedTcpPort();
  writeFile(dir.file("eco.yaml"),
            "apps:\n"
            "  - name: api\n"
            "    script: builtin:worker\n"
            "    listen: 127.0.0.1:" + std::to_string(port) + "\n"
            "    queues:\n"
            "      work: 2\n"
            "queue:\n"
            "  redis_url: " + redis.url() + "\n"
            "  strict: true\n");
  auto r = runClusterd({"worker", "--ecosystem", dir.file("eco.yaml"), "--app", "api"}, {.timeout = 20s});
  CHECK(r.exit_code == 111);
  CHECK(r.err.find("appendonly") != std::string::npos);
}

TEST_CASE("pipelined enqueues sent to Redis together each get their own ids", "[worker][queue-api]") {
  RedisServer redis;
  WorkerProcess w(apiFlags(redis, {"pipe"}));
  HttpConn c(w.port());
  std::string batch;
  int next = 0;
  std::vector<std::vector<int>> expect;  // payload numbers per request
  for (int r = 0; r < 30; ++r) {
    if (r % 3 == 2) {
      batch += postRequest("/v1/queues/pipe/jobs", json::array({{{"name", "p"}, {"data", {{"i", next}}}},
                                                                {{"name", "p"}, {"data", {{"i", next + 1}}}}}).dump());
      expect.push_back({next, next + 1});
      next += 2;
    } else {
      batch += postRequest("/v1/queues/pipe/jobs", json{{"name", "p"}, {"data", {{"i", next}}}}.dump());
      expect.push_back({next});
      next += 1;
    }
  }
  // The same unique key twice in one batch: one job.
  batch += postRequest("/v1/queues/pipe/jobs", R"({"name":"u","unique":"k1"})");
  batch += postRequest("/v1/queues/pipe/jobs", R"({"name":"u","unique":"k1"})");
  REQUIRE(c.send(batch));
  std::set<std::string> seen;
  for (const auto& numbers : expect) {
    auto r = c.read();
    REQUIRE(r);
    REQUIRE(r->status == 202);
    json j = json::parse(r->body);
    std::vector<std::string> ids;
    if (numbers.size() == 1) {
      ids.push_back(j["id"]);
    } else {
      for (auto& id : j["ids"]) ids.push_back(id);
    }
    REQUIRE(ids.size() == numbers.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      CHECK(seen.insert(ids[i]).second);
      CHECK(getJob(w.port(), "pipe", ids[i])["payload"]["i"] == numbers[i]);
    }
  }
  json u1 = json::parse(c.read()->body), u2 = json::parse(c.read()->body);
  CHECK(u1["created"] == true);
  CHECK(u2["created"] == false);
  CHECK(u1["id"] == u2["id"]);
  CHECK(body(httpGet(w.port(), "/v1/queues"))[0]["waiting"] == next + 1);
}

TEST_CASE("a Redis that stops answering gets job API requests a 503 within seconds", "[worker][queue-api][health]") {
  RedisServer redis;
  WorkerProcess w(apiFlags(redis, {"q"}));
  REQUIRE(httpPost(w.port(), "/v1/queues/q/jobs", R"({"name":"x"})")->status == 202);
  ::kill(redis.pid(), SIGSTOP);
  struct Resume {
    pid_t pid;
    ~Resume() { ::kill(pid, SIGCONT); }
  } resume{redis.pid()};
  auto t0 = std::chrono::steady_clock::now();
  HttpConn c(w.port());
  REQUIRE(c.send(postRequest("/v1/queues/q/jobs", R"({"name":"x"})")));
  auto r = c.read(15s);
  REQUIRE(r);
  CHECK(r->status == 503);
  CHECK(r->header("retry-after") == "1");
  CHECK(std::chrono::steady_clock::now() - t0 < 12s);
  // /health says so too (its probe times out).
  auto h = httpGet(w.port(), "/health");
  REQUIRE(h);
  CHECK(h->status == 503);
  ::kill(redis.pid(), SIGCONT);
  REQUIRE(waitFor([&] {
    auto ok = httpPost(w.port(), "/v1/queues/q/jobs", R"({"name":"x"})");
    return ok && ok->status == 202;
  }, 10s));
}

}  // namespace worker_queue_api_test
