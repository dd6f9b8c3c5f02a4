// worker::Worker: wiring, dispatch and the lifecycle (see worker.h).
#include "worker/worker.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "common/log.h"
#include "db/pool.h"
#include "worker/health.h"
#include "worker/queue_link.h"
#include "worker/rate_limit.h"

namespace clusterd::worker {

Worker::Worker(uv_loop_t* loop, WorkerOptions options)
    : loop_(loop), options_(std::move(options)) {
  auto observer = [this](const Exchange& ex, size_t bytes) { observe(ex, bytes); };
  if (options_.front == Front::kServe) {
    server_ = std::make_unique<Server>(
        loop_, serverLimits(), [this](const std::shared_ptr<Exchange>& ex) { dispatch(ex); },
        observer);
  }
  if (!options_.health_host.empty()) {
    health_server_ = std::make_unique<Server>(
        loop_, serverLimits(), [this](const std::shared_ptr<Exchange>& ex) { dispatchHealth(ex); },
        observer);
  }
  metrics_.setIdentity(options_.name, options_.instance);
  health_ = std::make_unique<HealthCache>(loop_, options_.health_timeout);

  if (!options_.postgres_url.empty()) {
    db::PoolOptions po;
    po.conninfo = options_.postgres_url;
    po.size = options_.postgres.pool_size;
    po.connect_timeout = options_.postgres.connect_timeout;
    po.slow_query = options_.postgres.slow_query;
    db_ = std::make_unique<db::Pool>(loop_, po);
  }
  if (!options_.redis_url.empty()) {
    queues_ = std::make_unique<QueueLink>(loop_, options_);
    if (queues_->redis() && !options_.spec.rate_limits.empty()) {
      limiter_ = std::make_unique<RateLimiter>(loop_, *queues_->redis(), options_.spec.rate_limits,
                                               options_.health_timeout);
    }
  }
  installBuiltinRoutes();
}

Worker::~Worker() = default;

ServerLimits Worker::serverLimits() const {
  ServerLimits lim;
  lim.max_header_bytes = options_.spec.max_header_bytes;
  lim.max_body_bytes = options_.spec.max_body_bytes;
  lim.request_timeout_ms = static_cast<uint64_t>(options_.spec.request_timeout.count());
  lim.keepalive_timeout_ms = static_cast<uint64_t>(options_.spec.keepalive_timeout.count());
  lim.max_connections = options_.spec.max_connections;
  lim.max_unsent_bytes = options_.spec.max_unsent_bytes;
  for (const std::string& p : options_.spec.trusted_proxies) {
    // Validated when the settings were read (config/worker_fields.cpp, the CLI).
    if (auto c = parseCidr(p)) lim.trusted_proxies.push_back(*c);
  }
  return lim;
}

uint64_t Worker::openConnections() const {
  return (server_ ? server_->stats().open : 0) +
         (health_server_ ? health_server_->stats().open : 0);
}

std::string Worker::whereabouts() const {
  std::string where;
  if (server_) {
    where = "listening on " + server_->address();
  } else {
    const std::vector<std::string> none;
    const auto& queues = queues_ ? queues_->consumedQueues() : none;
    where = "consuming " +
            (queues.empty() ? std::string("nothing") : fmt::format("{}", fmt::join(queues, ", ")));
  }
  if (health_server_) where += ", /health and /metrics on " + health_server_->address();
  return where;
}

queue::Consumer* Worker::consumer() { return queues_ ? queues_->consumer() : nullptr; }
queue::Client* Worker::queueClient() { return queues_ ? queues_->client() : nullptr; }

uint64_t Worker::uptimeMs() const { return uv_now(loop_) - started_ms_; }

Result<void> Worker::start() {
  started_ms_ = uv_now(loop_);
  const config::JobApiSpec& api = options_.spec.job_api;
  if (server_) {
    Result<void> r = options_.listen_fd >= 0
                         ? server_->listenFd(options_.listen_fd)
                         : server_->listenTcp(options_.listen_host, options_.listen_port);
    if (!r) return r;
    if (api.enabled && options_.job_api_token.empty() && options_.auth_token.empty() &&
        !server_->loopbackOnly()) {
      return Error{fmt::format(
          "the job API (http.job_api) needs a bearer token on {}, which is not loopback only: set "
          "job_api.token_env or job_api.token_file (--job-api-token-env, --job-api-token-file), "
          "or listen on 127.0.0.1",
          server_->address())};
    }
  } else if (api.enabled) {
    return Error{
        "the job API (http.job_api) is served on the worker's front, and this worker has none: "
        "give it `listen` (--listen HOST:PORT), or drop the job API"};
  }
  if (health_server_) {
    // Accepts at once: /health and /metrics tell the truth while Redis is
    // still coming up too.
    Result<void> r = health_server_->listenTcp(options_.health_host, options_.health_port);
    if (r) r = health_server_->startAccepting();
    if (!r) return Error{"health listener (health_listen, --health-listen): " + r.error().message};
  }
  listening_ = true;
  metrics_.setRoutes([&] {
    std::vector<std::string> labels;
    for (const auto& route : router_.routes()) labels.push_back(route.pattern);
    return labels;
  }());

  if (db_) {
    db_->start();
    db::Pool* pool = db_.get();
    health_->addProbe("postgres", [pool](std::chrono::milliseconds timeout, auto done) {
      pool->ping(timeout, [done](std::optional<db::DbError> err) {
        done(err ? err->message : std::string());
      });
    });
  } else {
    health_->addDisabled("postgres");
  }
  if (queues_) {
    QueueLink* q = queues_.get();
    health_->addProbe("redis", [q](std::chrono::milliseconds timeout, auto done) {
      q->ping(timeout, std::move(done));
    });
    auto started = queues_->start([this] { maybeReady(); },
                                  [this](const Error&) {
                                    // Refusing to run jobs on a Redis that may lose
                                    // them is a start-up failure (exit 111), so the
                                    // master shows the app as errored.
                                    exit_code_ = 111;
                                    finished_ = true;
                                    uv_stop(loop_);
                                  });
    if (!started) return started;
  } else {
    health_->addDisabled("redis");
  }

  auto on_signal = [](uv_signal_t* s, int) { static_cast<Worker*>(s->data)->shutdown(); };
  uv_signal_init(loop_, sigterm_.get());
  sigterm_->data = this;
  uv_signal_start(sigterm_.get(), on_signal, SIGTERM);
  uv_signal_init(loop_, sigint_.get());
  sigint_->data = this;
  uv_signal_start(sigint_.get(), on_signal, SIGINT);

  // Loop lag: a 100 ms timer measures how late it fires.
  uv_timer_init(loop_, lag_timer_.get());
  lag_timer_->data = this;
  lag_expected_ns_ = uv_hrtime() + 100'000'000;
  uv_timer_start(
      lag_timer_.get(), [](uv_timer_t* t) { static_cast<Worker*>(t->data)->onLagProbe(); }, 100,
      100);

  uv_timer_init(loop_, report_timer_.get());
  report_timer_->data = this;
  uv_timer_start(
      report_timer_.get(), [](uv_timer_t* t) { static_cast<Worker*>(t->data)->report(); }, 1000,
      1000);

  if (const char* w = std::getenv("WATCHDOG_USEC"); w && notifier_.enabled()) {
    uint64_t usec = std::strtoull(w, nullptr, 10);
    if (usec > 0) {
      uint64_t period = std::max<uint64_t>(usec / 2000, 10);
      uv_timer_init(loop_, watchdog_timer_.get());
      watchdog_timer_->data = this;
      uv_timer_start(
          watchdog_timer_.get(),
          [](uv_timer_t* t) { static_cast<Worker*>(t->data)->notifier_.send("WATCHDOG=1"); }, period,
          period);
    }
  }

  // READY=1 once Redis answered (when configured), or after ready_wait so a
  // worker whose Redis is down still serves /health (503) instead of
  // restarting forever.
  uv_timer_init(loop_, ready_timer_.get());
  ready_timer_->data = this;
  uv_timer_start(
      ready_timer_.get(),
      [](uv_timer_t* t) {
        auto* self = static_cast<Worker*>(t->data);
        if (!self->ready_sent_) {
          const queue::RedisConnection* redis = self->queues_ ? self->queues_->redis() : nullptr;
          log::warn("worker", "Redis at {} not reachable yet; serving anyway",
                    redis ? redis->address().text : std::string("(no valid URL)"));
          self->ready("; Redis not reachable yet");
        }
      },
      static_cast<uint64_t>(options_.ready_wait.count()), 0);
  if (!queues_ && server_) {
    // Nothing to wait for: accept now, and fail the start if that fails.
    if (auto a = server_->startAccepting(); !a) return a;
  }
  maybeReady();
  log::info("worker", "{} {}", options_.name, whereabouts());
  return success();
}

void Worker::maybeReady() {
  if (ready_sent_ || !listening_) return;
  if (queues_ && !queues_->connected()) return;
  // With no front, READY=1 says the consumers take jobs.
  if (!server_ && queues_ && queues_->consumer() && !queues_->consuming()) return;
  ready("");
}

void Worker::ready(const std::string& status) {
  ready_sent_ = true;
  uv_timer_stop(ready_timer_.get());
  if (server_) {
    if (auto a = server_->startAccepting(); !a) {
      log::error("worker", "{}", a.error().message);
      exit_code_ = 111;
      finished_ = true;
      uv_stop(loop_);
      return;
    }
  }
  notifier_.send("READY=1\nSTATUS=" + whereabouts() + status);
}

int Worker::run() {
  uv_run(loop_, UV_RUN_DEFAULT);
  flushAccessLog();
  return exit_code_;
}

void Worker::dispatch(const std::shared_ptr<Exchange>& ex) {
  Request& req = ex->req;
  Router::Match m = router_.match(req.method, req.path);
  ex->route = m.route;
  Responder res(ex);
  if (m.route < 0) {
    if (m.path_known) {
      res.header("Allow", m.allow).error(405, "method not allowed on this path");
    } else {
      res.error(404, "no route for " + req.path);
    }
    return;
  }
  if (!m.params.empty()) req.setParams(std::move(m.params));
  const Handler& handler = router_.routes()[static_cast<size_t>(m.route)].handler;

  if (!options_.auth_token.empty() && req.path.rfind("/v1/", 0) == 0 &&
      !bearerMatches(req, options_.auth_token)) {
    res.header("WWW-Authenticate", "Bearer").error(401, "missing or wrong bearer token");
    return;
  }

  if (limiter_) {
    if (const config::RateLimitTier* tier = limiter_->tierFor(req.method, req.path)) {
      Handler h = handler;
      limiter_->check(*tier, req.client_ip, [this, res, h](const RateDecision& d) mutable {
        res.header("X-RateLimit-Limit", std::to_string(d.limit))
            .header("X-RateLimit-Remaining", std::to_string(d.remaining))
            .header("X-RateLimit-Reset", std::to_string(d.reset_s));
        if (!d.allowed) {
          metrics_.countRateLimited();
          res.header("Retry-After", std::to_string(d.retry_after_s))
              .error(429, "rate limit exceeded; retry after the Retry-After seconds");
          return;
        }
        h(res.request(), res);
      });
      return;
    }
  }
  handler(req, res);
}

void Worker::observe(const Exchange& ex, size_t bytes) {
  double seconds = static_cast<double>(uv_hrtime() - ex.req.start_ns) / 1e9;
  metrics_.recordRequest(ex.route, ex.status, seconds);
  if (!options_.spec.access_log) return;
  nlohmann::json line = {{"time", static_cast<double>(std::time(nullptr))},
                         {"app", options_.name},
                         {"ip", ex.req.client_ip},
                         {"method", methodName(ex.req.method)},
                         {"path", ex.req.target},
                         {"status", ex.status},
                         {"bytes", bytes},
                         {"ms", seconds * 1000.0},
                         {"ua", ex.req.header("user-agent")}};
  access_log_ += line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  access_log_ += '\n';
  if (access_log_.size() > 16 * 1024) flushAccessLog();
}

void Worker::flushAccessLog() {
  size_t off = 0;
  while (off < access_log_.size()) {
    ssize_t n = ::write(STDOUT_FILENO, access_log_.data() + off, access_log_.size() - off);
    if (n <= 0) break;  // stdout gone: drop the lines rather than block
    off += static_cast<size_t>(n);
  }
  access_log_.clear();
}

void Worker::onLagProbe() {
  uint64_t now = uv_hrtime();
  double lag_ms = now > lag_expected_ns_ ? static_cast<double>(now - lag_expected_ns_) / 1e6 : 0;
  metrics_.recordLoopLag(lag_ms);
  lag_expected_ns_ = now + 100'000'000;
  if (!access_log_.empty()) flushAccessLog();
}

void Worker::report() {
  double lag = metrics_.takeLoopLagMs();
  uint64_t rss = residentBytes();
  QueueLink::Counts c = queues_ ? queues_->counts() : QueueLink::Counts{};
  nlohmann::json stats = {
      {"requests", metrics_.requests()},
      {"jobs_done", c.done},
      {"jobs_failed", c.failed},
      {"in_flight", c.in_flight},
      {"connections", openConnections()},
      {"loop_lag_ms", static_cast<double>(static_cast<int64_t>(lag * 100)) / 100},
      {"rss", rss}};
  std::string status = draining_ ? "draining" : "serving";
  notifier_.send(
      fmt::format("CLUSTERD_STATS={}\nSTATUS={}, {}: {} requests, {} jobs done, {} in flight",
                  stats.dump(), status, whereabouts(), metrics_.requests(), c.done, c.in_flight));
}

void Worker::shutdown() {
  if (draining_) return;
  draining_ = true;
  log::info("worker", "{} draining: {} connections open", options_.name, openConnections());
  notifier_.send("STOPPING=1\nSTATUS=draining");
  // Leave a margin before kill_timeout for the exit itself.
  uint64_t budget = static_cast<uint64_t>(options_.kill_timeout.count());
  budget = budget > 200 ? budget - 150 : budget;
  uv_timer_init(loop_, deadline_timer_.get());
  deadline_timer_->data = this;
  uv_timer_start(
      deadline_timer_.get(),
      [](uv_timer_t* t) {
        auto* self = static_cast<Worker*>(t->data);
        log::warn("worker", "drain deadline reached; closing {} connections",
                  self->openConnections());
        if (self->server_) self->server_->closeAll();
        self->http_drained_ = true;
        self->jobs_drained_ = true;
        self->finishDrain();
      },
      budget, 0);
  // The health listener is left open: it answers until the drain ends.
  if (server_) {
    server_->drain([this] {
      http_drained_ = true;
      finishDrain();
    });
  } else {
    http_drained_ = true;
  }
  if (queues_) {
    // Jobs still running shortly before the deadline are released back to
    // their queue (another worker runs them); reserved jobs not started yet
    // are released at once.
    uint64_t jobs_budget = budget > 300 ? budget - 250 : budget / 2;
    queues_->drain(std::chrono::milliseconds(jobs_budget), [this] {
      jobs_drained_ = true;
      finishDrain();
    });
  } else {
    jobs_drained_ = true;
    finishDrain();
  }
}

void Worker::finishDrain() {
  if (finished_ || !http_drained_ || !jobs_drained_) return;
  finished_ = true;
  report();
  if (health_server_) health_server_->closeAll();
  log::info("worker", "{} drained; exiting", options_.name);
  flushAccessLog();
  exit_code_ = 0;
  uv_stop(loop_);
}

}  // namespace clusterd::worker
