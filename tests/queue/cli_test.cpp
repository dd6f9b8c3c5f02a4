// The queue verbs of the clusterd CLI against a real Redis.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "tests/support/servers.h"

namespace queue_cli_test {

using namespace clusterd;

TEST_CASE("queue verbs print usage with examples on --help") {
  for (const char* verb : {"enqueue", "queues", "jobs", "job", "queue"}) {
    auto r = test::runClusterd({verb, "--help"});
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("Examples:") != std::string::npos);
  }
}

TEST_CASE("enqueue prints only the id, bulk prints the count, queues, jobs and job show them") {
  test::RedisServer redis;
  test::RunOptions env{.env = {{"CLUSTERD_REDIS_URL", redis.url()}}};
  auto a = test::runClusterd({"enqueue", "orders", "order.process", R"({"order_id": 7})"}, env);
  REQUIRE(a.exit_code == 0);
  CHECK(a.out == "1\n");
  auto d = test::runClusterd({"--redis", redis.url(), "enqueue", "orders", "x", "{}", "--delay", "5m", "--priority", "3",
                              "--attempts", "2", "--unique", "u1"});
  REQUIRE(d.exit_code == 0);
  CHECK(d.out == "2\n");
  auto again = test::runClusterd({"enqueue", "orders", "x", "{}", "--unique", "u1"}, env);
  CHECK(again.out == "2\n");
  test::RunOptions bulk = env;
  bulk.stdin_data = "{\"n\":1}\n{\"n\":2}\n\n{\"n\":3}\n";
  auto b = test::runClusterd({"enqueue", "orders", "noop", "--bulk", "-"}, bulk);
  REQUIRE(b.exit_code == 0);
  CHECK(b.out == "3\n");

  auto q = test::runClusterd({"queues", "--json"}, env);
  REQUIRE(q.exit_code == 0);
  auto arr = nlohmann::json::parse(q.out);
  REQUIRE(arr.size() == 1);
  for (const char* k : {"queue", "waiting", "active", "delayed", "dead", "completed", "failed", "paused", "per_min"})
    CHECK(arr[0].contains(k));
  CHECK(arr[0]["waiting"] == 4);
  CHECK(arr[0]["delayed"] == 1);

  auto jobs = test::runClusterd({"jobs", "orders", "--state", "delayed", "--json"}, env);
  REQUIRE(jobs.exit_code == 0);
  CHECK(nlohmann::json::parse(jobs.out)[0]["id"] == "2");
  auto show = test::runClusterd({"job", "orders", "1", "--json"}, env);
  REQUIRE(show.exit_code == 0);
  CHECK(nlohmann::json::parse(show.out)["payload"]["order_id"] == 7);
  auto text = test::runClusterd({"job", "orders", "1"}, env);
  REQUIRE(text.exit_code == 0);
  CHECK(text.out.find("state:     waiting\n") != std::string::npos);
  CHECK(text.out.find("payload:   {\"order_id\":7}\n") != std::string::npos);
  CHECK(test::runClusterd({"job", "orders", "1", "delete"}, env).exit_code == 0);
  CHECK(test::runClusterd({"job", "orders", "1"}, env).exit_code == 1);
  CHECK(test::runClusterd({"queue", "orders", "pause"}, env).exit_code == 0);
  CHECK(nlohmann::json::parse(test::runClusterd({"queues", "--json"}, env).out)[0]["paused"] == true);
  auto drained = test::runClusterd({"queue", "orders", "drain"}, env);
  CHECK(drained.out == "4 jobs removed\n");
}

TEST_CASE("enqueue fails fast with exit 111 when redis is unreachable, and 100 on bad input") {
  int port = test::freeTcpPort();
  auto r = test::runClusterd({"--redis", "redis://127.0.0.1:" + std::to_string(port), "enqueue", "q", "x"});
  CHECK(r.exit_code == 111);
  CHECK(r.err.find("cannot reach Redis") != std::string::npos);
  CHECK(r.out.empty());
  auto bad = test::runClusterd({"--redis", "redis://127.0.0.1:1", "enqueue", "q", "x", "{not json"});
  CHECK(bad.exit_code == 100);
  auto delay = test::runClusterd({"--redis", "redis://127.0.0.1:1", "enqueue", "q", "x", "--delay", "soon"});
  CHECK(delay.exit_code == 100);
}

TEST_CASE("enqueue warns when redis may lose jobs, and refuses under --strict") {
  test::RedisServer lossy(test::RedisServer::Options{.appendonly = false});
  test::RunOptions env{.env = {{"CLUSTERD_REDIS_URL", lossy.url()}}};
  auto warned = test::runClusterd({"enqueue", "q", "noop"}, env);
  CHECK(warned.exit_code == 0);
  CHECK(warned.out == "1\n");  // stdout stays the id alone
  CHECK(warned.err.find("appendonly is 'no'") != std::string::npos);
  auto refused = test::runClusterd({"enqueue", "q", "noop", "--strict"}, env);
  CHECK(refused.exit_code == 1);
  CHECK(refused.out.empty());
  CHECK(refused.err.find("refusing under --strict") != std::string::npos);
  test::RunOptions bulk = env;
  bulk.stdin_data = "1\n2\n";
  CHECK(test::runClusterd({"enqueue", "q", "noop", "--bulk", "-", "--strict"}, bulk).exit_code == 1);
  CHECK(lossy.command({"HLEN", "cq:{q}:jobs"}) == "1");  // only the first, lax enqueue
}

TEST_CASE("enqueue reads both durability settings with a single CONFIG GET") {
  test::RedisServer redis;
  redis.command({"CONFIG", "RESETSTAT"});
  auto r = test::runClusterd({"--redis", redis.url(), "enqueue", "q", "noop"});
  REQUIRE(r.exit_code == 0);
  CHECK(r.err.find("may lose") == std::string::npos);  // AOF on, noeviction: no warning
  std::string stats = redis.command({"INFO", "commandstats"});
  CHECK(stats.find("cmdstat_config|get:calls=1,") != std::string::npos);
}

TEST_CASE("jobs and job print a payload that is not UTF-8 with replacement characters") {
  test::RedisServer redis;
  // {"name": "x", "payload": "\xff"} as another language's client might write it.
  std::string record = "\x82\xa4name\xa1x\xa7payload\xa1\xff";
  redis.command({"HSET", "cq:{raw}:jobs", "1", record});
  redis.command({"RPUSH", "cq:{raw}:wait", "1"});
  test::RunOptions env{.env = {{"CLUSTERD_REDIS_URL", redis.url()}}};
  for (std::vector<std::string> args : {std::vector<std::string>{"jobs", "raw", "--json"},
                                        std::vector<std::string>{"jobs", "raw"},
                                        std::vector<std::string>{"job", "raw", "1"},
                                        std::vector<std::string>{"job", "raw", "1", "--json"}}) {
    auto r = test::runClusterd(args, env);
    INFO(args[0] << " " << r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("\xef\xbf\xbd") != std::string::npos);  // U+FFFD
  }
}

}  // namespace queue_cli_test
