// Handlers' results against a real Redis: kept with the completed job and
// read back by Client::job and `clusterd job`, absent when a handler returns
// none, replaced by a marker past the size limit, taken from a command
// handler's stdout, and deleted with their jobs when the queue trims them.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "queue/handlers.h"
#include "queue/scripts.h"
#include "tests/queue/queue_fixture.h"

namespace queue_result_test {

using namespace clusterd;
using namespace clusterd::queue;
using namespace std::chrono_literals;
using nlohmann::json;
using test::newJob;

namespace {

// Runs every job enqueued so far through `c` until `n` are completed.
void runAll(test::QueueFixture& f, Consumer& c, uint64_t n) {
  f.start(c);
  REQUIRE(f.loop.runUntil([&] { return c.stats().completed == n; }));
}

}  // namespace

TEST_CASE_METHOD(test::QueueFixture, "a handler's result is kept with the completed job and read by Client::job") {
  std::string async_id = enqueue("r", newJob("async", {{"order_id", 7}}));
  std::string sync_id = enqueue("r", newJob("sync"));
  std::string none_id = enqueue("r", newJob("none"));
  auto c = consumer("r");
  c->handle("async", [](const Job& j, Done done) {
    done(withResult({{"order_id", j.payloadJson()["order_id"]}, {"status", "confirmed"}}));
  });
  c->handleSync("sync", [](const Job&) -> Outcome { return withResult(json::array({1, 2.5, "three"})); });
  c->handle("none", [](const Job&, Done done) { done(success()); });
  runAll(*this, *c, 3);

  auto a = show("r", async_id);
  REQUIRE(a);
  CHECK(a->state == JobState::kCompleted);
  CHECK(a->resultJson() == json{{"order_id", 7}, {"status", "confirmed"}});
  CHECK(a->toJson()["result"] == json{{"order_id", 7}, {"status", "confirmed"}});
  // Stored as msgpack in the documented hash, so other languages can read it.
  CHECK(redis.command({"HGET", "cq:{r}:results", async_id}) == payloadFromJson(a->resultJson()));
  CHECK(show("r", sync_id)->resultJson() == json::array({1, 2.5, "three"}));

  auto n = show("r", none_id);
  REQUIRE(n);
  CHECK(n->state == JobState::kCompleted);
  CHECK(n->result.empty());
  CHECK_FALSE(n->toJson().contains("result"));
  CHECK(redis.command({"HLEN", "cq:{r}:results"}) == "2");
}

TEST_CASE_METHOD(test::QueueFixture, "a null result and a failed attempt store no result") {
  std::string null_id = enqueue("r", newJob("null"));
  std::string flaky_id = enqueue("r", newJob("flaky", nullptr, {.attempts = 2, .backoff = 1ms}));
  int tries = 0;
  auto c = consumer("r");
  c->handle("null", [](const Job&, Done done) { done(withResult(nullptr)); });
  c->handle("flaky", [&](const Job&, Done done) {
    if (++tries == 1) return done(Error{"not yet"});
    done(withResult("second try"));
  });
  runAll(*this, *c, 2);
  CHECK(show("r", null_id)->result.empty());
  auto f = show("r", flaky_id);
  CHECK(f->attempt == 1);
  CHECK(f->resultJson() == "second try");
}

TEST_CASE_METHOD(test::QueueFixture, "a result over 64 KiB completes the job with a truncated marker instead") {
  std::string id = enqueue("big", newJob("big"));
  auto c = consumer("big");
  c->handle("big", [](const Job&, Done done) { done(withResult(std::string(70'000, 'x'))); });
  runAll(*this, *c, 1);
  auto j = show("big", id);
  REQUIRE(j);
  CHECK(j->state == JobState::kCompleted);
  json r = j->resultJson();
  CHECK(r["truncated"] == true);
  CHECK(r["limit"] == kMaxResultBytes);
  CHECK(r["bytes"].get<size_t>() > 70'000);  // the msgpack size that was refused
  CHECK(std::stoul(redis.command({"HSTRLEN", "cq:{big}:results", id})) < 100);
}

TEST_CASE_METHOD(test::QueueFixture, "results are deleted with their jobs when completed jobs are trimmed or cleaned") {
  setConfig("t", "keep_completed", "2");
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(enqueue("t", newJob("echo", {{"i", i}})));
  auto c = consumer("t", 1);  // one at a time, so the oldest are trimmed
  c->handle("echo", [](const Job& j, Done done) { done(withResult(j.payloadJson())); });
  runAll(*this, *c, 5);
  CHECK(redis.command({"HLEN", "cq:{t}:results"}) == "2");
  CHECK_FALSE(show("t", ids[0]));
  CHECK(show("t", ids[4])->resultJson() == json{{"i", 4}});
  CHECK(admin("t", AdminOp::kClean, "0") == 2);
  CHECK(redis.command({"EXISTS", "cq:{t}:results"}) == "0");

  // A queue that keeps no completed jobs keeps no results either.
  setConfig("z", "keep_completed", "0");
  enqueue("z", newJob("echo", {{"i", 1}}));
  auto z = consumer("z");
  z->handle("echo", [](const Job& j, Done done) { done(withResult(j.payloadJson())); });
  runAll(*this, *z, 1);
  CHECK(redis.command({"EXISTS", "cq:{z}:results"}) == "0");
}

TEST_CASE_METHOD(test::QueueFixture, "a command handler's stdout is the job's result: JSON, else text, none when empty") {
  std::vector<config::HandlerSpec> specs = {
      {"json", {"sh", "-c", R"(printf '{"rows": 3, "ok": true}\n')"}},
      {"text", {"sh", "-c", "echo hello; echo world"}},
      {"quiet", {"sh", "-c", "cat > /dev/null"}},
      {"flood", {"sh", "-c", "head -c 200000 /dev/zero | tr '\\0' a"}},
  };
  std::map<std::string, std::string> ids;
  for (auto& s : specs) ids[s.job_name] = enqueue("cmd", newJob(s.job_name, {{"x", 1}}));
  auto c = consumer("cmd");
  registerCommandHandlers(*c, loop.get(), specs);
  runAll(*this, *c, specs.size());
  CHECK(show("cmd", ids["json"])->resultJson() == json{{"rows", 3}, {"ok", true}});
  CHECK(show("cmd", ids["text"])->resultJson() == "hello\nworld");
  CHECK(show("cmd", ids["quiet"])->result.empty());
  json flood = show("cmd", ids["flood"])->resultJson();
  CHECK(flood["truncated"] == true);
  CHECK(flood["bytes"] == 200'000);
}

TEST_CASE("clusterd job shows a completed job's result, as text and with --json") {
  test::QueueFixture f;
  std::string with = f.enqueue("cli", newJob("answer"));
  std::string without = f.enqueue("cli", newJob("silent"));
  auto c = f.consumer("cli");
  c->handle("answer", [](const Job&, Done done) { done(withResult({{"answer", 42}})); });
  c->handle("silent", [](const Job&, Done done) { done(success()); });
  runAll(f, *c, 2);
  test::RunOptions env{.env = {{"CLUSTERD_REDIS_URL", f.redis.url()}}};
  auto shown = test::runClusterd({"job", "cli", with, "--json"}, env);
  REQUIRE(shown.exit_code == 0);
  CHECK(json::parse(shown.out)["result"] == json{{"answer", 42}});
  auto text = test::runClusterd({"job", "cli", with}, env);
  REQUIRE(text.exit_code == 0);
  CHECK(text.out.find("state:     completed\n") != std::string::npos);
  CHECK(text.out.find("result:    {\"answer\":42}\n") != std::string::npos);
  auto bare = test::runClusterd({"job", "cli", without, "--json"}, env);
  REQUIRE(bare.exit_code == 0);
  CHECK_FALSE(json::parse(bare.out).contains("result"));
  CHECK(test::runClusterd({"job", "cli", without}, env).out.find("result:") == std::string::npos);
}

TEST_CASE_METHOD(test::QueueFixture, "a refused acknowledgement stores no result, and a 19-key caller cannot send one") {
  std::string id = enqueue("s", newJob("work"));
  auto keys = queueKeys("s");
  auto eval = [&](ScriptId s, const std::vector<std::string>& ks, std::vector<std::string> args) {
    std::vector<std::string> argv{"EVAL", std::string(scriptBody(s)), std::to_string(ks.size())};
    argv.insert(argv.end(), ks.begin(), ks.end());
    argv.insert(argv.end(), args.begin(), args.end());
    return redis.command(argv);
  };
  std::string now = std::to_string(nowMs());
  std::string reserved = eval(ScriptId::kReserve, keys, {now, "1", "10000"});
  std::string token = reserved.substr(0, reserved.find('\n'));
  std::string result = payloadFromJson({{"n", 1}});
  // A stale token: refused, nothing stored.
  CHECK(eval(ScriptId::kComplete, keys, {now, "1", "0", "0", "10000", id, "999", "1", result}).rfind("0", 0) == 0);
  CHECK(redis.command({"EXISTS", "cq:{s}:results"}) == "0");
  // Only the first 19 keys (a client from before results): a result is an error.
  std::vector<std::string> old_keys(keys.begin(), keys.begin() + 19);
  CHECK_THROWS_WITH(eval(ScriptId::kComplete, old_keys, {now, "1", "0", "0", "10000", id, token, "1", result}),
                    Catch::Contains("20th key"));
  CHECK(show("s", id)->state == JobState::kActive);
  // The right token with all 20 keys: completed with its result.
  CHECK(eval(ScriptId::kComplete, keys, {now, "1", "0", "0", "10000", id, token, "1", result}).rfind("1", 0) == 0);
  CHECK(show("s", id)->resultJson() == json{{"n", 1}});
}

}  // namespace queue_result_test
