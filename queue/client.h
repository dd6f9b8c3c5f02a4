// queue::Client: enqueue jobs, inspect queues and jobs, and run the per-queue
// admin controls, asynchronously on the caller's libuv loop.
//
// Every call completes its callback exactly once on the loop thread, with a
// value or an Error naming the Redis address and what went wrong. While Redis
// is down, calls fail fast (they are never queued or silently dropped); the
// client reconnects by itself. A successful enqueue means the job is in Redis
// (with AOF, fsynced as the server's appendfsync says).
//
//   auto client = queue::Client::create(loop, {.redis_url = url});
//   (*client)->enqueue("orders", {.name = "order.process",
//                                 .payload = queue::payloadFromJson({{"order_id", 7}})},
//                      [](Result<queue::Enqueued> r) { ... r->id ... });
#pragma once

#include <uv.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "config/spec.h"
#include "queue/job.h"

namespace clusterd::queue {

class RedisConnection;
class ScriptRunner;

struct ClientOptions {
  std::string redis_url = "redis://127.0.0.1:6379";
  bool strict = false;  // checkDurability() fails instead of warning
  std::string client_name = "clusterd";
  // Per-queue defaults (attempts, backoff, timeout, retention, rate limit).
  std::map<std::string, config::QueueDefaults> defaults;
};

struct Enqueued {
  std::string id;
  bool created = true;  // false: a pending job with the same unique key exists; id is its id
};

// One queue's sizes and counters (`clusterd queues`).
struct QueueCounts {
  std::string queue;
  int64_t waiting = 0, active = 0, delayed = 0, completed = 0, dead = 0;
  bool paused = false;
  int64_t per_min = 0;  // jobs completed in the last minute
  // Totals since the queue was created.
  int64_t enqueued_total = 0, completed_total = 0, failed_total = 0, dead_total = 0, stalled_total = 0;
};

// One queue as `clusterd queues --json` and `GET /v1/queues` print it.
nlohmann::json toJson(const QueueCounts& c);

enum class AdminOp { kPause, kResume, kDrain, kClean, kRetry, kDelete };

template <typename T>
using Callback = std::function<void(Result<T>)>;

class Client {
 public:
  static Result<std::unique_ptr<Client>> create(uv_loop_t* loop, ClientOptions options);
  ~Client();

  void enqueue(const std::string& queue, NewJob job, Callback<Enqueued> cb);
  // Many jobs in pipelined batches of up to 500 per script call; the results
  // are in input order. On an error, some batches may have been enqueued.
  void enqueueBulk(const std::string& queue, std::vector<NewJob> jobs, Callback<std::vector<Enqueued>> cb);

  void queues(Callback<std::vector<std::string>> cb);
  void counts(const std::string& queue, Callback<QueueCounts> cb);
  void listJobs(const std::string& queue, JobState state, int offset, int limit, Callback<std::vector<Job>> cb);
  void job(const std::string& queue, const std::string& id, Callback<std::optional<Job>> cb);

  // kClean: arg = age in ms (0 = all finished jobs); kRetry/kDelete: arg = id.
  // The value is the number of jobs affected. kDrain and kClean run as many
  // script calls of at most 1,000 jobs as the queue needs.
  void admin(const std::string& queue, AdminOp op, const std::string& arg, Callback<int64_t> cb);
  // Writes the queue's shared settings (retention, stall cap, rate limit) to
  // Redis, where every consumer reads them.
  void configure(const std::string& queue, const config::QueueDefaults& d, int max_stalls, Callback<bool> cb);

  // Checks appendonly and maxmemory-policy. Problems are logged as warnings;
  // with ClientOptions::strict they are an error.
  void checkDurability(Callback<bool> cb);

  RedisConnection& connection() { return *conn_; }
  const std::string& redisText() const;

 private:
  Client(uv_loop_t* loop, ClientOptions options, std::unique_ptr<RedisConnection> conn);
  Result<std::vector<std::string>> buildArgs(const std::string& queue, const std::vector<NewJob>& jobs,
                                             size_t from, size_t to, int64_t now) const;
  void registerQueue(const std::string& queue);
  void adminBatches(const std::string& queue, AdminOp op, const std::string& arg,
                    Callback<int64_t> cb);

  uv_loop_t* loop_;
  ClientOptions options_;
  std::unique_ptr<RedisConnection> conn_;
  std::unique_ptr<ScriptRunner> scripts_;
  std::map<std::string, bool> registered_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// Milliseconds since the Unix epoch on this host: the `now` a client sends
// with each script call. The scripts keep every stored time on the Redis
// server's clock and move this host's times (run_at, next_due) by the
// difference, so hosts' clocks need not agree.
int64_t nowMs();

}  // namespace clusterd::queue
