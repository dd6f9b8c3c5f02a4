// The nesting limit on msgpack read from Redis: payloads and job records
// nested past kMaxNestingDepth are refused with an error naming the limit,
// a job whose record is such goes dead, and the consumer lives on.
#include <catch2/catch.hpp>

#include <string>

#include "common/nesting.h"
#include "queue/codec.h"
#include "tests/queue/queue_fixture.h"
#include "tests/support/process.h"

namespace queue_nesting_test {

using namespace clusterd;
using namespace clusterd::queue;
using test::newJob;

namespace {

// `depth` one-element arrays around a nil, as msgpack.
std::string nestedArrays(size_t depth) {
  std::string s(depth, '\x91');
  s += '\xc0';
  return s;
}

// A job record {"name": name, "payload": <payload bytes>}.
std::string record(const std::string& name, const std::string& payload) {
  std::string s = "\x82\xa4name";
  s += static_cast<char>(0xa0 | name.size());
  s += name;
  s += "\xa7payload";
  s += payload;
  return s;
}

}  // namespace

TEST_CASE("msgpack nested past the limit is refused by the codec with the limit named",
          "[queue][codec]") {
  const std::string limit = std::to_string(kMaxNestingDepth);
  auto deep = payloadToJson(nestedArrays(1'000'000));
  REQUIRE_FALSE(deep);
  CHECK(deep.error().message.find(limit) != std::string::npos);

  Job job;
  auto rec = decodeRecord(record("x", nestedArrays(1'000'000)), job);
  REQUIRE_FALSE(rec);
  CHECK(rec.error().message.find(limit) != std::string::npos);

  // At the limit both still decode.
  CHECK(payloadToJson(nestedArrays(kMaxNestingDepth)));
  Job ok;
  CHECK(decodeRecord(record("x", nestedArrays(kMaxNestingDepth)), ok));
  CHECK_FALSE(payloadToJson(nestedArrays(kMaxNestingDepth + 1)));
}

TEST_CASE("a map key that is a map is named by its place, so keys nested in keys stay small",
          "[queue][codec]") {
  // 24 levels of {<map key>: nil}, each key a one-entry map whose own key is
  // the next level: were each key named by its JSON text, every level would
  // escape the one inside it again and the text would double per level.
  std::string bytes;
  for (int i = 0; i < 24; ++i) bytes += '\x81';
  bytes += "\xa1k\xc0";
  for (int i = 1; i < 24; ++i) bytes += '\xc0';
  auto json = payloadToJson(bytes);
  REQUIRE(json);
  CHECK(json->dump() == R"({"<map key 1>":null})");
  // A scalar key is still named by its JSON text.
  auto scalar = payloadToJson(std::string("\x81\x07\xa1v", 4));
  REQUIRE(scalar);
  CHECK(scalar->dump() == R"({"7":"v"})");
}

TEST_CASE("the JSON parser refuses nesting past the limit and names it", "[queue][codec]") {
  std::string deep = std::string(1'000'000, '[') + std::string(1'000'000, ']');
  auto r = parseJsonLimited(deep);
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find(std::to_string(kMaxNestingDepth)) != std::string::npos);
  // Brackets inside strings are text, not nesting.
  auto s = parseJsonLimited("{\"a\": \"" + std::string(1000, '[') + "\\\"[\"}");
  REQUIRE(s);
  CHECK((*s)["a"].get<std::string>().size() == 1002);
  std::string at_limit = std::string(kMaxNestingDepth, '[') + std::string(kMaxNestingDepth, ']');
  CHECK(parseJsonLimited(at_limit));
  CHECK_FALSE(parseJsonLimited("[" + at_limit + "]"));
}

TEST_CASE_METHOD(
    test::QueueFixture,
    "a job whose payload nests past the limit goes dead naming it and the consumer keeps working",
    "[queue][codec]") {
  std::string deep = enqueue("n", NewJob{"deep", nestedArrays(200'000), {}});
  std::string good = enqueue("n", newJob("ok"));
  auto c = consumer("n", 2);
  bool ran_deep = false, ran_good = false;
  c->handle("deep", [&](const Job&, Done done) {
    ran_deep = true;
    done(success());
  });
  c->handle("ok", [&](const Job&, Done done) {
    ran_good = true;
    done(success());
  });
  start(*c);
  REQUIRE(loop.runUntil([&] { return ran_good && counts("n").dead == 1; }));
  CHECK_FALSE(ran_deep);
  auto dead = show("n", deep);
  REQUIRE(dead);
  CHECK(dead->state == JobState::kDead);
  CHECK(dead->reason.find(std::to_string(kMaxNestingDepth)) != std::string::npos);
}

TEST_CASE_METHOD(test::QueueFixture,
                 "clusterd enqueue refuses a payload nested past the limit, naming it",
                 "[queue][cli]") {
  test::TempDir dir("clusterd-nesting");
  test::writeFile(dir.file("jobs.jsonl"),
                  std::string(1'000'000, '[') + std::string(1'000'000, ']') + "\n");
  auto r = test::runClusterd(
      {"--redis", redis.url(), "enqueue", "q", "x", "--bulk", dir.file("jobs.jsonl")});
  CHECK(r.exit_code == 100);
  CHECK(r.err.find(std::to_string(kMaxNestingDepth)) != std::string::npos);
  CHECK(r.err.find("jobs.jsonl:1") != std::string::npos);
  CHECK(counts("q").waiting == 0);
}

}  // namespace queue_nesting_test
