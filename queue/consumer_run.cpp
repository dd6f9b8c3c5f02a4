// Running handlers for the consumer and ending attempts: success goes to the
// acknowledgement buffer, failure to the fail script (retry with backoff,
// dead after the last attempt or at once for a permanent failure), malformed
// jobs straight to dead.
#include <fmt/format.h>

#include "common/log.h"
#include "queue/codec.h"
#include "queue/consumer_impl.h"

namespace clusterd::queue {
namespace {

// A sync handler's trip through the thread pool.
struct Work {
  uv_work_t req{};
  SyncHandler handler;
  Job job;
  std::optional<Outcome> outcome;
  Done done;
};

}  // namespace

void Consumer::Impl::dispatch(QueueState& q, const std::string& token, Job job, std::string_view record,
                              std::string_view meta) {
  if (draining_) {
    sendFail(q, job.id, token, "release", "", 0, 0);
    return releaseToken(q, token);
  }
  // Fields a record leaves out (one written by another language's client)
  // take this queue's configured defaults.
  if (q.defaults) {
    job.attempts = q.defaults->attempts;
    job.backoff_ms = q.defaults->backoff.count();
    job.backoff_type = q.defaults->backoff_type == "fixed" ? BackoffType::kFixed : BackoffType::kExponential;
    job.timeout_ms = q.defaults->timeout.count();
  }
  auto rec = decodeRecord(record, job);
  std::string reject;
  if (!rec) {
    reject = "malformed job: " + rec.error().message;
  } else if (auto m = decodeMeta(meta, job); !m) {
    reject = "malformed job: " + m.error().message;
  } else if (!handlers_.count(job.name)) {
    reject = fmt::format("unknown job name '{}': no handler for it in this worker", job.name);
  }
  if (!reject.empty()) {
    log::warn("queue", "queue '{}' job {}: {}; moved to dead", q.spec.name, job.id, reject);
    ++q.stats.dead;
    sendFail(q, job.id, token, "reject", reject, 0, 0);
    return releaseToken(q, token);
  }

  auto run = std::make_shared<Running>();
  run->seq = ++next_seq_;
  run->job = std::move(job);
  run->token = token;
  ++q.in_flight;
  q.running[run->seq] = run;

  std::weak_ptr<bool> alive = alive_;
  auto done = [this, alive, &q, run](Outcome o) {
    if (alive.expired()) return;
    handlerDone(q, run, std::move(o));
  };
  run->impl = this;
  run->queue = &q;
  if (run->job.timeout_ms > 0) {
    uv_timer_init(loop_, run->timeout.get());
    run->timeout->data = run.get();
    uv_timer_start(
        run->timeout.get(),
        [](uv_timer_t* t) {
          auto* r = static_cast<Running*>(t->data);
          r->impl->timedOut(*r->queue, r->shared_from_this());
        },
        static_cast<uint64_t>(run->job.timeout_ms), 0);
  }

  auto& h = handlers_.at(run->job.name);
  if (auto* async = std::get_if<AsyncHandler>(&h)) {
    (*async)(run->job, done);
    return;
  }
  if (auto* stoppable = std::get_if<StoppableHandler>(&h)) {
    Stop stop = (*stoppable)(run->job, done);
    if (run->slot_held) run->stop = std::move(stop);
    return;
  }
  auto* w = new Work;
  w->handler = std::get<SyncHandler>(h);
  w->job = run->job;
  w->done = done;
  w->req.data = w;
  uv_queue_work(
      loop_, &w->req,
      [](uv_work_t* req) {
        auto* w = static_cast<Work*>(req->data);
        w->outcome.emplace(w->handler(w->job));
      },
      [](uv_work_t* req, int status) {
        std::unique_ptr<Work> w(static_cast<Work*>(req->data));
        if (status != 0 || !w->outcome) return w->done(Error{"cancelled"});
        w->done(std::move(*w->outcome));
      });
}

// The handler answered: its work has stopped. The answer ends the attempt,
// unless the timeout or the drain ended it already (then it is discarded);
// either way the slot is free again.
void Consumer::Impl::handlerDone(QueueState& q, const std::shared_ptr<Running>& run, Outcome outcome) {
  if (!run->slot_held) return;  // released at the drain's end, or called twice
  if (!run->ended) {
    endAttempt(q, *run, std::move(outcome));
  } else if (run->timed_out) {
    --q.overrunning;
    log::info("queue", "queue '{}' job {} ({}): the handler answered after its timeout; the answer is discarded",
              q.spec.name, run->job.id, run->job.name);
  }
  freeSlot(q, *run);
}

// The job's timeout passed while its handler runs: the attempt fails (and is
// retried), and a stoppable handler is asked to stop. The slot stays taken
// until the handler's work has stopped, so a timeout never lets more work
// run at once than the queue's concurrency.
void Consumer::Impl::timedOut(QueueState& q, const std::shared_ptr<Running>& run) {
  if (run->ended) return;
  run->timed_out = true;
  ++q.stats.timed_out;
  ++q.overrunning;
  endAttempt(q, *run, Error{fmt::format("timed out after {} ms", run->job.timeout_ms)});
  if (run->stop) {
    Stop stop = run->stop;  // it may answer at once
    stop(StopHow::kGraceful);
  }
}

void Consumer::Impl::endAttempt(QueueState& q, Running& run, Outcome outcome) {
  run.ended = true;
  run.timeout.reset();
  const Job& job = run.job;
  const Result<void>& result = outcome.status();
  if (result) {
    std::string value = outcome.result();
    if (value.size() > kMaxResultBytes) {
      log::warn("queue", "queue '{}' job {} ({}): the result is {} bytes of msgpack, over the limit of {}; the job "
                         "completes with a 'truncated' marker as its result",
                q.spec.name, job.id, job.name, value.size(), kMaxResultBytes);
      value = payloadFromJson(oversizedResult(value.size()));
    }
    q.acks.push_back(Ack{job.id, run.token, std::move(value)});
    scheduleFlush();
  } else {
    ++q.stats.failed;
    int attempt = job.attempt + 1;
    if (isPermanentFailure(result.error())) {
      ++q.stats.dead;
      sendFail(q, job.id, run.token, "permanent", result.error().message, 0, job.priority);
    } else if (attempt >= job.attempts) {
      ++q.stats.dead;
      sendFail(q, job.id, run.token, "dead", result.error().message, 0, job.priority);
    } else {
      int64_t delay = backoffDelayMs(job.backoff_type, job.backoff_ms, attempt, static_cast<uint32_t>(rng_()));
      sendFail(q, job.id, run.token, "retry", result.error().message, nowMs() + delay, job.priority);
    }
  }
  releaseToken(q, run.token);
}

void Consumer::Impl::freeSlot(QueueState& q, Running& run) {
  run.slot_held = false;
  run.stop = nullptr;
  --q.in_flight;
  q.running.erase(run.seq);  // may free `run`
  if (draining_) return checkDrained();
  pump(q);
}

void Consumer::Impl::sendFail(QueueState& q, const std::string& id, const std::string& token, const char* mode,
                              const std::string& error, int64_t run_at, int priority) {
  ++outstanding_;
  std::string mode_text = mode;
  scripts_->run(ScriptId::kFail, q.keys,
                {std::to_string(nowMs()), id, token, mode, error, std::to_string(run_at), std::to_string(priority),
                 "0"},
                [this, &q, id, mode_text](const Reply& r) {
                  --outstanding_;
                  if (r.isError())
                    log::warn("queue", "queue '{}' job {}: recording '{}' failed ({}); its lease will expire and "
                                       "it will run again", q.spec.name, id, mode_text, r.error());
                  else if (r.integer() == 0)
                    ++q.stats.stale;
                  if (draining_) checkDrained();
                });
}

// One job of the lease is over; the lease closes with the last one, in the
// next acknowledgement call (ordered after this job's ack or fail).
void Consumer::Impl::releaseToken(QueueState& q, const std::string& token) {
  auto it = q.tokens.find(token);
  if (it == q.tokens.end()) return;
  if (--it->second > 0) return;
  q.tokens.erase(it);
  q.done_tokens.push_back(token);
  scheduleFlush();
}

// The drain timeout passed: give every running job back to its queue, stop
// the work that can be stopped, and stop waiting for the rest (this process
// is about to exit).
void Consumer::Impl::releaseAll() {
  for (auto& q : queues_) {
    auto running = q->running;
    for (auto& [seq, run] : running) {
      if (!run->ended) {
        run->ended = true;
        run->timeout.reset();
        log::warn("queue", "queue '{}' job {} still running at the end of the drain timeout; released",
                  q->spec.name, run->job.id);
        sendFail(*q, run->job.id, run->token, "release", "", 0, run->job.priority);
        releaseToken(*q, run->token);
      } else if (run->timed_out) {
        --q->overrunning;
      }
      Stop stop = std::move(run->stop);
      run->slot_held = false;
      run->stop = nullptr;
      --q->in_flight;
      q->running.erase(seq);
      if (stop) stop(StopHow::kNow);
    }
  }
}

}  // namespace clusterd::queue
