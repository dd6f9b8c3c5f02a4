// The supervisor: the apps the master runs, their worker slots and the
// policy that keeps them running — start, crash restart with backoff, stop
// with SIGTERM then SIGKILL, rolling reload, scale, memory limit and
// watchdog. All system effects go through Platform, so this is unit-tested
// with a fake clock and fake processes.
//
// Design: an app has `instances` slots. A slot has one main Worker (its state
// machine survives restarts; the pid changes), at most one `incoming` worker
// (a replacement being started by reload, the memory limit or the watchdog)
// and any number of `retiring` workers (replaced, draining after SIGTERM).
// A replacement is promoted only once it is online; only then does the old
// worker get SIGTERM, so a slot never stops serving. A TCP cluster app's slot
// owns its SO_REUSEPORT socket, which outlives the workers that use it.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/uv_handle.h"
#include "master/app.h"
#include "master/platform.h"
#include "master/policy.h"
#include "master/state.h"

namespace clusterd::master {

struct SupervisorOptions {
  std::string self_exe;        // the binary holding the exec trampoline (this one)
  std::string worker_exe;      // the `clusterd` binary, for builtin:worker
  std::string notify_socket;   // NOTIFY_SOCKET given to workers ("" = none)
  // The notify socket of an app that runs as another user (master/notify.h),
  // and its removal; unset (unit tests): such apps use notify_socket.
  std::function<Result<std::string>(const std::string& app, uid_t uid, gid_t gid)> open_app_notify;
  std::function<void(const std::string& app)> close_app_notify;
  std::string log_dir;         // default directory of app log files
  std::vector<std::string> base_env;  // the daemon's environment, KEY=VALUE
  Millis start_grace{100};     // online after this long without wait_ready
  bool use_trampoline = true;  // false in unit tests (no LISTEN_PID fix-up needed)
  // What control clients may ask for (master/limits.h): apps known at once
  // and worker slots over all apps.
  size_t max_apps = 512;
  size_t max_workers = 1024;
};

struct App;
struct Slot;

struct Worker {
  uint64_t key = 0;  // unique for the daemon's lifetime; timers and exits refer to it
  App* app = nullptr;
  Slot* slot = nullptr;
  WorkerState state = WorkerState::kStopped;
  pid_t pid = 0;
  Millis started_at{0};
  Millis online_at{0};
  Millis last_watchdog{0};
  TimerId ready_timer = 0, kill_timer = 0, restart_timer = 0;
  enum class AfterStop { kNothing, kStart, kRemoveSlot };
  AfterStop after_stop = AfterStop::kNothing;
  bool replacing = false;   // a replacement was already requested for this worker
  std::string status_text;  // STATUS= from the worker, or the master's note
  std::string stats_json;   // latest CLUSTERD_STATS= object
  std::string last_exit;    // "exit 1", "signal 9", …
  uint64_t rss = 0;
  double cpu = 0;
  uint64_t cpu_ticks = 0;
  Millis sampled_at{0};
};

struct Slot {
  int id = 0;
  int instance = 0;
  std::unique_ptr<Worker> main;
  std::unique_ptr<Worker> incoming;
  std::vector<std::unique_ptr<Worker>> retiring;
  RestartHistory history;
  int restarts = 0;
  bool removing = false;
  UniqueFd listen_fd;  // per-slot SO_REUSEPORT socket (TCP cluster apps)
};

struct App {
  AppConfig cfg;
  std::vector<std::unique_ptr<Slot>> slots;
  uint16_t port = 0;       // the bound TCP port (resolves listen port 0)
  UniqueFd shared_fd;      // Unix-socket cluster apps: one socket for all slots
  // Set when the workers run as another user than the master's: they get a
  // session of their own and a notify socket of their own (its tag is the
  // app's name; the master's own apps share the main socket, tag "").
  bool other_user = false;
  std::string notify_tag;
  std::string notify_socket;
  std::shared_ptr<LogFile> out, err;
  TimerId tick_timer = 0;
  std::deque<int> reload_queue;  // slot ids waiting for their turn
  int reload_parallel = 1;
  bool deleting = false;
};

class Supervisor {
 public:
  Supervisor(Platform& platform, SupervisorOptions options);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Starts a new app (or a stopped one again, with the new config).
  Result<void> startApp(AppConfig cfg);
  // Gives running apps of `target` new specs (the CLI's fresh reading of
  // their ecosystem file), for the restart, reload or start that follows;
  // workers started from now on use them. All are checked before any is
  // applied: an unknown app, one outside the target, a program that cannot
  // run, or a change to what a running app keeps (exec_mode, listen, uid,
  // gid, script builtin:worker or not, the log files and their settings) is
  // an error naming the field, and then nothing changed. The number of
  // instances stays what it is (`scale` changes it).
  Result<void> updateSpecs(const std::string& target, std::vector<AppConfig> cfgs);
  // Targets: an app name, a worker id, or "all". Each returns how many
  // workers it acted on, or an error naming the unknown target.
  // Starts the stopped, waiting or errored workers of a known target again
  // (PM2's `start <name|id>`); online workers are left alone.
  Result<int> startTarget(const std::string& target);
  Result<int> stop(const std::string& target);
  Result<int> restart(const std::string& target);
  Result<int> reload(const std::string& target, int parallel);
  Result<int> remove(const std::string& target);
  // "N", "+N" or "-N".
  Result<int> scale(const std::string& app, const std::string& count);
  // Replaces one worker gracefully (cluster mode) or restarts it (fork mode).
  void replace(Worker& w, const std::string& reason);

  // One sd_notify datagram from `sender` (the pid from SCM_CREDENTIALS)
  // on the socket tagged `tag`. It counts for the worker whose pid it is, or
  // whose process group it is in and from which it descends, and only when
  // that worker's app uses this socket.
  void onNotify(pid_t sender, const std::string& tag, std::string_view message);
  // The same on the main socket.
  void onNotify(pid_t sender, std::string_view message) { onNotify(sender, "", message); }
  // Stops everything (daemon shutdown); done() turns true when all exited.
  void stopAll();
  bool idle() const;

  nlohmann::json statusJson() const;
  Result<nlohmann::json> describeJson(const std::string& app) const;
  nlohmann::json dumpJson() const;  // the app configs, for `save`
  std::vector<std::shared_ptr<LogFile>> logFiles(const std::string& app) const;

  // For tests: the worker with this pid, or nullptr.
  Worker* findByPid(pid_t pid);
  const std::map<std::string, std::unique_ptr<App>>& apps() const { return apps_; }

 private:
  std::unique_ptr<Worker> newWorker(App& app, Slot& slot);
  void dropWorker(std::unique_ptr<Worker>& w);
  Worker* byKey(uint64_t key);
  Result<void> addSlot(App& app);
  Result<void> ensureListener(App& app, Slot& slot);
  Result<SpawnRequest> buildSpawn(App& app, Slot& slot);
  // Makes cfg's cwd absolute and checks that its program can run here.
  Result<void> prepare(AppConfig& cfg) const;
  // The absolute paths of an app's out and error logs.
  std::pair<std::string, std::string> logPaths(const config::AppSpec& s) const;
  // An error naming the first setting `next` changes that `app` keeps while it runs.
  Result<void> checkKept(const App& app, const AppConfig& next) const;
  // Whether app `name` may have `instances` slots within max_apps and max_workers.
  Result<void> checkRoom(const std::string& name, size_t instances) const;
  void startWorker(Worker& w);
  void stopWorker(Worker& w, Worker::AfterStop after);
  bool apply(Worker& w, WorkerEvent e);
  void finishStop(Worker& w);
  void scheduleGc();
  void onReady(Worker& w);
  void onExit(uint64_t key, int64_t status, int signal);
  void onMainExit(Worker& w, Millis uptime);
  void promote(Slot& slot);
  void pumpReload(App& app);
  void beginReplace(App& app, Slot& slot);
  void tick(App& app);
  void scheduleTick(App& app);
  std::vector<std::pair<App*, Slot*>> resolve(const std::string& target, std::string& err);
  void collectGarbage();
  bool descendsFrom(pid_t pid, pid_t ancestor);
  void forgetApp(std::map<std::string, std::unique_ptr<App>>::iterator it);

  Platform& platform_;
  SupervisorOptions options_;
  std::map<std::string, std::unique_ptr<App>> apps_;
  std::map<uint64_t, Worker*> workers_;
  uint64_t next_key_ = 1;
  int next_slot_id_ = 0;
  TimerId gc_timer_ = 0;
};

}  // namespace clusterd::master
