// worker::Worker: the built-in worker process. It owns the HTTP server (the
// front), the per-instance health listener, the router with the built-in
// routes, the queue client and consumer, the Postgres pool, the health
// cache, metrics and the reports to the master, all on one libuv loop, and
// it runs the lifecycle: start, READY, periodic stats, and a graceful drain
// on SIGTERM.
//
// Other modules plug in through the accessors before run():
//   worker::Worker w(loop, options);
//   jobs::install(w);             // adds routes to w.router() and handlers to w.consumer()
//   return w.run();
//
// Design: the Worker is the one object that knows every part; the parts do
// not know each other. Dependencies that are not configured (no Postgres
// URL, no queues) are simply absent: their accessors return null and
// /health reports them as "disabled". The worker accepts connections from
// the moment it is ready (READY=1: Redis connected when configured, or
// ready_wait passed), not from the moment it listens: on a socket shared
// with the workers it replaces, those keep taking the clients meanwhile, so
// a new worker never turns a job request away because its Redis link is
// still coming up.
//
// A worker without a front (Front::kNone) runs its consumers alone: READY=1
// then means they take jobs. The health listener, when configured, is a
// second Server on this instance's own port that answers only /health and
// /metrics; it accepts from start() on and keeps answering through the
// drain, so the instance can be watched until it exits.
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
#include "common/uv_handle.h"
#include "config/spec.h"
#include "worker/metrics.h"
#include "worker/notify.h"
#include "worker/router.h"
#include "worker/server.h"

namespace clusterd::db {
class Pool;
}
namespace clusterd::queue {
class Client;
class Consumer;
}  // namespace clusterd::queue

namespace clusterd::worker {

class HealthCache;
class RateLimiter;
class QueueLink;

// Whether the worker serves its HTTP front (job API, modules' routes,
// /health, /metrics) or only consumes queues.
enum class Front { kServe, kNone };

struct WorkerOptions {
  std::string name = "worker";  // the app name, for logs and STATUS
  int instance = 0;             // CLUSTERD_INSTANCE, for /metrics
  config::WorkerSpec spec;      // limits, queues, rate limits, auth, access log
  Front front = Front::kServe;
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 0;
  int listen_fd = -1;           // an inherited listening socket (fd 3); -1 = bind listen_*
  // The health listener (/health and /metrics only); empty host = none. The
  // port is this instance's own (the configured base plus the instance).
  std::string health_host;
  uint16_t health_port = 0;
  std::string redis_url;        // empty = no Redis: no queue routes, limits or consumer
  std::string postgres_url;     // empty = no Postgres pool
  config::QueueSection queue;   // the ecosystem file's queue section (defaults per queue)
  config::PostgresSection postgres;
  config::MailSection mail;
  std::vector<config::HandlerSpec> handlers;
  std::string auth_token;       // bearer token for /v1/; empty = no auth
  std::string job_api_token;    // bearer token for the job API (spec.job_api); empty = none
  std::chrono::milliseconds kill_timeout{1600};
  std::chrono::milliseconds health_timeout{500};
  std::chrono::milliseconds ready_wait{2000};  // longest wait for Redis before READY=1
};

class Worker {
 public:
  Worker(uv_loop_t* loop, WorkerOptions options);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Listens, connects to Redis and Postgres, starts consuming; errors a user
  // can fix (port taken, bad fd) come back as values.
  Result<void> start();
  // Runs the loop until the worker has drained after SIGTERM/SIGINT;
  // returns the process exit code.
  int run();
  // Begins the graceful drain (what SIGTERM does).
  void shutdown();

  uv_loop_t* loop() const { return loop_; }
  Router& router() { return router_; }
  Metrics& metrics() { return metrics_; }
  // The front; null when the worker only consumes (Front::kNone).
  Server* server() { return server_.get(); }
  // The health listener; null when none is configured.
  Server* healthServer() { return health_server_.get(); }
  const WorkerOptions& options() const { return options_; }
  // Null when not configured.
  db::Pool* db() { return db_.get(); }
  QueueLink* queues() { return queues_.get(); }
  // The one queue consumer of this process (null when it consumes no
  // queues): modules register their job handlers on it before start().
  queue::Consumer* consumer();
  // The queue client (null without Redis): enqueue and inspection.
  queue::Client* queueClient();

  // Called on every response (after metrics), e.g. for extra accounting.
  uint64_t uptimeMs() const;

 private:
  void installBuiltinRoutes();
  ServerLimits serverLimits() const;
  void dispatch(const std::shared_ptr<Exchange>& ex);
  void dispatchHealth(const std::shared_ptr<Exchange>& ex);
  // Open client connections on the front and the health listener.
  uint64_t openConnections() const;
  // "listening on ADDR" or "consuming Q, ...", plus the health address.
  std::string whereabouts() const;
  void observe(const Exchange& ex, size_t bytes);
  void onLagProbe();
  void report();
  void maybeReady();
  void ready(const std::string& status);  // READY=1 and start accepting
  void finishDrain();
  void flushAccessLog();

  uv_loop_t* loop_;
  WorkerOptions options_;
  Router router_;
  Metrics metrics_;
  Notifier notifier_;
  std::unique_ptr<Server> server_;         // null for Front::kNone
  std::unique_ptr<Server> health_server_;  // null without health_host
  std::unique_ptr<db::Pool> db_;
  std::unique_ptr<QueueLink> queues_;
  std::unique_ptr<HealthCache> health_;
  std::unique_ptr<RateLimiter> limiter_;

  UvHandle<uv_signal_t> sigterm_;
  UvHandle<uv_signal_t> sigint_;
  UvHandle<uv_timer_t> lag_timer_;
  UvHandle<uv_timer_t> report_timer_;
  UvHandle<uv_timer_t> watchdog_timer_;
  UvHandle<uv_timer_t> deadline_timer_;
  UvHandle<uv_timer_t> ready_timer_;

  uint64_t started_ms_ = 0;
  uint64_t lag_expected_ns_ = 0;
  bool listening_ = false;  // start() bound every listener it has
  bool ready_sent_ = false;
  bool draining_ = false;
  bool http_drained_ = false;
  bool jobs_drained_ = false;
  bool finished_ = false;
  int exit_code_ = 0;
  std::string access_log_;

  // GET /health's rendered body, rebuilt when the snapshot or the uptime
  // second changes.
  struct HealthBody {
    uint64_t version = UINT64_MAX;
    uint64_t uptime_s = UINT64_MAX;
    int status = 200;
    std::string body;
  } health_body_;
};

}  // namespace clusterd::worker
