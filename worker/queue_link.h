// worker::QueueLink: the worker's side of Redis. It owns the queue module's
// Client (job API, queue inspection, health pings and the rate limiter all
// share its one connection) and, when the worker has `queues:`, one
// Consumer for all of them with the built-in handlers (noop, sleep, and the
// ecosystem file's `handlers:` commands). Other modules (the shop) register
// their handlers on that same consumer before the worker starts, so the
// worker's drain covers every job this process runs.
//
// Design: the client and consumer are created with the QueueLink (before
// start()) so handlers can be registered early; a bad Redis URL is kept as
// an error and reported by start(), where the worker can turn it into an
// exit code. Counters come from the consumer; queue depths and cluster-wide
// totals per queue come from Redis when /metrics is scraped.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "queue/client.h"
#include "queue/consumer.h"
#include "queue/redis.h"

namespace clusterd::worker {

struct WorkerOptions;

class QueueLink {
 public:
  // This process's job counters since start (for CLUSTERD_STATS).
  struct Counts {
    uint64_t done = 0;
    uint64_t failed = 0;
    uint64_t dead = 0;
    uint64_t in_flight = 0;
  };

  QueueLink(uv_loop_t* loop, const WorkerOptions& options);
  ~QueueLink();

  // Starts the consumer (if any); `on_connected` runs when Redis answers
  // (after every reconnection) and once more when the consumer has started.
  // Fails at once when the Redis URL is malformed; `on_fatal` runs later if
  // the consumer refuses to start (queue.strict on a Redis that may lose
  // jobs).
  Result<void> start(std::function<void()> on_connected, std::function<void(const Error&)> on_fatal);
  bool connected() const;
  // The consumer passed its start-up check and reserves jobs.
  bool consuming() const { return consuming_; }
  void ping(std::chrono::milliseconds timeout, std::function<void(std::string error)> done);

  // Null when the Redis URL was malformed.
  queue::Client* client() { return client_.get(); }
  queue::RedisConnection* redis() { return client_ ? &client_->connection() : nullptr; }
  // Null when the worker consumes no queues.
  queue::Consumer* consumer() { return consumer_.get(); }
  // The queues this worker consumes, in name order.
  const std::vector<std::string>& consumedQueues() const { return consumed_; }

  Counts counts() const;
  // Appends Prometheus text for /metrics: this process's job counters and,
  // per consumed queue, its depths and totals read from Redis. Calls `done`
  // when the text is complete (at once when Redis is not connected).
  void renderMetrics(std::function<void(std::string text)> done);

  // Stops taking jobs, lets running ones finish within `timeout`, releases
  // the rest (and every reserved job not started) back to their queues,
  // then calls `done`.
  void drain(std::chrono::milliseconds timeout, std::function<void()> done);

 private:
  uv_loop_t* loop_;
  const WorkerOptions& options_;
  std::optional<Error> error_;
  std::unique_ptr<queue::Client> client_;
  std::unique_ptr<queue::Consumer> consumer_;
  std::vector<std::string> consumed_;
  bool consuming_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace clusterd::worker
