// A Platform with a manual clock and pretend processes, for unit tests of
// the supervisor's policy: timers fire only when the test advances time,
// spawn hands out pids and records the request, and processes exit only
// when the test says so (or, if asked, on SIGTERM / SIGKILL).
#pragma once

#include <signal.h>

#include <map>
#include <string>
#include <vector>

#include "master/platform.h"
#include "master/supervisor.h"

namespace clusterd::master::test {

class FakePlatform : public Platform {
 public:
  struct Proc {
    SpawnRequest request;
    std::function<void(int64_t, int)> on_exit;
    bool alive = true;
    uint64_t rss = 10 << 20;
    std::vector<int> signals;
  };

  Millis now() override { return now_; }
  TimerId startTimer(Millis delay, std::function<void()> fn) override {
    TimerId id = next_timer_++;
    timers_[id] = {now_ + delay, std::move(fn)};
    return id;
  }
  void cancelTimer(TimerId id) override { timers_.erase(id); }
  Result<pid_t> spawn(const SpawnRequest& r, std::function<void(int64_t, int)> on_exit) override {
    if (fail_spawn) return Error{"spawn failed (fake)"};
    pid_t pid = next_pid_++;
    procs[pid] = Proc{r, std::move(on_exit)};
    spawned.push_back(pid);
    return pid;
  }
  void signalGroup(pid_t pid, int sig) override {
    auto it = procs.find(pid);
    if (it == procs.end() || !it->second.alive) {
      // A real pid may belong to another process by now.
      signals_to_reaped.emplace_back(pid, sig);
      return;
    }
    it->second.signals.push_back(sig);
    // Like a real process, it exits after the signal is delivered, not inside kill(2).
    if ((sig == SIGKILL) || (sig == SIGTERM && exit_on_term))
      startTimer(Millis{0}, [this, pid, sig] { exit(pid, 0, sig == SIGKILL ? SIGKILL : 0); });
  }
  void killExitedGroup(pid_t pgid) override { exited_group_kills.push_back(pgid); }
  ProcSample sample(pid_t pid) override {
    auto it = procs.find(pid);
    if (it == procs.end() || !it->second.alive) return {};
    return {it->second.rss, 0, true};
  }
  long ticksPerSecond() override { return 100; }
  pid_t processGroupOf(pid_t pid) override {
    auto it = group_of.find(pid);
    return it == group_of.end() ? -1 : it->second;
  }

  pid_t parentOf(pid_t pid) override {
    auto it = parent_of.find(pid);
    return it == parent_of.end() ? -1 : it->second;
  }

  // Test controls.
  void exit(pid_t pid, int64_t status, int sig = 0) {
    auto& p = procs.at(pid);
    if (!p.alive) return;
    p.alive = false;
    auto cb = p.on_exit;
    cb(status, sig);
  }
  // Advances the clock by `d`, firing due timers in order (including
  // timers those timers start, when due within the window).
  void advance(Millis d) {
    Millis end = now_ + d;
    for (;;) {
      auto next = timers_.end();
      for (auto it = timers_.begin(); it != timers_.end(); ++it)
        if (it->second.due <= end && (next == timers_.end() || it->second.due < next->second.due))
          next = it;
      if (next == timers_.end()) break;
      now_ = std::max(now_, next->second.due);
      auto fn = std::move(next->second.fn);
      timers_.erase(next);
      fn();
    }
    now_ = end;
  }
  bool hasSignal(pid_t pid, int sig) const {
    auto& s = procs.at(pid).signals;
    return std::find(s.begin(), s.end(), sig) != s.end();
  }
  bool alive(pid_t pid) const { return procs.count(pid) && procs.at(pid).alive; }

  std::map<pid_t, Proc> procs;
  std::vector<pid_t> spawned;
  std::map<pid_t, pid_t> group_of;
  std::map<pid_t, pid_t> parent_of;
  std::vector<std::pair<pid_t, int>> signals_to_reaped;  // signalGroup() after the exit
  std::vector<pid_t> exited_group_kills;
  bool exit_on_term = true;
  bool fail_spawn = false;

 private:
  struct Timer {
    Millis due;
    std::function<void()> fn;
  };
  Millis now_{1'000'000};
  TimerId next_timer_ = 1;
  pid_t next_pid_ = 1000;
  std::map<TimerId, Timer> timers_;
};

// Supervisor options for tests on a FakePlatform: nothing is executed, so
// any program stands for the master's own binary; logs go to `log_dir`; no
// trampoline process sits between the fake master and its fake workers.
inline SupervisorOptions fakeSupervisorOptions(const std::string& log_dir) {
  SupervisorOptions o;
  o.self_exe = "/bin/true";
  o.log_dir = log_dir;
  o.use_trampoline = false;
  return o;
}

}  // namespace clusterd::master::test
