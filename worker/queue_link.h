// worker::QueueLink: the worker's side of Redis: the link used by the HTTP
// front (health pings, rate limits) and the queue module's client and
// consumer for the job API and the configured queues.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/result.h"
#include "worker/redis_link.h"

namespace clusterd::worker {

struct WorkerOptions;

class QueueLink {
 public:
  struct Counts {
    uint64_t done = 0;
    uint64_t failed = 0;
    uint64_t in_flight = 0;
  };

  QueueLink(uv_loop_t* loop, const WorkerOptions& options);
  ~QueueLink();

  // Connects; `on_connected` runs once Redis first answers.
  Result<void> start(std::function<void()> on_connected);
  bool connected() const;
  void ping(std::chrono::milliseconds timeout, std::function<void(std::string error)> done);
  RedisLink& redis() { return *redis_; }

  Counts counts() const;
  // Stops taking jobs, finishes or releases those held, then calls `done`.
  void drain(std::function<void()> done);
  // The drain deadline passed: give up on what is left.
  void abandon();

 private:
  uv_loop_t* loop_;
  const WorkerOptions& options_;
  std::unique_ptr<RedisLink> redis_;
  bool announced_ = false;
};

}  // namespace clusterd::worker
