// The real Platform: libuv timers and uv_spawn, kill(2) on process groups,
// and /proc for memory and CPU. Worker stdout/stderr arrive on pipes and are
// split into lines for the app's log files.
#pragma once

#include <uv.h>

#include <map>
#include <memory>
#include <set>

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
  void killExitedGroup(pid_t pgid) override;
  ProcSample sample(pid_t pid) override;
  long ticksPerSecond() override;
  pid_t processGroupOf(pid_t pid) override;
  pid_t parentOf(pid_t pid) override;

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
  // Spawned processes not reaped yet: only these pids may be signalled
  // directly. Shared with each process record, which may outlive us.
  std::shared_ptr<std::set<pid_t>> unreaped_ = std::make_shared<std::set<pid_t>>();
};

// Parses the contents of /proc/<pid>/stat (exposed for tests).
ProcSample parseProcStat(std::string_view stat, long page_size);
// The parent pid (field 4) in the contents of /proc/<pid>/stat, or -1.
pid_t parseParentPid(std::string_view stat);

}  // namespace clusterd::master
