// The master daemon's loop and its request dispatch (see master/daemon.h).
#include "master/daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "common/durable_file.h"
#include "common/log.h"
#include "common/uv_handle.h"
#include "master/control.h"
#include "master/daemon_log.h"
#include "master/limits.h"
#include "master/notify.h"
#include "master/orphans.h"
#include "master/reaper.h"
#include "master/startup.h"
#include "master/supervisor.h"
#include "master/uv_platform.h"

extern char** environ;

namespace clusterd::master {

using nlohmann::json;

std::string controlSocketPath(const std::string& home) { return home + "/clusterd.sock"; }
std::string lockPath(const std::string& home) { return home + "/daemon.lock"; }
std::string pidPath(const std::string& home) { return home + "/daemon.pid"; }
std::string dumpPath(const std::string& home) { return home + "/dump.json"; }
std::string daemonLogPath(const std::string& home) { return home + "/daemon.log"; }
std::string notifySocketPath(const std::string& home) {
  return home + "/notify.sock";
}

bool prepareHome(const std::string& home, std::string& err) {
  for (const std::string& dir : {home, home + "/logs"}) {
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      err = "mkdir " + dir + ": " + std::strerror(errno);
      return false;
    }
  }
  struct stat st {};
  if (::stat(home.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    err = home + " is not a directory";
    return false;
  }
  // A home others may read is made private; one others may write is left
  // for checkHome() to refuse (master/startup.h): its files cannot be trusted.
  if (st.st_uid == ::geteuid() && (st.st_mode & 0077) != 0 && (st.st_mode & 0022) == 0)
    ::chmod(home.c_str(), 0700);
  return true;
}

namespace {

constexpr std::string_view kDaemonLog = "daemon";

// Tells a service manager (systemd Type=notify) about the daemon itself, when
// it started us with NOTIFY_SOCKET. Best effort: a failure is only logged.
void notifyServiceManager(const std::string& socket_path, const std::string& message) {
  if (socket_path.empty()) return;
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof a.sun_path) return;
  std::memcpy(a.sun_path, socket_path.data(), socket_path.size());
  if (a.sun_path[0] == '@') a.sun_path[0] = '\0';
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_path.size());
  if (!fd || ::sendto(fd.get(), message.data(), message.size(), MSG_NOSIGNAL,
                      reinterpret_cast<sockaddr*>(&a), len) < 0)
    log::warn(kDaemonLog, "NOTIFY_SOCKET {}: {}", socket_path, std::strerror(errno));
}

class Daemon {
 public:
  Daemon(const DaemonOptions& o, const DaemonLimits& limits)
      : options_(o),
        limits_(limits),
        platform_(uv_default_loop()),
        control_(uv_default_loop(), [this](const json& r) { return handle(r); }, limits.control),
        notify_(
            uv_default_loop(),
            [this](pid_t pid, const std::string& tag, std::string_view m) {
              if (supervisor_) supervisor_->onNotify(pid, tag, m);
            },
            notifyRateFromEnvironment()),
        ledger_(uv_default_loop(), groupsPath(o.home)),
        sweep_(uv_default_loop(), kOrphanGrace),
        reaper_(uv_default_loop(), o.self_exe, o.home) {}

  int run() {
    closeInheritedOnExec();
    std::string err;
    if (!prepareHome(options_.home, err)) {
      log::error(kDaemonLog, "{}", err);
      return 111;
    }
    if (auto home = checkHome(options_.home); !home) {
      log::error(kDaemonLog, "{}", home.error().message);
      return 111;
    }
    lock_.reset(::open(lockPath(options_.home).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!lock_ || ::flock(lock_.get(), LOCK_EX | LOCK_NB) != 0) {
      log::error(kDaemonLog, "a daemon already runs for {} (pid {}); use `clusterd --home {} kill` to stop it",
                 options_.home, readPid(), options_.home);
      return 111;
    }
    {
      std::ofstream pid(pidPath(options_.home), std::ios::trunc);
      pid << ::getpid() << "\n";
    }
    // What the workers of a daemon killed with SIGKILL forked may still run;
    // the groups file names their process groups. Read it before this
    // daemon's ledger rewrites it.
    sweep_.start(groupsPath(options_.home));
    platform_.setLedger(&ledger_);
    // Should this daemon die by SIGKILL, the reaper sweeps its workers' groups.
    reaper_.start();
    auto ns = notify_.start(notifySocketPath(options_.home));
    if (!ns) {
      log::error(kDaemonLog, "{}", ns.error().message);
      return 111;
    }
    SupervisorOptions so;
    so.self_exe = options_.self_exe;
    so.worker_exe = options_.worker_exe;
    so.notify_socket = *ns;
    so.open_app_notify = [this](const std::string& app, uid_t uid, gid_t gid) {
      return notify_.openAppSocket(app, uid, gid, notifyRuntimeDir(), homeId(options_.home));
    };
    so.close_app_notify = [this](const std::string& app) { notify_.closeAppSocket(app); };
    so.log_dir = options_.home + "/logs";
    so.max_apps = limits_.max_apps;
    so.max_workers = limits_.max_workers;
    for (char** e = environ; *e; ++e) so.base_env.emplace_back(*e);
    supervisor_ = std::make_unique<Supervisor>(platform_, so);
    // Only now that we hold the lock is any socket file left there stale.
    auto cs = control_.listen(controlSocketPath(options_.home));
    if (!cs) {
      log::error(kDaemonLog, "{}", cs.error().message);
      return 111;
    }
    ::signal(SIGPIPE, SIG_IGN);
    for (auto [sig, h] : {std::pair{SIGTERM, &sigterm_}, {SIGINT, &sigint_}, {SIGHUP, &sighup_}}) {
      uv_signal_init(uv_default_loop(), h->get());
      h->get()->data = this;
      uv_signal_start(h->get(), [](uv_signal_t* s, int signum) {
        if (s->data) static_cast<Daemon*>(s->data)->onSignal(signum);
      }, sig);
      uv_unref(h->handle());
    }
    if (const char* ns_env = std::getenv("NOTIFY_SOCKET")) service_notify_ = ns_env;
    notifyServiceManager(service_notify_, "READY=1\nMAINPID=" + std::to_string(::getpid()) + "\n");
    log::info(kDaemonLog, "clusterd master pid {} for {}", ::getpid(), options_.home);
    uv_run(uv_default_loop(), UV_RUN_DEFAULT);
    control_.close();
    supervisor_.reset();
    ::unlink(pidPath(options_.home).c_str());
    sigterm_.reset();
    sigint_.reset();
    sighup_.reset();
    shutdown_timer_.reset();
    uv_run(uv_default_loop(), UV_RUN_NOWAIT);  // let close callbacks free their handles
    ::unlink(groupsPath(options_.home).c_str());  // every worker has exited
    log::info(kDaemonLog, "stopped");
    return 0;
  }

 private:
  std::string readPid() {
    std::ifstream f(pidPath(options_.home));
    std::string pid;
    f >> pid;
    return pid.empty() ? "?" : pid;
  }

  void onSignal(int signum) {
    if (signum == SIGHUP) {
      log::info(kDaemonLog, "SIGHUP: reloading all apps");
      (void)supervisor_->reload("all", 1);
      return;
    }
    log::info(kDaemonLog, "signal {}: stopping all workers", signum);
    beginShutdown();
  }

  void beginShutdown() {
    if (shutting_down_) return;
    shutting_down_ = true;
    notifyServiceManager(service_notify_, "STOPPING=1\n");
    supervisor_->stopAll();
    uv_timer_init(uv_default_loop(), shutdown_timer_.get());
    shutdown_timer_->data = this;
    uv_timer_start(shutdown_timer_.get(), [](uv_timer_t* t) {
      auto* self = static_cast<Daemon*>(t->data);
      if (self->supervisor_->idle()) uv_stop(uv_default_loop());
    }, 0, 10);
  }

  json handle(const json& req) {
    const std::string cmd = req.value("cmd", "");
    if (shutting_down_ && cmd != "ping") return {{"ok", false}, {"error", "the daemon is shutting down"}};
    try {
      if (cmd == "ping")
        return {{"ok", true}, {"pid", ::getpid()}, {"home", options_.home}, {"version", "0.1.0"},
                {"reaper", reaper_.pid()}};
      if (cmd == "status") return {{"ok", true}, {"workers", supervisor_->statusJson()}};
      if (cmd == "start" && req.contains("target")) {
        if (auto refused = updateSpecs(cmd, req)) return *refused;
        auto r = supervisor_->startTarget(req.value("target", ""));
        if (!r) return {{"ok", false}, {"error", r.error().message}};
        return {{"ok", true}, {"count", *r}};
      }
      if (cmd == "start") return startApps(req.value("apps", json::array()));
      if (cmd == "stop" || cmd == "restart" || cmd == "delete" || cmd == "reload") {
        std::string target = req.value("target", "");
        if (target.empty()) return {{"ok", false}, {"error", cmd + ": \"target\" is required"}};
        if (auto refused = updateSpecs(cmd, req)) return *refused;
        Result<int> r = cmd == "stop"      ? supervisor_->stop(target)
                        : cmd == "restart" ? supervisor_->restart(target)
                        : cmd == "delete"  ? supervisor_->remove(target)
                                           : supervisor_->reload(target, req.value("parallel", 1));
        if (!r) return {{"ok", false}, {"error", r.error().message}};
        return {{"ok", true}, {"count", *r}};
      }
      if (cmd == "scale") {
        auto r = supervisor_->scale(req.value("app", ""), req.value("count", ""));
        if (!r) return {{"ok", false}, {"error", r.error().message}};
        return {{"ok", true}, {"instances", *r}};
      }
      if (cmd == "describe") {
        auto r = supervisor_->describeJson(req.value("app", ""));
        if (!r) return {{"ok", false}, {"error", r.error().message}};
        json out = std::move(*r);
        out["ok"] = true;
        return out;
      }
      if (cmd == "logs") return logs(req.value("app", ""));
      if (cmd == "flush") {
        auto files = supervisor_->logFiles(req.value("app", ""));
        for (auto& f : files) f->truncate();
        return {{"ok", true}, {"count", files.size()}};
      }
      if (cmd == "save") return save();
      if (cmd == "resurrect") return resurrect();
      if (cmd == "kill") {
        beginShutdown();
        return {{"ok", true}, {"pid", ::getpid()}};
      }
    } catch (const json::exception& e) {
      return {{"ok", false}, {"error", std::string("bad request: ") + e.what()}};
    }
    return {{"ok", false}, {"error", "unknown command \"" + cmd + "\""}};
  }

  // `apps` beside a `target`: the specs the CLI read again from the apps'
  // ecosystem files, in its own environment, for the restart, reload or
  // start that follows. All or nothing: a refusal leaves every app as it was.
  std::optional<json> updateSpecs(const std::string& cmd, const json& req) {
    auto it = req.find("apps");
    if (it == req.end()) return std::nullopt;
    if (cmd != "start" && cmd != "restart" && cmd != "reload")
      return json{{"ok", false},
                  {"error", cmd + ": \"apps\" goes only with start, restart and reload"}};
    if (!it->is_array())
      return json{{"ok", false}, {"error", cmd + ": \"apps\" must be an array of app objects"}};
    std::vector<AppConfig> cfgs;
    for (const json& a : *it) {
      auto cfg = appFromJson(a);
      if (!cfg) return json{{"ok", false}, {"error", cmd + ": " + cfg.error().message}};
      cfgs.push_back(std::move(*cfg));
    }
    auto r = supervisor_->updateSpecs(req.value("target", ""), std::move(cfgs));
    if (!r) return json{{"ok", false}, {"error", r.error().message}};
    return std::nullopt;
  }

  json startApps(const json& apps) {
    if (!apps.is_array()) return {{"ok", false}, {"error", "start: \"apps\" must be an array"}};
    json results = json::array();
    std::string errors;
    for (const json& a : apps) {
      auto cfg = appFromJson(a);
      Result<void> r = cfg ? supervisor_->startApp(std::move(*cfg)) : Result<void>(cfg.error());
      std::string name = a.is_object() ? a.value("name", "") : "";
      if (r) {
        results.push_back({{"app", name}, {"ok", true}});
      } else {
        results.push_back({{"app", name}, {"ok", false}, {"error", r.error().message}});
        errors += (errors.empty() ? "" : "; ") + r.error().message;
      }
    }
    json out = {{"ok", errors.empty()}, {"results", results}};
    if (!errors.empty()) out["error"] = errors;
    return out;
  }

  json logs(const std::string& app) {
    json files = json::array();
    for (auto& [name, a] : supervisor_->apps()) {
      if (!app.empty() && app != name) continue;
      files.push_back({{"app", name},
                       {"out", a->out ? a->out->path() : ""},
                       {"err", a->err ? a->err->path() : ""}});
    }
    if (!app.empty() && files.empty()) return {{"ok", false}, {"error", "no app named \"" + app + "\""}};
    return {{"ok", true}, {"files", files}};
  }

  json save() {
    json dump = supervisor_->dumpJson();
    std::string path = dumpPath(options_.home);
    // Written beside and renamed over: a full disk or a crash leaves the
    // previous dump whole, never a truncated one.
    auto r = replaceFileDurably(path, dump.dump(2) + "\n", 0600);
    if (!r) return {{"ok", false}, {"error", "save: " + r.error().message}};
    return {{"ok", true}, {"path", path}, {"apps", dump.size()}};
  }

  json resurrect() {
    std::string path = dumpPath(options_.home);
    std::ifstream f(path);
    if (!f) return {{"ok", false}, {"error", "no saved apps: " + path + " does not exist (run `clusterd save` first)"}};
    std::stringstream ss;
    ss << f.rdbuf();
    json dump = json::parse(ss.str(), nullptr, false);
    if (dump.is_discarded() || !dump.is_array())
      return {{"ok", false}, {"error", path + " is not a clusterd dump (a JSON array of apps)"}};
    json apps = json::array();
    for (auto& a : dump)
      if (a.is_object() && !supervisor_->apps().count(a.value("name", ""))) apps.push_back(a);
    return startApps(apps);
  }

  DaemonOptions options_;
  DaemonLimits limits_;
  UvPlatform platform_;
  ControlServer control_;
  NotifyServer notify_;
  GroupLedger ledger_;
  OrphanSweep sweep_;
  ReaperProcess reaper_;
  std::unique_ptr<Supervisor> supervisor_;
  UniqueFd lock_;
  UvHandle<uv_signal_t> sigterm_, sigint_, sighup_;
  UvHandle<uv_timer_t> shutdown_timer_;
  bool shutting_down_ = false;
  std::string service_notify_;  // NOTIFY_SOCKET of our own service manager, if any
};

}  // namespace

int runDaemon(const DaemonOptions& options) {
  auto limits = limitsFromEnvironment();
  if (!limits) {
    log::error(kDaemonLog, "{}", limits.error().message);
    return 111;
  }
  // Started in the background, the daemon rotates its own daemon.log.
  DaemonLog daemon_log(options.home, limits->log_max_size, limits->log_retain);
  daemon_log.adopt();
  Daemon d(options, *limits);
  return d.run();
}

}  // namespace clusterd::master
