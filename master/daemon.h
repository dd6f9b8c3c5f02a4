// The master daemon: one libuv loop running the supervisor, the control
// socket, the notify socket and signal handling, for one home directory.
//
// Home layout: clusterd.sock (control), notify.sock (sd_notify of the
// workers that run as the daemon's user; master/notify.h), daemon.lock
// (flock held while the daemon runs), daemon.pid, daemon.log (when started
// in the background), dump.json (`save`), workers.groups (the live workers'
// process groups, for the orphan sweep of the next daemon;
// master/orphans.h), logs/ (worker logs). The daemon refuses a home others
// could change (master/startup.h).
//
// Signals: SIGTERM/SIGINT stop all workers (SIGTERM, kill_timeout, SIGKILL)
// and exit 0; SIGHUP reloads every app.
//
// Under a service manager that passes NOTIFY_SOCKET (systemd Type=notify) the
// daemon sends READY=1 once its control socket accepts requests, and
// STOPPING=1 when it begins to shut down.
#pragma once

#include <string>

namespace clusterd::master {

struct DaemonOptions {
  std::string home;
  std::string self_exe;    // path of this binary (it holds the exec trampoline)
  std::string worker_exe;  // path of `clusterd` (runs builtin:worker apps)
};

// Runs in the foreground until stopped. Returns the process exit code
// (0 after a clean stop, 111 when it cannot start, e.g. already running).
int runDaemon(const DaemonOptions& options);

// Paths inside a home.
std::string controlSocketPath(const std::string& home);
std::string lockPath(const std::string& home);
std::string pidPath(const std::string& home);
std::string dumpPath(const std::string& home);
std::string daemonLogPath(const std::string& home);
std::string notifySocketPath(const std::string& home);

// Creates the home (0700) and its logs/ directory.
bool prepareHome(const std::string& home, std::string& err);

}  // namespace clusterd::master
