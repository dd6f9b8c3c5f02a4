// worker::QueueLink (see queue_link.h).
#include "worker/queue_link.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "common/log.h"
#include "queue/handlers.h"
#include "worker/metrics.h"
#include "worker/worker.h"

namespace clusterd::worker {

QueueLink::QueueLink(uv_loop_t* loop, const WorkerOptions& options)
    : loop_(loop), options_(options) {
  auto client = queue::Client::create(
      loop_, {.redis_url = options_.redis_url,
              .strict = options_.queue.strict,
              .client_name = "clusterd-worker",
              .defaults = options_.queue.queues});
  if (!client) {
    error_ = client.error();
    return;
  }
  client_ = std::move(*client);
  if (options_.spec.queues.empty()) return;

  queue::ConsumerOptions co;
  co.redis_url = options_.redis_url;
  for (const auto& [name, concurrency] : options_.spec.queues) {
    co.queues.push_back({name, concurrency});
    consumed_.push_back(name);
  }
  co.strict = options_.queue.strict;
  co.defaults = options_.queue.queues;
  co.client_name = "clusterd-worker-consumer";
  auto consumer = queue::Consumer::create(loop_, std::move(co));
  if (!consumer) {
    error_ = consumer.error();
    return;
  }
  consumer_ = std::move(*consumer);
  queue::registerBuiltinHandlers(*consumer_, loop_);
  queue::registerCommandHandlers(*consumer_, loop_, options_.handlers);
}

QueueLink::~QueueLink() { *alive_ = false; }

Result<void> QueueLink::start(std::function<void()> on_connected,
                              std::function<void(const Error&)> on_fatal) {
  if (error_) return *error_;
  std::weak_ptr<bool> alive = alive_;
  auto announce = [this, alive, cb = std::move(on_connected)]() {
    if (alive.expired()) return;
    if (cb) cb();
  };
  if (client_->connection().ready()) {
    announce();
  } else {
    client_->connection().onReady(announce);
  }
  if (!consumer_) return success();
  std::string queues = fmt::format("{}", fmt::join(consumed_, ", "));
  consumer_->start([this, queues, alive, announce, on_fatal = std::move(on_fatal)](Result<void> r) {
    if (alive.expired()) return;
    if (!r) {
      log::error("worker", "cannot consume {}: {}", queues, r.error().message);
      if (on_fatal) on_fatal(r.error());
      return;
    }
    consuming_ = true;
    log::info("worker", "consuming {}", queues);
    announce();
  });
  return success();
}

bool QueueLink::connected() const { return client_ && client_->connection().ready(); }

void QueueLink::ping(std::chrono::milliseconds, std::function<void(std::string error)> done) {
  if (!client_) return done(error_ ? error_->message : "no Redis client");
  client_->connection().command({"PING"}, [done = std::move(done)](const queue::Reply& r) {
    done(r.isError() ? std::string(r.error()) : std::string());
  });
}

QueueLink::Counts QueueLink::counts() const {
  Counts c;
  if (!consumer_) return c;
  queue::ConsumerStats s = consumer_->stats();
  c.done = s.completed;
  c.failed = s.failed;
  c.dead = s.dead;
  c.in_flight = static_cast<uint64_t>(std::max(s.in_flight, 0));
  return c;
}

void QueueLink::renderMetrics(std::function<void(std::string text)> done) {
  std::string out;
  if (consumer_) {
    queue::ConsumerStats s = consumer_->stats();
    out += "# HELP clusterd_worker_jobs_total Job attempts this worker process ended, by outcome.\n";
    out += "# TYPE clusterd_worker_jobs_total counter\n";
    out += fmt::format("clusterd_worker_jobs_total{{outcome=\"done\"}} {}\n", s.completed);
    out += fmt::format("clusterd_worker_jobs_total{{outcome=\"failed\"}} {}\n", s.failed);
    out += fmt::format("clusterd_worker_jobs_total{{outcome=\"dead\"}} {}\n", s.dead);
    out += fmt::format("clusterd_worker_jobs_total{{outcome=\"stale\"}} {}\n", s.stale);
    out += "# HELP clusterd_worker_jobs_in_flight Jobs this worker process is running now.\n";
    out += "# TYPE clusterd_worker_jobs_in_flight gauge\n";
    out += fmt::format("clusterd_worker_jobs_in_flight {}\n", s.in_flight);
    // The same, by queue: one family per counter, one series per consumed queue.
    struct Family {
      const char* name;
      const char* type;
      const char* help;
      uint64_t (*value)(const queue::QueueJobStats&);
    };
    static constexpr Family kFamilies[] = {
        {"clusterd_jobs_processed_total", "counter", "Jobs this worker process completed, by queue.",
         [](const queue::QueueJobStats& q) { return q.completed; }},
        {"clusterd_jobs_failed_total", "counter", "Job attempts this worker process failed (retried or dead), by queue.",
         [](const queue::QueueJobStats& q) { return q.failed; }},
        {"clusterd_jobs_dead_total", "counter", "Jobs this worker process sent to dead, by queue.",
         [](const queue::QueueJobStats& q) { return q.dead; }},
        {"clusterd_jobs_in_flight", "gauge", "Jobs this worker process is running now, by queue.",
         [](const queue::QueueJobStats& q) { return static_cast<uint64_t>(std::max(q.in_flight, 0)); }},
        {"clusterd_jobs_timed_out_total", "counter", "Job attempts ended by the job's timeout, by queue.",
         [](const queue::QueueJobStats& q) { return q.timed_out; }},
        {"clusterd_jobs_overrunning", "gauge",
         "Handlers still running after their job timed out, each holding its slot, by queue.",
         [](const queue::QueueJobStats& q) { return static_cast<uint64_t>(std::max(q.overrunning, 0)); }},
    };
    for (const Family& f : kFamilies) {
      out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", f.name, f.help, f.name, f.type);
      for (const auto& [name, qs] : s.by_queue)
        out += fmt::format("{}{{queue=\"{}\"}} {}\n", f.name, promLabel(name), f.value(qs));
    }
  }
  if (consumed_.empty() || !connected()) return done(std::move(out));

  // One counts call per consumed queue, pipelined on the client's
  // connection; rendered in queue order once all have answered.
  struct State {
    std::vector<std::optional<queue::QueueCounts>> counts;
    size_t pending = 0;
    std::string head;
    std::function<void(std::string)> done;
  };
  auto st = std::make_shared<State>();
  st->counts.resize(consumed_.size());
  st->pending = consumed_.size();
  st->head = std::move(out);
  st->done = std::move(done);
  std::weak_ptr<bool> alive = alive_;
  for (size_t i = 0; i < consumed_.size(); ++i) {
    client_->counts(consumed_[i], [st, i, alive](Result<queue::QueueCounts> r) {
      if (r) st->counts[i] = std::move(*r);
      if (--st->pending > 0) return;
      std::string text = std::move(st->head);
      text += "# HELP clusterd_queue_jobs Jobs in each consumed queue by state (all workers).\n";
      text += "# TYPE clusterd_queue_jobs gauge\n";
      for (const auto& c : st->counts) {
        if (!c) continue;
        std::string q = promLabel(c->queue);
        text += fmt::format("clusterd_queue_jobs{{queue=\"{}\",state=\"waiting\"}} {}\n", q, c->waiting);
        text += fmt::format("clusterd_queue_jobs{{queue=\"{}\",state=\"active\"}} {}\n", q, c->active);
        text += fmt::format("clusterd_queue_jobs{{queue=\"{}\",state=\"delayed\"}} {}\n", q, c->delayed);
        text += fmt::format("clusterd_queue_jobs{{queue=\"{}\",state=\"dead\"}} {}\n", q, c->dead);
      }
      text += "# HELP clusterd_queue_processed_total Jobs of each consumed queue by outcome since it was created (all workers).\n";
      text += "# TYPE clusterd_queue_processed_total counter\n";
      for (const auto& c : st->counts) {
        if (!c) continue;
        std::string q = promLabel(c->queue);
        text += fmt::format("clusterd_queue_processed_total{{queue=\"{}\",outcome=\"enqueued\"}} {}\n", q, c->enqueued_total);
        text += fmt::format("clusterd_queue_processed_total{{queue=\"{}\",outcome=\"completed\"}} {}\n", q, c->completed_total);
        text += fmt::format("clusterd_queue_processed_total{{queue=\"{}\",outcome=\"failed\"}} {}\n", q, c->failed_total);
        text += fmt::format("clusterd_queue_processed_total{{queue=\"{}\",outcome=\"dead\"}} {}\n", q, c->dead_total);
      }
      if (alive.expired()) return;
      st->done(std::move(text));
    });
  }
}

void QueueLink::drain(std::chrono::milliseconds timeout, std::function<void()> done) {
  if (!consumer_) return done();
  consumer_->drain(timeout, std::move(done));
}

}  // namespace clusterd::worker
