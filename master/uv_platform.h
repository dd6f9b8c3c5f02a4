// The real Platform: libuv timers and uv_spawn, kill(2) on process groups,
// and /proc for memory and CPU. Worker stdout/stderr arrive on pipes and are
// split into lines for the app's log files.
#pragma once

#include <uv.h>

#include <map>
#include <memory>

#include "master/platform.h"

namespace clusterd::master {
class GroupLedger;
}

namespace clusterd::master {

class UvPlatform : public Platform {
 public:
  explicit UvPlatform(uv_loop_t* loop);
  ~UvPlatform() override;

  Millis now() override;
  TimerId startTimer(Millis delay, std::function<void()> fn) override;
  void cancelTimer(TimerId id) override;
  Result<pid_t> spawn(const SpawnRequest& request,
                      std::function<void(int64_t status, int signal)> on_exit) override;
  void signalGroup(pid_t pid, int sig) override;
  ProcSample sample(pid_t pid) override;
  long ticksPerSecond() override;
  pid_t processGroupOf(pid_t pid) override;

  // Every spawned process is added to `ledger` and removed at its exit
  // (master/orphans.h); null (the default) records nothing.
  void setLedger(GroupLedger* ledger) { ledger_ = ledger; }

  // Heap records behind timers and processes (public for the C callbacks).
  struct Timer;
  struct Proc;

 private:
  uv_loop_t* loop_;
  TimerId next_timer_ = 1;
  std::map<TimerId, Timer*> timers_;
  GroupLedger* ledger_ = nullptr;
};

// Parses the contents of /proc/<pid>/stat (exposed for tests).
ProcSample parseProcStat(std::string_view stat, long page_size);

}  // namespace clusterd::master
