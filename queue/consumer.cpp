// The consumer's reserve/acknowledge cycle, lease extension and drain
// (queue/consumer.h; the design is in queue/consumer_impl.h).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "common/log.h"
#include "queue/consumer_impl.h"
#include "queue/names.h"

namespace clusterd::queue {

int64_t backoffDelayMs(BackoffType type, int64_t base_ms, int attempt, uint32_t random) {
  if (base_ms <= 0) return 0;
  if (type == BackoffType::kFixed) return base_ms;
  int shift = std::clamp(attempt - 1, 0, 30);
  int64_t full = std::min<int64_t>(base_ms << std::min(shift, 20), 24ll * 3600 * 1000);
  int64_t half = full / 2;
  return half + static_cast<int64_t>(random % static_cast<uint64_t>(full - half + 1));
}

namespace {
constexpr std::string_view kPermanentPrefix = "permanent failure: ";
}  // namespace

Error permanentFailure(std::string_view message) {
  return Error{fmt::format("{}{}", kPermanentPrefix, message)};
}

bool isPermanentFailure(const Error& error) { return error.message.rfind(kPermanentPrefix, 0) == 0; }

Outcome Outcome::withResultMsgpack(std::string msgpack) {
  Outcome o{success()};
  o.result_ = std::move(msgpack);
  return o;
}

Outcome withResult(const nlohmann::json& value) {
  if (value.is_null()) return Outcome{success()};
  return Outcome::withResultMsgpack(payloadFromJson(value));
}

nlohmann::json oversizedResult(size_t bytes) {
  return {{"truncated", true}, {"bytes", bytes}, {"limit", kMaxResultBytes}};
}

// ---- Consumer (the public face) ----

Result<std::unique_ptr<Consumer>> Consumer::create(uv_loop_t* loop, ConsumerOptions options) {
  if (options.queues.empty()) return Error{"a consumer needs at least one queue"};
  for (auto& q : options.queues) {
    if (!validQueueName(q.name))
      return Error{fmt::format("invalid queue name '{}': use {}", q.name, kQueueNameRule)};
    if (q.concurrency < 1) return Error{fmt::format("queue '{}': concurrency must be at least 1", q.name)};
    if (q.lease.count() != 0 && q.lease.count() < 100)
      return Error{fmt::format("queue '{}': the lease must be at least 100 ms", q.name)};
    if (auto d = options.defaults.find(q.name); d != options.defaults.end() && d->second.lease.count() < 100)
      return Error{fmt::format("queue '{}': the lease must be at least 100 ms (queue.queues.{}.lease)", q.name,
                               q.name)};
  }
  if (options.lease.count() < 100) return Error{"the lease must be at least 100 ms"};
  auto addr = parseRedisUrl(options.redis_url);
  if (!addr) return addr.error();
  auto client = Client::create(loop, {.redis_url = options.redis_url,
                                      .strict = options.strict,
                                      .client_name = options.client_name,
                                      .defaults = options.defaults});
  if (!client) return client.error();
  auto conn = std::make_unique<RedisConnection>(loop, *addr, RedisOptions{.client_name = options.client_name});
  auto impl = std::make_unique<Impl>(loop, std::move(options), std::move(client).value(), std::move(conn));
  return std::unique_ptr<Consumer>(new Consumer(std::move(impl)));
}

Consumer::Consumer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Consumer::~Consumer() = default;

void Consumer::handle(const std::string& name, AsyncHandler h) { impl_->handlers_[name] = std::move(h); }
void Consumer::handleSync(const std::string& name, SyncHandler h) { impl_->handlers_[name] = std::move(h); }
void Consumer::handleStoppable(const std::string& name, StoppableHandler h) {
  impl_->handlers_[name] = std::move(h);
}
bool Consumer::hasHandler(const std::string& name) const { return impl_->handlers_.count(name) > 0; }
void Consumer::start(std::function<void(Result<void>)> cb) { impl_->start(std::move(cb)); }
void Consumer::drain(Millis timeout, std::function<void()> cb) { impl_->drain(timeout, std::move(cb)); }

void Consumer::onCompleted(std::function<void(const std::string&, const std::string&)> hook) {
  impl_->completed_hook_ = std::move(hook);
}

ConsumerStats Consumer::stats() const {
  ConsumerStats s;
  for (auto& q : impl_->queues_) {
    QueueJobStats qs = q->stats;
    qs.in_flight = q->in_flight;
    qs.overrunning = q->overrunning;
    s.completed += qs.completed;
    s.failed += qs.failed;
    s.dead += qs.dead;
    s.stale += qs.stale;
    s.reserved += qs.reserved;
    s.in_flight += qs.in_flight;
    s.timed_out += qs.timed_out;
    s.overrunning += qs.overrunning;
    s.by_queue[q->spec.name] = qs;
  }
  s.redis_ready = impl_->conn_->ready();
  return s;
}

// ---- Impl ----

Consumer::Impl::Impl(uv_loop_t* loop, ConsumerOptions options, std::unique_ptr<Client> client,
                     std::unique_ptr<RedisConnection> conn)
    : loop_(loop), options_(std::move(options)), client_(std::move(client)), conn_(std::move(conn)) {
  scripts_ = std::make_unique<ScriptRunner>(*conn_);
  for (auto& spec : options_.queues) {
    auto q = std::make_unique<QueueState>();
    q->spec = spec;
    auto d = options_.defaults.find(spec.name);
    if (d != options_.defaults.end()) q->defaults = &d->second;
    q->lease_ms = spec.lease.count() > 0 ? spec.lease.count()
                  : q->defaults          ? q->defaults->lease.count()
                                         : options_.lease.count();
    q->keys = queueKeys(spec.name);
    q->block = std::make_unique<RedisConnection>(
        loop_, conn_->address(), RedisOptions{.client_name = options_.client_name + "-block"});
    uv_timer_init(loop_, q->retry.get());
    queues_.push_back(std::move(q));
  }
  for (auto* t : {&flush_timer_, &extend_timer_, &drain_timer_}) {
    uv_timer_init(loop_, (*t).get());
    (*t)->data = this;
  }
  // After a reconnection, queues that were waiting on Redis try again.
  conn_->onReady([this] {
    for (auto& q : queues_) {
      q->retry_ms = 0;
      if (!q->acks.empty() || !q->done_tokens.empty()) scheduleFlush();
      pump(*q);
    }
  });
}

Consumer::Impl::~Impl() { *alive_ = false; }

void Consumer::Impl::start(std::function<void(Result<void>)> cb) {
  conn_->connect();
  client_->checkDurability([this, cb = std::move(cb)](Result<bool> r) {
    if (!r) {
      // Unreachable Redis is not fatal (the consumer waits for it); a
      // refusal under strict is.
      if (options_.strict && r.error().message.find("cannot reach") == std::string::npos) return cb(r.error());
      log::warn("queue", "{}", r.error().message);
    }
    for (const auto& entry : options_.defaults) {
      // Named references, not a structured binding: clang 14 cannot capture one.
      const std::string& name = entry.first;
      const auto& d = entry.second;
      bool ours = std::any_of(queues_.begin(), queues_.end(), [&](auto& q) { return q->spec.name == name; });
      if (ours)
        client_->configure(name, d, options_.max_stalls, [name](Result<bool> c) {
          if (!c) log::warn("queue", "could not write settings of queue '{}': {}", name, c.error().message);
        });
    }
    started_ = true;
    // Every lease is extended at a third of the shortest one.
    int64_t shortest = options_.lease.count();
    for (auto& q : queues_) shortest = std::min(shortest, q->lease_ms);
    uint64_t every = std::max<int64_t>(shortest / 3, 30);
    uv_timer_start(
        extend_timer_.get(), [](uv_timer_t* t) { static_cast<Impl*>(t->data)->extendLeases(); }, every, every);
    for (auto& q : queues_) pump(*q);
    cb(success());
  });
}

int Consumer::Impl::fetchSize(const QueueState& q) const {
  if (!started_ || draining_ || q.fetches >= kMaxFetches) return 0;
  int unasked = freeSlots(q) - q.requested;
  int half = std::max(1, (q.spec.concurrency + 1) / 2);
  return std::max(0, std::min({unasked, half, options_.batch}));
}

void Consumer::Impl::pump(QueueState& q) {
  if (uv_is_active(reinterpret_cast<uv_handle_t*>(q.retry.get()))) return;
  int n = fetchSize(q);
  if (n <= 0) return;
  // Pending acknowledgements carry the reservation (fetch-next).
  if (!q.acks.empty()) return scheduleFlush();
  reserve(q, n);
}

void Consumer::Impl::reserve(QueueState& q, int n) {
  ++q.fetches;
  q.requested += n;
  scripts_->run(ScriptId::kReserve, q.keys,
                {std::to_string(nowMs()), std::to_string(n), std::to_string(q.lease_ms)},
                [this, &q, n](const Reply& r) {
                  --q.fetches;
                  q.requested -= n;
                  if (r.isError()) return redisTrouble(q, "reserving jobs", r.error());
                  onReserved(q, r);
                });
}

// r = {token, next_due, paused, {id, record, meta, ...}}
void Consumer::Impl::onReserved(QueueState& q, const Reply& r) {
  if (r.size() < 4) return redisTrouble(q, "reserving jobs", "unexpected reply");
  q.retry_ms = 0;
  std::string token = r.at(0).str();
  int64_t next_due = r.at(1).integer();
  Reply jobs = r.at(3);
  size_t n = jobs.size() / 3;
  if (n > 0) {
    q.tokens[token] += static_cast<int>(n);
    q.stats.reserved += n;
    for (size_t i = 0; i + 2 < jobs.size(); i += 3) {
      Job job;
      job.queue = q.spec.name;
      job.id = jobs.at(i).str();
      dispatch(q, token, std::move(job), jobs.at(i + 1).view(), jobs.at(i + 2).view());
    }
  }
  if (draining_) return checkDrained();
  if (freeSlots(q) <= 0) return;
  if (n > 0) return pump(q);  // there may be more right away
  block(q, next_due);
}

void Consumer::Impl::block(QueueState& q, int64_t next_due) {
  if (q.blocking || draining_) return;
  int64_t wait_ms = 5000;
  if (next_due >= 0) wait_ms = std::clamp<int64_t>(next_due - nowMs() + 1, 1, 5000);
  q.blocking = true;
  q.block->command({"BZPOPMIN", wakeKey(q.spec.name), fmt::format("{:.3f}", wait_ms / 1000.0)},
                   [this, &q](const Reply& r) {
                     q.blocking = false;
                     if (draining_) return;
                     if (r.isError()) {
                       // UNBLOCKED (failover) or a lost connection: try again shortly.
                       return redisTrouble(q, "waiting for jobs", r.error());
                     }
                     if (!r.isNil() && freeSlots(q) <= 0) {
                       // Woken while full: pass the wake-up on to another consumer.
                       conn_->command({"ZADD", wakeKey(q.spec.name), "0", "1"}, [](const Reply&) {});
                     }
                     pump(q);
                   });
}

void Consumer::Impl::redisTrouble(QueueState& q, std::string_view what, std::string_view error) {
  if (q.retry_ms == 0) log::warn("queue", "queue '{}': {} failed: {}", q.spec.name, what, error);
  q.retry_ms = q.retry_ms == 0 ? 100 : std::min(q.retry_ms * 2, 2000);
  q.retry->data = this;
  uv_timer_start(
      q.retry.get(),
      [](uv_timer_t* t) {
        auto* self = static_cast<Impl*>(t->data);
        for (auto& qs : self->queues_)
          if (qs->retry.get() == t) return self->pump(*qs);
      },
      q.retry_ms, 0);
  if (draining_) checkDrained();
}

void Consumer::Impl::scheduleFlush() {
  if (uv_is_active(reinterpret_cast<uv_handle_t*>(flush_timer_.get()))) return;
  uv_timer_start(
      flush_timer_.get(), [](uv_timer_t* t) { static_cast<Impl*>(t->data)->flushAcks(); }, 0, 0);
}

void Consumer::Impl::flushAcks() {
  for (auto& q : queues_) flushQueue(*q);
}

void Consumer::Impl::flushQueue(QueueState& q) {
  if (q.acks.empty() && q.done_tokens.empty()) return;
  int fetch = fetchSize(q);
  auto acks = std::move(q.acks);
  auto done = std::move(q.done_tokens);
  q.acks.clear();
  q.done_tokens.clear();
  std::vector<std::string> args;
  args.reserve(5 + acks.size() * 2 + done.size());
  args.push_back(std::to_string(nowMs()));
  args.push_back(std::to_string(acks.size()));
  args.push_back(std::to_string(done.size()));
  args.push_back(std::to_string(fetch));
  args.push_back(std::to_string(q.lease_ms));
  for (auto& a : acks) {
    args.push_back(a.id);
    args.push_back(a.token);
  }
  for (auto& t : done) args.push_back(t);
  // Results go last, only for the jobs that have one (index, msgpack).
  for (size_t i = 0; i < acks.size(); ++i) {
    if (acks[i].result.empty()) continue;
    args.push_back(std::to_string(i + 1));
    args.push_back(acks[i].result);
  }
  if (fetch > 0) {
    ++q.fetches;
    q.requested += fetch;
  }
  ++outstanding_;
  scripts_->run(ScriptId::kComplete, q.keys, args,
                [this, &q, fetch, acks = std::move(acks), done = std::move(done)](const Reply& r) mutable {
                  --outstanding_;
                  if (fetch > 0) {
                    --q.fetches;
                    q.requested -= fetch;
                  }
                  if (r.isError() || r.size() < 2) {
                    // Keep them: acknowledged again once Redis answers (a
                    // repeated acknowledgement is refused harmlessly).
                    q.acks.insert(q.acks.end(), acks.begin(), acks.end());
                    q.done_tokens.insert(q.done_tokens.end(), done.begin(), done.end());
                    if (!conn_->ready() && draining_) {
                      q.acks.clear();  // give up: the leases expire and the jobs run again
                      q.done_tokens.clear();
                    }
                    return redisTrouble(q, "acknowledging jobs", r.isError() ? r.error() : "unexpected reply");
                  }
                  Reply flags = r.at(0);
                  for (size_t i = 0; i < flags.size(); ++i) {
                    if (flags.at(i).integer() == 1) {
                      ++q.stats.completed;
                      if (completed_hook_ && i < acks.size()) completed_hook_(q.spec.name, acks[i].id);
                    } else {
                      ++q.stats.stale;
                    }
                  }
                  if (fetch > 0 && r.at(1).size() >= 4) return onReserved(q, r.at(1));
                  if (draining_) return checkDrained();
                  pump(q);
                });
}

void Consumer::Impl::extendLeases() {
  for (auto& qp : queues_) {
    QueueState& q = *qp;
    if (q.tokens.empty()) continue;
    // The lease's length, not a deadline: Redis sets the deadline on its own
    // clock, so this host's clock being off moves nothing.
    std::vector<std::string> args{std::to_string(q.lease_ms)};
    std::vector<std::string> sent;
    for (auto& [t, n] : q.tokens) {
      args.push_back(t);
      sent.push_back(t);
    }
    scripts_->run(ScriptId::kExtend, q.keys, args, [this, &q, sent = std::move(sent)](const Reply& r) {
      if (r.isError()) return;  // retried on the next tick; the lease has slack
      for (size_t i = 0; i < r.size() && i < sent.size(); ++i) {
        if (r.at(i).integer() == 0 && q.tokens.count(sent[i]))
          log::warn("queue", "queue '{}': lease {} was lost (expired while Redis was unreachable?); its jobs "
                             "may run again elsewhere and their completions will be refused",
                    q.spec.name, sent[i]);
      }
    });
  }
}

void Consumer::Impl::drain(Millis timeout, std::function<void()> cb) {
  draining_ = true;
  drained_cb_ = std::move(cb);
  for (auto& q : queues_) {
    uv_timer_stop(q->retry.get());
    if (q->blocking) q->block->close();  // cancels BZPOPMIN
  }
  scheduleFlush();
  uv_timer_start(
      drain_timer_.get(),
      [](uv_timer_t* t) {
        auto* self = static_cast<Impl*>(t->data);
        self->releaseAll();
        self->checkDrained();
      },
      std::max<int64_t>(timeout.count(), 1), 0);
  checkDrained();
}

void Consumer::Impl::checkDrained() {
  if (!draining_ || !drained_cb_) return;
  for (auto& q : queues_) {
    if (q->in_flight > 0 || q->fetches > 0) return;
    if (!q->acks.empty() || !q->done_tokens.empty()) {
      if (!conn_->ready()) continue;  // Redis is gone: leases expire instead
      return scheduleFlush();
    }
  }
  if (outstanding_ > 0) return;
  uv_timer_stop(drain_timer_.get());
  uv_timer_stop(extend_timer_.get());
  auto cb = std::move(drained_cb_);
  drained_cb_ = nullptr;
  cb();
}

}  // namespace clusterd::queue
