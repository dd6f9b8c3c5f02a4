// queue::Consumer: runs the jobs of one or more queues with registered
// handlers, on a libuv loop owned by the caller (e.g. `clusterd worker`).
//
// Promises: at-least-once delivery. Jobs are reserved in batches under a
// lease that is extended while they run; completions are acknowledged in
// batches, and an acknowledgement also reserves the next batch in the same
// round trip. An idle consumer blocks on the queue's wake-up key (no
// polling). A failed attempt is retried with backoff until the job's attempts
// are used up, then the job is dead with its error history. A malformed job
// (not msgpack, no name, no handler for its name) goes to dead with the
// reason; it never stops the consumer. When Redis goes away the consumer
// keeps retrying and resumes by itself; jobs whose lease expired meanwhile
// are run again by whichever consumer reserves next.
//
//   auto c = queue::Consumer::create(loop, {.redis_url = url, .queues = {{"orders", 50}}}).value();
//   c->handle("order.process", [](const queue::Job& job, queue::Done done) {
//     if (bad_data) return done(queue::permanentFailure("order 7: unknown sku"));  // dead at once
//     ...; done(success());  // or done(Error{"db down"}): retried with backoff
//     // or done(queue::withResult({{"status", "shipped"}})): kept with the completed job
//   });
//   c->start([](Result<void> r) { ... });
//   ... on SIGTERM: c->drain(kill_timeout, [] { uv_stop(loop); });
#pragma once

#include <uv.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "config/spec.h"
#include "queue/job.h"

namespace clusterd::queue {

// Results are capped: a result over this many bytes of msgpack is not
// stored. The job still completes (its work is done; a retry would only
// repeat it), and oversizedResult(size) is stored in its place.
inline constexpr size_t kMaxResultBytes = 64 * 1024;
// The marker stored instead of a result that is too large:
// {"truncated": true, "bytes": <size refused>, "limit": 65536}.
nlohmann::json oversizedResult(size_t bytes);

// What a handler reports: success, optionally with a result kept with the
// completed job, or an Error. It converts from what handlers have always
// passed, so done(success()), done(Error{...}) and done(permanentFailure(...))
// need no change; done(withResult(json)) adds a result.
class Outcome {
 public:
  Outcome(Result<void> status) : status_(std::move(status)) {}
  Outcome(Error error) : status_(std::move(error)) {}
  // Success with a result given as one msgpack value ("" = no result).
  static Outcome withResultMsgpack(std::string msgpack);

  bool ok() const { return status_.ok(); }
  explicit operator bool() const { return ok(); }
  const Error& error() const { return status_.error(); }
  const Result<void>& status() const { return status_; }
  // The result as msgpack; empty when there is none (or the outcome failed).
  const std::string& result() const { return result_; }

 private:
  Result<void> status_;
  std::string result_;
};

// Success with a result; JSON null means no result.
Outcome withResult(const nlohmann::json& value);

// Completes one job: success(), withResult(value), or an Error whose message
// is kept as the attempt's error. Call it exactly once, on the loop thread. A
// plain Error is retried while the job has attempts left; permanentFailure()
// is not.
using Done = std::function<void(Outcome)>;
// Runs on the loop thread; must not block it.
using AsyncHandler = std::function<void(const Job&, Done)>;
// Runs on the libuv thread pool (may block); its outcome completes the job.
// A function returning Result<void> converts to it.
using SyncHandler = std::function<Outcome(const Job&)>;
// How the consumer asks running work to stop: gracefully when the job's
// timeout passed, at once when the drain's time is up.
enum class StopHow { kGraceful, kNow };
using Stop = std::function<void(StopHow)>;
// An async handler whose work can be stopped (a command): it returns how to
// stop it, and still calls done once, when the work has stopped.
using StoppableHandler = std::function<Stop(const Job&, Done)>;

struct ConsumerQueue {
  std::string name;
  int concurrency = 10;  // jobs of this queue run at once
  // The lease of this queue's reservations; 0 = the queue's entry in
  // ConsumerOptions::defaults (the ecosystem's `lease`), else ConsumerOptions::lease.
  Millis lease{0};
};

struct ConsumerOptions {
  std::string redis_url = "redis://127.0.0.1:6379";
  std::vector<ConsumerQueue> queues;
  int batch = 64;                      // most jobs per reservation
  Millis lease{10'000};                // a dead consumer's jobs run again after this
                                       // (for queues without their own lease, see ConsumerQueue)
  int max_stalls = 3;                  // leases a job may lose before it is dead
  bool strict = false;                 // refuse to start on a Redis that may lose jobs
  // Per-queue settings from the ecosystem file: `lease` applies to the
  // queue's reservations; retention and rate limit are written to Redis at
  // start; attempts, backoff and timeout fill in fields missing from a job
  // record (one written by a client in another language).
  std::map<std::string, config::QueueDefaults> defaults;
  std::string client_name = "clusterd-consumer";
};

// One queue's counters since start; the fields mean what ConsumerStats' do.
struct QueueJobStats {
  uint64_t completed = 0;
  uint64_t failed = 0;
  uint64_t dead = 0;
  uint64_t stale = 0;
  uint64_t reserved = 0;
  uint64_t timed_out = 0;
  int in_flight = 0;
  int overrunning = 0;
};

// Counters since start, for /metrics and the worker's CLUSTERD_STATS line.
struct ConsumerStats {
  uint64_t completed = 0;  // acknowledged
  uint64_t failed = 0;     // attempts that failed (retried or dead)
  uint64_t dead = 0;       // jobs this consumer sent to dead (incl. malformed)
  uint64_t stale = 0;      // completions refused: the lease had been lost
  uint64_t reserved = 0;   // jobs reserved
  uint64_t timed_out = 0;  // attempts ended by the job's timeout (also counted in failed)
  int in_flight = 0;       // jobs running now: each holds a concurrency slot
  // Of in_flight, handlers whose job timed out but whose work has not stopped
  // yet: a command being killed, or a callback or thread-pool task that cannot
  // be stopped. Each keeps its slot until it returns; its late answer is
  // discarded (the attempt already failed and the job was retried).
  int overrunning = 0;
  bool redis_ready = false;
  // The same counters per consumed queue (every queue has an entry); the
  // fields above are their sums.
  std::map<std::string, QueueJobStats> by_queue;
};

class Consumer {
 public:
  static Result<std::unique_ptr<Consumer>> create(uv_loop_t* loop, ConsumerOptions options);
  ~Consumer();

  void handle(const std::string& job_name, AsyncHandler handler);
  void handleSync(const std::string& job_name, SyncHandler handler);
  void handleStoppable(const std::string& job_name, StoppableHandler handler);
  bool hasHandler(const std::string& job_name) const;

  // Checks Redis durability (warns, or fails under strict), writes the queue
  // settings, then starts reserving. `cb` reports the start-up check.
  void start(std::function<void(Result<void>)> cb);
  // Stops reserving and waits for running jobs; after `timeout` the jobs
  // still running are released back to their queue. `cb` runs when every
  // job is acknowledged or released (or Redis could not be reached).
  void drain(Millis timeout, std::function<void()> cb);

  ConsumerStats stats() const;
  // Runs on the loop for each job whose acknowledgement Redis accepted (for
  // metrics and latency measurements); one hook, replaced by a later call.
  void onCompleted(std::function<void(const std::string& queue, const std::string& id)> hook);

  class Impl;

 private:
  explicit Consumer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A failure that retrying cannot fix (bad data, a constraint violation):
// `done(permanentFailure("order 7: unknown sku 'X'"))`, or return it from a
// sync handler, and the job goes straight to dead with its remaining attempts
// unused. The message becomes "permanent failure: <message>"; any Error whose
// message starts so counts as permanent (pass it on unchanged, do not wrap it).
Error permanentFailure(std::string_view message);
bool isPermanentFailure(const Error& error);

// The retry delay after `attempt` failed attempts (1-based): fixed, or
// base * 2^(attempt-1) with jitter (a random point in the upper half).
int64_t backoffDelayMs(BackoffType type, int64_t base_ms, int attempt, uint32_t random);

}  // namespace clusterd::queue
