// worker::HealthCache (see health.h).
#include "worker/health.h"

#include "common/log.h"

namespace clusterd::worker {

HealthCache::HealthCache(uv_loop_t* loop, std::chrono::milliseconds timeout,
                         std::chrono::milliseconds max_age)
    : loop_(loop), timeout_(timeout), max_age_(max_age), alive_(std::make_shared<bool>(true)) {
  uv_timer_init(loop_, timer_.get());
  timer_->data = this;
}

HealthCache::~HealthCache() { *alive_ = false; }

void HealthCache::addProbe(std::string name, Probe probe) {
  deps_.push_back(Dep{std::move(name), std::move(probe)});
}

void HealthCache::addDisabled(std::string name) {
  Dep d{std::move(name), nullptr};
  d.state = "disabled";
  d.ok = true;
  deps_.push_back(std::move(d));
}

const HealthCache::Snapshot* HealthCache::fresh() const {
  if (!have_snapshot_ || uv_now(loop_) - checked_ms_ >= static_cast<uint64_t>(max_age_.count())) {
    return nullptr;
  }
  return &snapshot_;
}

void HealthCache::get(Callback cb) {
  uint64_t now = uv_now(loop_);
  if (have_snapshot_ && now - checked_ms_ < static_cast<uint64_t>(max_age_.count())) {
    cb(snapshot_);
    return;
  }
  waiters_.push_back(std::move(cb));
  if (!running_) runProbes();
}

void HealthCache::runProbes() {
  running_ = true;
  uint64_t round = ++round_;
  for (Dep& d : deps_) d.answered = d.probe == nullptr;
  // A probe that does not answer in time counts as down.
  uv_timer_start(
      timer_.get(),
      [](uv_timer_t* t) {
        auto* self = static_cast<HealthCache*>(t->data);
        for (Dep& d : self->deps_) {
          if (d.answered) continue;
          d.answered = true;
          d.ok = false;
          d.state = "timeout after " + std::to_string(self->timeout_.count()) + " ms";
          d.detail = d.state;
        }
        self->finishRound();
      },
      static_cast<uint64_t>(timeout_.count()) + 50, 0);
  for (size_t i = 0; i < deps_.size(); ++i) {
    if (!deps_[i].probe) continue;
    std::weak_ptr<bool> alive = alive_;
    deps_[i].probe(timeout_, [this, alive, round, i](std::string error) {
      if (alive.expired() || round != round_ || !running_) return;
      Dep& d = deps_[i];
      if (d.answered) return;
      d.answered = true;
      d.ok = error.empty();
      // The body says only "unavailable": a driver's message may name
      // hosts, users or a URL with its password. The cause goes to the log.
      d.state = d.ok ? "ok" : "unavailable";
      d.detail = std::move(error);
      for (const Dep& x : deps_) {
        if (!x.answered) return;
      }
      finishRound();
    });
    if (!running_) return;  // every probe answered synchronously
  }
  bool all = true;
  for (const Dep& x : deps_) all = all && x.answered;
  if (all && running_) finishRound();
}

void HealthCache::finishRound() {
  if (!running_) return;
  running_ = false;
  uv_timer_stop(timer_.get());
  snapshot_ = Snapshot{};
  for (Dep& d : deps_) {
    if (d.ok) d.detail.clear();
    if (d.detail != d.logged) {  // once per change, not once per check
      if (!d.detail.empty())
        log::warn("worker", "health: {} is down: {}", d.name, d.detail);
      else
        log::info("worker", "health: {} is up again", d.name);
      d.logged = d.detail;
    }
    snapshot_.entries.push_back({d.name, d.state, d.ok});
    snapshot_.ok = snapshot_.ok && d.ok;
  }
  have_snapshot_ = true;
  ++version_;
  checked_ms_ = uv_now(loop_);
  auto waiters = std::move(waiters_);
  waiters_.clear();
  for (auto& w : waiters) w(snapshot_);
}

}  // namespace clusterd::worker
