// The scripts' guarantees as any client gets them (docs/QUEUE.md documents
// the protocol for clients in other languages): each test calls the scripts
// directly with EVAL, as such a client would, with arguments a well-behaved
// consumer never sends: a clock far ahead, retries past the attempt budget,
// whole queues of tens of thousands of jobs.
#include <catch2/catch.hpp>

#include <sstream>

#include "queue/redis.h"
#include "queue/scripts.h"
#include "tests/queue/queue_fixture.h"

namespace queue_scripts_test {

using namespace clusterd;
using namespace clusterd::queue;
using namespace std::chrono_literals;
using clusterd::test::QueueFixture;

namespace {

constexpr int64_t kDay = 24 * 3600 * 1000;

// Runs one script with the queue's 20 keys; the reply as RedisServer::command
// gives it (nested arrays flattened, one element per line).
std::string evalScript(test::RedisServer& redis, ScriptId id, const std::string& queue,
                       const std::vector<std::string>& args) {
  std::vector<std::string> argv{"EVAL", std::string(scriptBody(id)), "20"};
  auto keys = queueKeys(queue);
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.insert(argv.end(), args.begin(), args.end());
  return redis.command(argv);
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// Reserves up to n jobs with the caller's clock at `now`; the lease token
// ('' when nothing was reserved).
std::string reserveAt(test::RedisServer& redis, const std::string& queue, int64_t now, int n = 10,
                      int64_t lease_ms = 10000) {
  auto r = lines(evalScript(redis, ScriptId::kReserve, queue,
                            {std::to_string(now), std::to_string(n), std::to_string(lease_ms)}));
  REQUIRE(!r.empty());
  return r[0];
}

// Builds queue `big` with one server-side script over its 20 keys, then
// waits for the client, whose connection may have timed out while Redis ran it.
void fill(QueueFixture& f, const std::string& lua) {
  std::vector<std::string> argv{"EVAL", lua, "20"};
  auto keys = queueKeys("big");
  argv.insert(argv.end(), keys.begin(), keys.end());
  f.redis.command(argv);
  REQUIRE(f.loop.runUntil([&] { return f.client->connection().ready(); }, 20s));
}

}  // namespace

TEST_CASE("a reservation from a clock a day ahead does not take a live lease", "[queue][scripts]") {
  QueueFixture f;
  std::string first = f.enqueue("skew", test::newJob("a"));
  std::string token = reserveAt(f.redis, "skew", nowMs());
  REQUIRE(!token.empty());
  std::string second = f.enqueue("skew", test::newJob("b"));

  std::string other = reserveAt(f.redis, "skew", nowMs() + kDay);

  CHECK(other != token);
  CHECK(f.redis.command({"HGET", "cq:{skew}:active", first}) == token);
  CHECK(f.redis.command({"HGET", "cq:{skew}:active", second}) == other);
  CHECK(f.redis.command({"HGET", "cq:{skew}:stats", "stalled"}) == "(nil)");
  auto job = f.show("skew", first);
  REQUIRE(job);
  CHECK(job->stalls == 0);
}

TEST_CASE("extend sets a lease's deadline from its length on Redis's clock", "[queue][scripts]") {
  QueueFixture f;
  f.enqueue("skew", test::newJob("a"));
  std::string token = reserveAt(f.redis, "skew", nowMs());
  REQUIRE(evalScript(f.redis, ScriptId::kExtend, "skew", {"10000", token}) == "1");
  int64_t deadline = std::stoll(f.redis.command({"ZSCORE", "cq:{skew}:leases", token}));
  CHECK(deadline <= nowMs() + 10000 + 1000);
  CHECK(deadline >= nowMs() + 10000 - 1000);
}

TEST_CASE("a delay is measured on the enqueuing client's clock however far off it is",
          "[queue][scripts]") {
  QueueFixture f;
  int64_t ahead = nowMs() + kDay;
  std::string record(test::newJob("a").payload);  // any non-empty bytes do for the script
  auto r = lines(evalScript(
      f.redis, ScriptId::kEnqueue, "skew",
      {std::to_string(ahead), "1", record, std::to_string(ahead + 60'000), "0", "", "0"}));
  REQUIRE(r.size() == 2);
  int64_t due = std::stoll(f.redis.command({"ZSCORE", "cq:{skew}:delayed", r[0]}));
  CHECK(due >= nowMs() + 50'000);
  CHECK(due <= nowMs() + 70'000);
}

TEST_CASE("fail ends a job after its attempts however often a client asks for a retry",
          "[queue][scripts]") {
  QueueFixture f;
  JobOptions o;
  o.attempts = 2;
  std::string id = f.enqueue("budget", test::newJob("a", nullptr, o));
  std::vector<std::string> replies;
  for (int round = 0; round < 10; ++round) {
    std::string token = reserveAt(f.redis, "budget", nowMs());
    if (token.empty()) break;
    replies.push_back(
        evalScript(f.redis, ScriptId::kFail, "budget",
                   {std::to_string(nowMs()), id, token, "retry", "boom", "0", "0", "1"}));
  }
  CHECK(replies == std::vector<std::string>{"1", "2"});
  auto job = f.show("budget", id);
  REQUIRE(job);
  CHECK(job->state == JobState::kDead);
  CHECK(job->attempt == 2);
  CHECK(job->reason.find("no attempts left: 2 of 2 used") != std::string::npos);
}

TEST_CASE("fail takes the queue's attempts setting for a record without attempts",
          "[queue][scripts]") {
  QueueFixture f;
  f.setConfig("budget", "attempts", "1");
  std::string record = payloadFromJson({{"name", "a"}});
  auto r = lines(evalScript(f.redis, ScriptId::kEnqueue, "budget",
                            {std::to_string(nowMs()), "1", record, "0", "0", "", "0"}));
  REQUIRE(r.size() == 2);
  std::string token = reserveAt(f.redis, "budget", nowMs());
  CHECK(evalScript(f.redis, ScriptId::kFail, "budget",
                   {std::to_string(nowMs()), r[0], token, "retry", "boom", "0", "0", "1"}) == "2");
  CHECK(f.redis.command({"ZSCORE", "cq:{budget}:dead", r[0]}) != "(nil)");
}

TEST_CASE("drain removes 50000 jobs in calls of at most 1000", "[queue][scripts]") {
  QueueFixture f;
  // Waiting, priority and delayed jobs as the scripts keep them, each
  // holding a unique key, made in one server-side loop (enqueuing them
  // through a client would only be slower).
  fill(f,
       "for i = 1, 50000 do "
       "  redis.call('HSET', KEYS[4], i, 'x') "
       "  redis.call('HSET', KEYS[17], 'k' .. i, i) redis.call('HSET', KEYS[18], i, '0:k' .. i) "
       "  if i % 10 == 0 then redis.call('ZADD', KEYS[2], i, i) "
       "  elseif i % 10 == 1 then redis.call('ZADD', KEYS[3], 4102444800000, i) "
       "  else redis.call('RPUSH', KEYS[1], i) end "
       "end");
  CHECK(evalScript(f.redis, ScriptId::kAdmin, "big", {std::to_string(nowMs()), "drain", ""}) ==
        "1000");
  CHECK(f.admin("big", AdminOp::kDrain) == 49'000);
  auto c = f.counts("big");
  CHECK(c.waiting == 0);
  CHECK(c.delayed == 0);
  CHECK(f.redis.command({"HLEN", "cq:{big}:jobs"}) == "0");
  CHECK(f.redis.command({"HLEN", "cq:{big}:unique"}) == "0");
}

TEST_CASE("clean removes 50000 finished jobs in calls of at most 1000", "[queue][scripts]") {
  QueueFixture f;
  fill(f,
       "for i = 1, 50000 do "
       "  local z = (i % 2 == 0) and KEYS[12] or KEYS[13] "
       "  redis.call('ZADD', z, i, i) redis.call('HSET', KEYS[4], i, 'x') "
       "end");
  CHECK(evalScript(f.redis, ScriptId::kAdmin, "big", {std::to_string(nowMs()), "clean", "0"}) ==
        "1000");
  CHECK(f.admin("big", AdminOp::kClean, "0") == 49'000);
  CHECK(f.redis.command({"ZCARD", "cq:{big}:completed"}) == "0");
  CHECK(f.redis.command({"ZCARD", "cq:{big}:dead"}) == "0");
  CHECK(f.redis.command({"HLEN", "cq:{big}:jobs"}) == "0");
}

TEST_CASE("meta of the wrong shape written by another client does not stop the queue",
          "[queue][scripts]") {
  QueueFixture f;
  std::string id = f.enqueue("shape", test::newJob("a"));
  f.redis.command(
      {"HSET", "cq:{shape}:meta", id,
       payloadFromJson({{"attempt", "x"}, {"stalls", {1, 2}}, {"errors", 5}, {"reason", 7}})});
  std::string token = reserveAt(f.redis, "shape", nowMs(), 10, 100);
  REQUIRE(!token.empty());
  REQUIRE(f.loop.runUntil([&] {
    return std::stoll(f.redis.command({"ZSCORE", "cq:{shape}:leases", token})) < nowMs() - 50;
  }));
  // The expired lease is recovered (the stall counted from 0), then the job
  // fails once and is retried.
  std::string again = reserveAt(f.redis, "shape", nowMs());
  REQUIRE(!again.empty());
  CHECK(f.redis.command({"HGET", "cq:{shape}:active", id}) == again);
  CHECK(evalScript(f.redis, ScriptId::kFail, "shape",
                   {std::to_string(nowMs()), id, again, "retry", "boom", "0", "0", "1"}) == "1");
  auto job = f.show("shape", id);
  REQUIRE(job);
  CHECK(job->stalls == 1);
  CHECK(job->attempt == 1);
  CHECK(job->errors.size() == 2);
}

TEST_CASE(
    "records with a field of the wrong type or range go to dead naming it and the queue goes on",
    "[queue][scripts]") {
  QueueFixture f;
  std::vector<std::pair<nlohmann::json, std::string>> bad = {
      {{{"name", "ok"}, {"attempts", "three"}}, "'attempts' is not an integer"},
      {{{"name", "ok"}, {"attempts", 0}}, "'attempts' is 0, outside 1..1000000"},
      {{{"name", "ok"}, {"timeout", -5}}, "'timeout' is -5"},
      {{{"name", "ok"}, {"backoff", 1e300}}, "'backoff' is not an integer"},
      {{{"name", "ok"}, {"priority", 5000}}, "'priority' is 5000"},
      {{{"name", "ok"}, {"backoff_type", "linear"}}, "'backoff_type'"},
      {{{"name", "ok"}, {"uid", std::string(500, 'u')}}, "'uid' is 500 bytes"},
      {{{"name", std::string(5000, 'n')}}, "'name' is 5000 bytes"},
  };
  std::vector<std::string> ids;
  for (auto& [record, reason] : bad) {
    auto r = lines(
        evalScript(f.redis, ScriptId::kEnqueue, "shape",
                   {std::to_string(nowMs()), "1", payloadFromJson(record), "0", "0", "", "0"}));
    REQUIRE(r.size() == 2);
    ids.push_back(r[0]);
  }
  std::string good = f.enqueue("shape", test::newJob("ok"));
  auto c = f.consumer("shape", 4);
  int ran = 0;
  c->handle("ok", [&](const Job&, Done done) {
    ++ran;
    done(success());
  });
  f.start(*c);
  REQUIRE(f.loop.runUntil(
      [&] { return f.counts("shape").dead == static_cast<int64_t>(bad.size()) && ran == 1; }));
  for (size_t i = 0; i < bad.size(); ++i) {
    auto job = f.show("shape", ids[i]);
    REQUIRE(job);
    CHECK(job->state == JobState::kDead);
    INFO(job->reason);
    CHECK(job->reason.find(bad[i].second) != std::string::npos);
  }
  CHECK(f.show("shape", good)->state == JobState::kCompleted);
}

TEST_CASE("complete acknowledges a job named twice in one call once", "[queue][scripts]") {
  QueueFixture f;
  std::string id = f.enqueue("twice", test::newJob("a"));
  std::string token = reserveAt(f.redis, "twice", nowMs());
  REQUIRE(!token.empty());
  auto r = lines(evalScript(f.redis, ScriptId::kComplete, "twice",
                            {std::to_string(nowMs()), "2", "1", "0", "10000", id, token, id, token, token}));
  REQUIRE(r.size() >= 2);
  CHECK(r[0] == "1");
  CHECK(r[1] == "0");
  CHECK(f.redis.command({"HGET", "cq:{twice}:stats", "completed"}) == "1");
  CHECK(f.redis.command({"ZCARD", "cq:{twice}:completed"}) == "1");
  CHECK(f.redis.command({"HLEN", "cq:{twice}:active"}) == "0");
}

TEST_CASE("a released job goes back with its record's priority, whatever the caller says",
          "[queue][scripts]") {
  QueueFixture f;
  auto job = test::newJob("a");
  job.options.priority = 7;
  std::string id = f.enqueue("prio", std::move(job));
  std::string token = reserveAt(f.redis, "prio", nowMs());
  REQUIRE(!token.empty());
  auto r = evalScript(f.redis, ScriptId::kFail, "prio",
                      {std::to_string(nowMs()), id, token, "release", "", "0", "0", "1"});
  CHECK(r == "1");
  CHECK(f.redis.command({"ZSCORE", "cq:{prio}:prio", id}) != "(nil)");
  CHECK(f.redis.command({"LLEN", "cq:{prio}:wait"}) == "0");
  auto shown = f.show("prio", id);
  REQUIRE(shown);
  CHECK(shown->priority == 7);
}

TEST_CASE("a new throughput bucket removes every bucket older than a minute, after an idle spell too",
          "[queue][scripts]") {
  QueueFixture f;
  std::string id = f.enqueue("tput", test::newJob("a"));
  // Buckets of 10 s on Redis's clock: one from an hour ago (an idle spell),
  // one from 30 s ago (still inside the minute), one a client wrote badly.
  int64_t bucket = std::stoll(f.redis.command({"EVAL", "return tonumber(redis.call('TIME')[1]) * 1000", "0"})) / 10000;
  f.redis.command({"HSET", "cq:{tput}:tput", std::to_string(bucket - 360), "5", std::to_string(bucket - 3), "7",
                   "junk", "1"});
  std::string token = reserveAt(f.redis, "tput", nowMs());
  REQUIRE(!token.empty());
  evalScript(f.redis, ScriptId::kComplete, "tput", {std::to_string(nowMs()), "1", "1", "0", "10000", id, token, token});

  CHECK(f.redis.command({"HEXISTS", "cq:{tput}:tput", std::to_string(bucket - 360)}) == "0");
  CHECK(f.redis.command({"HEXISTS", "cq:{tput}:tput", "junk"}) == "0");
  CHECK(f.redis.command({"HGET", "cq:{tput}:tput", std::to_string(bucket - 3)}) == "7");
}

TEST_CASE("a full reservation leaves a wake-up for the jobs left, a short one says when to look again",
          "[queue][scripts]") {
  QueueFixture f;
  for (int i = 0; i < 3; ++i) f.enqueue("batches", test::newJob("j" + std::to_string(i)));
  f.enqueue("batches", test::newJob("later", nullptr, {.delay = 60s}));
  f.redis.command({"DEL", "cq:{batches}:wake"});

  auto full = lines(evalScript(f.redis, ScriptId::kReserve, "batches", {std::to_string(nowMs()), "2", "10000"}));
  REQUIRE(full.size() >= 2);
  CHECK(full[1] == "-1");  // jobs are left: the caller asks again at once
  CHECK(f.redis.command({"ZCARD", "cq:{batches}:wake"}) == "1");

  f.redis.command({"DEL", "cq:{batches}:wake"});
  auto rest = lines(evalScript(f.redis, ScriptId::kReserve, "batches", {std::to_string(nowMs()), "2", "10000"}));
  REQUIRE(rest.size() >= 2);
  // Everything ready was taken: no wake-up, and next_due is the earliest of
  // the delayed job and the two leases (10 s).
  CHECK(f.redis.command({"ZCARD", "cq:{batches}:wake"}) == "0");
  int64_t due = std::stoll(rest[1]);
  CHECK(due > nowMs());
  CHECK(due <= nowMs() + 10000);
}

TEST_CASE("a trimmed job takes its meta and result along, whether or not other jobs have any",
          "[queue][scripts]") {
  QueueFixture f;
  f.redis.command({"HSET", "cq:{trim}:config", "keep_completed", "1"});
  std::string a = f.enqueue("trim", test::newJob("a"));
  std::string b = f.enqueue("trim", test::newJob("b"));
  std::string c = f.enqueue("trim", test::newJob("c"));
  // `a` failed once before (it has meta); `b` has none.
  f.redis.command({"HSET", "cq:{trim}:meta", a, "\x81\xa7" "attempt" "\x01"});
  std::string token = reserveAt(f.redis, "trim", nowMs(), 3);
  REQUIRE(!token.empty());
  // a and b finish with a result each, c without; only the newest is kept.
  evalScript(f.redis, ScriptId::kComplete, "trim",
             {std::to_string(nowMs()), "2", "0", "0", "10000", a, token, b, token, "1", "ra", "2", "rb"});
  evalScript(f.redis, ScriptId::kComplete, "trim",
             {std::to_string(nowMs()), "1", "1", "0", "10000", c, token, token});

  CHECK(f.redis.command({"ZCARD", "cq:{trim}:completed"}) == "1");
  for (const auto& gone : {a, b}) {
    INFO("job " << gone);
    CHECK(f.redis.command({"HEXISTS", "cq:{trim}:jobs", gone}) == "0");
    CHECK(f.redis.command({"HEXISTS", "cq:{trim}:meta", gone}) == "0");
    CHECK(f.redis.command({"HEXISTS", "cq:{trim}:results", gone}) == "0");
  }
  CHECK(f.redis.command({"HEXISTS", "cq:{trim}:jobs", c}) == "1");
}

TEST_CASE("a bulk enqueue numbers its new jobs in order and a unique key repeated in it names the first job",
          "[queue][scripts]") {
  QueueFixture f;
  std::string taken = f.enqueue("bulk", test::newJob("before", nullptr, {.unique_key = "old"}));
  std::vector<queue::NewJob> jobs;
  jobs.push_back(test::newJob("a", nullptr, {.unique_key = "k"}));
  jobs.push_back(test::newJob("b", nullptr, {.unique_key = "k"}));     // the same key: a's id
  jobs.push_back(test::newJob("c"));
  jobs.push_back(test::newJob("d", nullptr, {.priority = 5}));
  jobs.push_back(test::newJob("e", nullptr, {.delay = 60s}));
  jobs.push_back(test::newJob("f", nullptr, {.unique_key = "old"}));   // taken before this call
  jobs.push_back(test::newJob("g"));
  auto reply = test::await<std::vector<queue::Enqueued>>(
      f.loop, [&](auto cb) { f.client->enqueueBulk("bulk", std::move(jobs), cb); });
  REQUIRE(reply);
  const auto& got = *reply;
  REQUIRE(got.size() == 7);
  int64_t first = std::stoll(taken);
  std::vector<std::string> want_ids{std::to_string(first + 1), std::to_string(first + 1), std::to_string(first + 2),
                                    std::to_string(first + 3), std::to_string(first + 4), taken,
                                    std::to_string(first + 5)};
  std::vector<bool> want_created{true, false, true, true, true, false, true};
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("job " << i);
    CHECK(got[i].id == want_ids[i]);
    CHECK(got[i].created == want_created[i]);
  }
  // FIFO jobs in argument order; the priority and delayed jobs in their sets.
  CHECK(f.redis.command({"LRANGE", "cq:{bulk}:wait", "0", "-1"}) ==
        taken + "\n" + want_ids[0] + "\n" + want_ids[2] + "\n" + want_ids[6]);
  CHECK(f.redis.command({"ZSCORE", "cq:{bulk}:prio", want_ids[3]}) != "(nil)");
  CHECK(f.redis.command({"ZSCORE", "cq:{bulk}:delayed", want_ids[4]}) != "(nil)");
  CHECK(f.redis.command({"HGET", "cq:{bulk}:unique", "k"}) == want_ids[0]);
  CHECK(f.redis.command({"HLEN", "cq:{bulk}:jobs"}) == "6");
  CHECK(f.redis.command({"HGET", "cq:{bulk}:stats", "enqueued"}) == "6");
  CHECK(f.show("bulk", want_ids[6])->name == "g");
}

}  // namespace queue_scripts_test
