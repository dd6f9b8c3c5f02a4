// The CLI side of the control protocol (docs/CONTROL.md): a blocking client
// for one request/reply at a time over the daemon's Unix socket, and the
// start-up of a daemon when none runs for the home. Plain sockets and
// poll(2): the CLI stays fast and never starts an event loop.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "common/result.h"
#include "common/uv_handle.h"

namespace clusterd::cli {

class ControlClient {
 public:
  // Connects to <home>/clusterd.sock.
  static Result<ControlClient> connect(const std::string& home);
  // Sends one request and waits for its reply line.
  Result<nlohmann::json> call(const nlohmann::json& request,
                              std::chrono::milliseconds timeout = std::chrono::seconds(30));

 private:
  UniqueFd fd_;
  std::string buffer_;
};

enum class DaemonState { kRunning, kNotRunning, kStale };
// kStale: a socket file exists but no daemon holds the home's lock.
DaemonState probeDaemon(const std::string& home);

// Starts `self_exe --home HOME daemon --foreground` detached, with its output
// in <home>/daemon.log, and waits until it answers. `note` gets a line to
// show the user (e.g. a stale socket was removed).
Result<void> startDaemon(const std::string& home, const std::string& self_exe, std::string& note);

// The absolute path of this executable (/proc/self/exe).
std::string selfExe(const std::string& argv0);

// The lean daemon executable `clusterd-master` next to `self_exe`, or ""
// when there is none (then the daemon runs inside this binary).
std::string masterExe(const std::string& self_exe);

// The path of the executable `name` in the directory of `self_exe`.
std::string siblingExe(const std::string& self_exe, const std::string& name);

// Replaces this process with the daemon for `home` in the foreground;
// returns only on failure (or after an in-process daemon stopped). The
// daemon runs builtin:worker apps with clusterd-full next to `self_exe`
// (or `self_exe` itself when there is none).
int execDaemon(const std::string& home, const std::string& self_exe);

}  // namespace clusterd::cli
