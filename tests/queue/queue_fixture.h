// A test fixture for the queue: a real redis-server, a loop, a client and
// helpers to run client calls to completion and to build consumers.
#pragma once

#include <catch2/catch.hpp>

#include <optional>

#include "queue/client.h"
#include "queue/consumer.h"
#include "tests/queue/loop_support.h"
#include "tests/support/servers.h"

namespace clusterd::test {

template <typename T, typename F>
Result<T> await(TestLoop& loop, F&& call) {
  std::optional<Result<T>> out;
  call([&](Result<T> r) { out.emplace(std::move(r)); });
  REQUIRE(loop.runUntil([&] { return out.has_value(); }, std::chrono::seconds(10)));
  return std::move(*out);
}

inline queue::NewJob newJob(std::string name, nlohmann::json payload = nullptr, queue::JobOptions o = {}) {
  return queue::NewJob{std::move(name), queue::payloadFromJson(payload), o};
}

struct QueueFixture {
  RedisServer redis;
  TestLoop loop;
  std::unique_ptr<queue::Client> client = queue::Client::create(loop.get(), {.redis_url = redis.url()}).value();

  std::string enqueue(const std::string& q, queue::NewJob j) {
    auto r = await<queue::Enqueued>(loop, [&](auto cb) { client->enqueue(q, std::move(j), cb); });
    REQUIRE(r);
    return r->id;
  }
  void enqueueMany(const std::string& q, std::vector<queue::NewJob> jobs) {
    auto r = await<std::vector<queue::Enqueued>>(loop, [&](auto cb) { client->enqueueBulk(q, std::move(jobs), cb); });
    REQUIRE(r);
  }
  queue::QueueCounts counts(const std::string& q) {
    auto r = await<queue::QueueCounts>(loop, [&](auto cb) { client->counts(q, cb); });
    REQUIRE(r);
    return *r;
  }
  std::optional<queue::Job> show(const std::string& q, const std::string& id) {
    auto r = await<std::optional<queue::Job>>(loop, [&](auto cb) { client->job(q, id, cb); });
    REQUIRE(r);
    return *r;
  }
  int64_t admin(const std::string& q, queue::AdminOp op, const std::string& arg = "") {
    auto r = await<int64_t>(loop, [&](auto cb) { client->admin(q, op, arg, cb); });
    REQUIRE(r);
    return *r;
  }
  void setConfig(const std::string& q, const std::string& field, const std::string& value) {
    redis.command({"HSET", "cq:{" + q + "}:config", field, value});
  }
  std::unique_ptr<queue::Consumer> consumer(const std::string& q, int concurrency = 10,
                                            queue::Millis lease = std::chrono::seconds(10)) {
    auto c = queue::Consumer::create(loop.get(), {.redis_url = redis.url(),
                                                  .queues = {{q, concurrency}},
                                                  .lease = lease})
                 .value();
    return c;
  }
  void start(queue::Consumer& c) {
    auto r = await<void>(loop, [&](auto cb) { c.start(cb); });
    REQUIRE(r);
  }
};

}  // namespace clusterd::test
