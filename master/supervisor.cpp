// Supervisor, the worker lifecycle half: spawning, readiness, exits and the
// restart policy, stopping, replacement and the per-app sampling tick.
// Operator commands and JSON views are in supervisor_ops.cpp.
#include "master/supervisor.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>

#include "common/log.h"

namespace clusterd::master {

namespace {
constexpr std::string_view kSupervisorLog = "master";

std::string exitText(int64_t status, int signal) {
  if (signal != 0) return "signal " + std::to_string(signal);
  return "exit " + std::to_string(status);
}
}  // namespace

Supervisor::Supervisor(Platform& platform, SupervisorOptions options)
    : platform_(platform), options_(std::move(options)) {}

Supervisor::~Supervisor() {
  for (auto& [key, w] : workers_) {
    platform_.cancelTimer(w->ready_timer);
    platform_.cancelTimer(w->kill_timer);
    platform_.cancelTimer(w->restart_timer);
  }
  for (auto& [name, app] : apps_) platform_.cancelTimer(app->tick_timer);
  platform_.cancelTimer(gc_timer_);
}

std::unique_ptr<Worker> Supervisor::newWorker(App& app, Slot& slot) {
  auto w = std::make_unique<Worker>();
  w->key = next_key_++;
  w->app = &app;
  w->slot = &slot;
  workers_[w->key] = w.get();
  return w;
}

void Supervisor::dropWorker(std::unique_ptr<Worker>& w) {
  if (!w) return;
  platform_.cancelTimer(w->ready_timer);
  platform_.cancelTimer(w->kill_timer);
  platform_.cancelTimer(w->restart_timer);
  workers_.erase(w->key);
  w.reset();
}

Worker* Supervisor::byKey(uint64_t key) {
  auto it = workers_.find(key);
  return it == workers_.end() ? nullptr : it->second;
}

Worker* Supervisor::findByPid(pid_t pid) {
  if (pid <= 0) return nullptr;
  for (auto& [key, w] : workers_)
    if (w->pid == pid) return w;
  return nullptr;
}

bool Supervisor::apply(Worker& w, WorkerEvent e) {
  auto next = transition(w.state, e);
  if (!next) {
    log::debug(kSupervisorLog, "{}: event {} ignored in state {}", w.app->cfg.spec.name, eventName(e),
               stateName(w.state));
    return false;
  }
  w.state = *next;
  return true;
}

void Supervisor::startWorker(Worker& w) {
  App& app = *w.app;
  Slot& slot = *w.slot;
  const auto& spec = app.cfg.spec;
  w.status_text.clear();
  w.stats_json.clear();
  w.replacing = false;
  w.rss = 0;
  w.cpu = 0;
  w.cpu_ticks = 0;
  auto req = buildSpawn(app, slot);
  Result<pid_t> pid = req ? platform_.spawn(*req, [this, key = w.key](int64_t status, int sig) {
    onExit(key, status, sig);
  })
                          : Result<pid_t>(req.error());
  if (!pid) {
    w.status_text = pid.error().message;
    apply(w, WorkerEvent::kSpawnFailed);
    log::error(kSupervisorLog, "{} #{}: cannot start: {}", spec.name, slot.id, w.status_text);
    scheduleGc();
    return;
  }
  w.pid = *pid;
  w.started_at = platform_.now();
  w.online_at = Millis{0};
  bool ok = apply(w, WorkerEvent::kSpawned);
  assert(ok);
  (void)ok;
  Millis delay = spec.wait_ready ? spec.listen_timeout : std::min(options_.start_grace, spec.listen_timeout);
  w.ready_timer = platform_.startTimer(delay, [this, key = w.key] {
    Worker* x = byKey(key);
    if (!x) return;
    x->ready_timer = 0;
    if (x->state != WorkerState::kLaunching) return;
    if (x->app->cfg.spec.wait_ready)
      log::warn(kSupervisorLog, "{} #{} pid {}: no READY=1 within listen_timeout ({} ms); considered online",
                x->app->cfg.spec.name, x->slot->id, x->pid, x->app->cfg.spec.listen_timeout.count());
    onReady(*x);
  });
  log::info(kSupervisorLog, "{} #{}: started pid {}", spec.name, slot.id, w.pid);
}

void Supervisor::onReady(Worker& w) {
  if (!apply(w, WorkerEvent::kReady)) return;
  platform_.cancelTimer(w.ready_timer);
  w.ready_timer = 0;
  w.online_at = platform_.now();
  w.last_watchdog = w.online_at;
  Slot& slot = *w.slot;
  if (slot.incoming.get() == &w) promote(slot);
}

void Supervisor::promote(Slot& slot) {
  App& app = *slot.main->app;
  std::unique_ptr<Worker> old = std::move(slot.main);
  slot.main = std::move(slot.incoming);
  slot.restarts++;
  log::info(kSupervisorLog, "{} #{}: pid {} is online and replaces pid {}", app.cfg.spec.name, slot.id,
            slot.main->pid, old->pid);
  if (hasProcess(old->state)) {
    Worker& ref = *old;
    slot.retiring.push_back(std::move(old));
    stopWorker(ref, Worker::AfterStop::kNothing);
  } else {
    dropWorker(old);
  }
  pumpReload(app);
}

void Supervisor::stopWorker(Worker& w, Worker::AfterStop after) {
  w.after_stop = after;
  platform_.cancelTimer(w.ready_timer);
  w.ready_timer = 0;
  platform_.cancelTimer(w.restart_timer);
  w.restart_timer = 0;
  if (hasProcess(w.state)) {
    if (apply(w, WorkerEvent::kStop)) {
      platform_.signalGroup(w.pid, SIGTERM);
      w.kill_timer = platform_.startTimer(w.app->cfg.spec.kill_timeout, [this, key = w.key] {
        Worker* x = byKey(key);
        if (!x) return;
        x->kill_timer = 0;
        if (!hasProcess(x->state)) return;
        log::warn(kSupervisorLog, "{} #{} pid {}: still running {} ms after SIGTERM (kill_timeout); SIGKILL",
                  x->app->cfg.spec.name, x->slot->id, x->pid,
                  x->app->cfg.spec.kill_timeout.count());
        platform_.signalGroup(x->pid, SIGKILL);
      });
    }
    return;  // the exit finishes the stop
  }
  apply(w, WorkerEvent::kStop);  // waiting/errored -> stopped
  finishStop(w);
}

void Supervisor::finishStop(Worker& w) {
  Slot& slot = *w.slot;
  auto after = std::exchange(w.after_stop, Worker::AfterStop::kNothing);
  if (slot.main.get() != &w) return;
  if (after == Worker::AfterStop::kStart) {
    slot.restarts++;
    startWorker(w);
  } else if (after == Worker::AfterStop::kRemoveSlot) {
    slot.removing = true;
  }
  scheduleGc();
}

void Supervisor::onExit(uint64_t key, int64_t status, int sig) {
  Worker* wp = byKey(key);
  if (!wp) return;
  Worker& w = *wp;
  App& app = *w.app;
  Slot& slot = *w.slot;
  // Whatever the worker left in its process group goes with it; the pid
  // itself is reaped and is not signalled again.
  platform_.killExitedGroup(w.pid);
  platform_.cancelTimer(w.ready_timer);
  platform_.cancelTimer(w.kill_timer);
  w.ready_timer = w.kill_timer = 0;
  Millis uptime = platform_.now() - w.started_at;
  w.last_exit = exitText(status, sig);
  pid_t pid = std::exchange(w.pid, 0);
  const std::string& name = app.cfg.spec.name;

  for (auto it = slot.retiring.begin(); it != slot.retiring.end(); ++it) {
    if (it->get() != &w) continue;
    apply(w, WorkerEvent::kExited);
    log::info(kSupervisorLog, "{} #{}: replaced pid {} exited ({})", name, slot.id, pid, w.last_exit);
    dropWorker(*it);
    slot.retiring.erase(it);
    scheduleGc();
    return;
  }
  if (slot.incoming.get() == &w) {
    if (w.state != WorkerState::kStopping)
      log::error(kSupervisorLog, "{} #{}: replacement pid {} exited ({}) before it was ready; keeping pid {}",
                 name, slot.id, pid, w.last_exit, slot.main->pid);
    dropWorker(slot.incoming);
    slot.main->replacing = false;
    pumpReload(app);
    scheduleGc();
    return;
  }
  assert(slot.main.get() == &w);
  if (w.state == WorkerState::kStopping) {
    apply(w, WorkerEvent::kExited);
    log::info(kSupervisorLog, "{} #{}: pid {} stopped ({})", name, slot.id, pid, w.last_exit);
    finishStop(w);
    return;
  }
  onMainExit(w, uptime);
  scheduleGc();
}

void Supervisor::onMainExit(Worker& w, Millis uptime) {
  App& app = *w.app;
  Slot& slot = *w.slot;
  const auto& spec = app.cfg.spec;
  RestartSettings settings{spec.min_uptime, spec.max_restarts, spec.restart_delay,
                           spec.exp_backoff_restart_delay, spec.autorestart};
  if (slot.incoming) {
    // A replacement is starting already; it takes over once online.
    apply(w, WorkerEvent::kCrashed);
    return;
  }
  RestartDecision d = decideRestart(settings, slot.history, uptime);
  switch (d.kind) {
    case RestartDecision::Kind::kRestart:
      apply(w, WorkerEvent::kCrashed);
      slot.restarts++;
      log::warn(kSupervisorLog, "{} #{}: exited unexpectedly ({}) after {} ms; restarting in {} ms", spec.name,
                slot.id, w.last_exit, uptime.count(), d.delay.count());
      w.restart_timer = platform_.startTimer(d.delay, [this, key = w.key] {
        Worker* x = byKey(key);
        if (!x) return;
        x->restart_timer = 0;
        if (x->state == WorkerState::kWaiting) startWorker(*x);
      });
      break;
    case RestartDecision::Kind::kGiveUp:
      apply(w, WorkerEvent::kGaveUp);
      w.status_text = "exited " + std::to_string(slot.history.unstable) +
                      " times in a row within min_uptime (" + std::to_string(spec.min_uptime.count()) +
                      " ms); last " + w.last_exit + "; see the error log, then `clusterd restart " +
                      spec.name + "`";
      log::error(kSupervisorLog, "{} #{}: errored: {}", spec.name, slot.id, w.status_text);
      break;
    case RestartDecision::Kind::kStayDown:
      apply(w, WorkerEvent::kExitedFinal);
      log::info(kSupervisorLog, "{} #{}: exited ({}); autorestart is off", spec.name, slot.id, w.last_exit);
      break;
  }
}

void Supervisor::beginReplace(App& app, Slot& slot) {
  if (slot.removing || slot.incoming) return;
  Worker& m = *slot.main;
  if (!hasProcess(m.state)) {
    platform_.cancelTimer(m.restart_timer);
    m.restart_timer = 0;
    slot.history = RestartHistory{};
    startWorker(m);
    return;
  }
  if (m.state == WorkerState::kStopping) return;
  if (app.cfg.spec.exec_mode == config::ExecMode::kFork) {
    stopWorker(m, Worker::AfterStop::kStart);
    return;
  }
  slot.incoming = newWorker(app, slot);
  startWorker(*slot.incoming);
}

void Supervisor::pumpReload(App& app) {
  auto active = [&] {
    int n = 0;
    for (auto& s : app.slots) n += s->incoming ? 1 : 0;
    return n;
  };
  while (!app.reload_queue.empty() && active() < app.reload_parallel) {
    int id = app.reload_queue.front();
    app.reload_queue.pop_front();
    for (auto& s : app.slots)
      if (s->id == id) beginReplace(app, *s);
  }
}

void Supervisor::replace(Worker& w, const std::string& reason) {
  if (w.replacing || w.slot->incoming || w.slot->main.get() != &w) return;
  w.replacing = true;
  log::warn(kSupervisorLog, "{} #{} pid {}: {}; replacing it", w.app->cfg.spec.name, w.slot->id, w.pid, reason);
  w.status_text = reason;
  beginReplace(*w.app, *w.slot);
}

void Supervisor::scheduleTick(App& app) {
  const auto& spec = app.cfg.spec;
  Millis interval{1000};
  if (spec.memory_check_interval.count() > 0) interval = std::min(interval, spec.memory_check_interval);
  if (spec.watchdog.count() > 0) interval = std::min(interval, Millis{spec.watchdog.count() / 2});
  interval = std::max(interval, Millis{50});
  app.tick_timer = platform_.startTimer(interval, [this, name = spec.name] {
    auto it = apps_.find(name);
    if (it == apps_.end()) return;
    it->second->tick_timer = 0;
    tick(*it->second);
  });
}

void Supervisor::tick(App& app) {
  const auto& spec = app.cfg.spec;
  Millis now = platform_.now();
  double hz = static_cast<double>(platform_.ticksPerSecond());
  auto sample = [&](Worker& w) {
    if (!hasProcess(w.state) || w.pid <= 0) return;
    ProcSample s = platform_.sample(w.pid);
    if (!s.alive) return;
    if (w.sampled_at.count() > 0 && now > w.sampled_at && s.cpu_ticks >= w.cpu_ticks)
      w.cpu = (static_cast<double>(s.cpu_ticks - w.cpu_ticks) / hz) * 1000.0 * 100.0 /
              static_cast<double>((now - w.sampled_at).count());
    w.cpu_ticks = s.cpu_ticks;
    w.sampled_at = now;
    w.rss = s.rss_bytes;
  };
  std::vector<Worker*> mains;
  for (auto& slot : app.slots) {
    if (slot->main) sample(*slot->main);
    if (slot->incoming) sample(*slot->incoming);
    for (auto& r : slot->retiring) sample(*r);
    if (slot->main && slot->main->state == WorkerState::kOnline) mains.push_back(slot->main.get());
  }
  for (Worker* w : mains) {
    if (spec.max_memory_restart > 0 && w->rss > spec.max_memory_restart) {
      replace(*w, "memory " + std::to_string(w->rss >> 20) + " MiB is over max_memory_restart " +
                      std::to_string(spec.max_memory_restart >> 20) + " MiB");
    } else if (spec.watchdog.count() > 0 && now - w->last_watchdog > spec.watchdog) {
      replace(*w, "no WATCHDOG=1 for " + std::to_string((now - w->last_watchdog).count()) +
                      " ms (watchdog " + std::to_string(spec.watchdog.count()) + " ms)");
    }
  }
  scheduleTick(app);
}

// True when `ancestor` is among the first 64 ancestors of `pid`. A process
// that joined a worker's group with setpgid() without descending from it
// (only possible from the master's session, that is for an app of the
// master's own user) is not taken for the worker.
bool Supervisor::descendsFrom(pid_t pid, pid_t ancestor) {
  for (int i = 0; i < 64 && pid > 1; ++i) {
    pid = platform_.parentOf(pid);
    if (pid == ancestor) return true;
  }
  return false;
}

void Supervisor::onNotify(pid_t sender, const std::string& tag, std::string_view message) {
  Worker* w = findByPid(sender);
  if (!w) {
    Worker* leader = findByPid(platform_.processGroupOf(sender));
    if (leader && descendsFrom(sender, leader->pid)) w = leader;
  }
  if (!w) {
    log::debug(kSupervisorLog, "notify from pid {}, neither a worker nor one of its children, ignored",
               sender);
    return;
  }
  if (w->app->notify_tag != tag) {
    log::warn(kSupervisorLog, "notify from pid {} of app {} came in on another app's socket; ignored", sender,
              w->app->cfg.spec.name);
    return;
  }
  uint64_t key = w->key;
  size_t start = 0;
  while (start < message.size()) {
    size_t nl = message.find('\n', start);
    std::string_view line =
        message.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
    start = nl == std::string_view::npos ? message.size() : nl + 1;
    w = byKey(key);
    if (!w) return;
    if (line == "READY=1") {
      onReady(*w);
    } else if (line.starts_with("STATUS=")) {
      w->status_text = std::string(line.substr(7));
    } else if (line == "WATCHDOG=1") {
      w->last_watchdog = platform_.now();
    } else if (line == "WATCHDOG=trigger") {
      if (w->state == WorkerState::kOnline) replace(*w, "the worker sent WATCHDOG=trigger");
    } else if (line == "STOPPING=1") {
      w->status_text = "stopping (STOPPING=1)";
    } else if (line.starts_with("CLUSTERD_STATS=")) {
      w->stats_json = std::string(line.substr(15));
    }
  }
}

void Supervisor::scheduleGc() {
  if (gc_timer_ != 0) return;
  gc_timer_ = platform_.startTimer(Millis{0}, [this] {
    gc_timer_ = 0;
    collectGarbage();
  });
}

// Removes slots being scaled away and apps being deleted once their last
// process has exited, and releases the sockets of slots that are down.
// Runs from a zero timer so no caller holds a reference into what it frees.
void Supervisor::collectGarbage() {
  for (auto it = apps_.begin(); it != apps_.end();) {
    App& app = *it->second;
    for (auto s = app.slots.begin(); s != app.slots.end();) {
      Slot& slot = **s;
      bool busy = hasProcess(slot.main->state) || slot.incoming || !slot.retiring.empty();
      if (!busy && (slot.removing || app.deleting)) {
        dropWorker(slot.main);
        s = app.slots.erase(s);
        continue;
      }
      if (!busy && (slot.main->state == WorkerState::kStopped ||
                    slot.main->state == WorkerState::kErrored))
        slot.listen_fd.reset();
      ++s;
    }
    if (app.deleting && app.slots.empty()) {
      log::info(kSupervisorLog, "{}: deleted", app.cfg.spec.name);
      auto next = std::next(it);
      forgetApp(it);
      it = next;
      continue;
    }
    ++it;
  }
}

void Supervisor::forgetApp(std::map<std::string, std::unique_ptr<App>>::iterator it) {
  App& app = *it->second;
  platform_.cancelTimer(app.tick_timer);
  if (!app.notify_tag.empty() && options_.close_app_notify)
    options_.close_app_notify(app.notify_tag);
  apps_.erase(it);
}

bool Supervisor::idle() const {
  for (auto& [key, w] : workers_)
    if (hasProcess(w->state)) return false;
  return true;
}

}  // namespace clusterd::master
