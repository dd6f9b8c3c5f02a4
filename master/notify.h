// The sd_notify server: Unix datagram sockets the workers report to (each
// worker gets its socket's path as NOTIFY_SOCKET). Messages are
// newline-separated VAR=value lines (READY=1, STATUS=…, WATCHDOG=1,
// WATCHDOG=trigger, STOPPING=1, MAINPID=…, CLUSTERD_STATS=<json>). The
// sender is identified by the pid and uid the kernel attaches (SO_PASSCRED /
// SCM_CREDENTIALS); the supervisor matches them against its workers.
//
// Design: who may reach a socket is decided by the file system, not by the
// message. The main socket, <home>/notify.sock (0600, in the 0700 home), is
// reachable by the master's own user only, so it serves the apps that run as
// that user. An app that runs as another user gets a socket of its own,
// owned by that user (0600), in a runtime directory that user can traverse
// but not list or write (<RUNTIME_DIRECTORY or /run/clusterd>/<home id>/,
// 0711, root's): the home itself often lies in root's 0700 home directory.
// A datagram is tagged with the socket it came in on, so an app's user can
// only ever speak for that app. Each sender pid gets a budget of datagrams
// per second (NotifyRateLimit), so a flood costs the master a bounded amount
// of work.
#pragma once

#include <sys/types.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.h"
#include "common/uv_handle.h"

namespace clusterd::master {

// At most `per_second` datagrams per sender pid in each one-second window,
// for at most `max_senders` distinct senders per window; the rest are
// dropped. Pure bookkeeping on a clock the caller passes in.
class NotifyRateLimit {
 public:
  NotifyRateLimit(uint32_t per_second, size_t max_senders = 4096)
      : per_second_(per_second), max_senders_(max_senders) {}
  // True when the datagram may be handled. `first_drop` is set when this is
  // the first datagram of the sender dropped in the current window.
  bool allow(pid_t sender, uint64_t now_ms, bool& first_drop);

 private:
  uint32_t per_second_;
  size_t max_senders_;
  uint64_t window_ = 0;  // now_ms / 1000 of the current window
  std::map<pid_t, uint32_t> counts_;
};

// The budget: $CLUSTERD_NOTIFY_RATE datagrams per second and sender, 1000
// when unset or not a positive number (a warning says so).
uint32_t notifyRateFromEnvironment();

class NotifyServer {
 public:
  // `tag` is "" for the main socket, else the app the socket belongs to.
  using Handler =
      std::function<void(pid_t sender, const std::string& tag, std::string_view message)>;
  NotifyServer(uv_loop_t* loop, Handler handler, uint32_t rate_per_second);
  ~NotifyServer();
  // Binds the main socket at `path` (mode 0600, a stale file replaced) and
  // starts reading; returns the NOTIFY_SOCKET value.
  Result<std::string> start(const std::string& path);
  // The socket of an app that runs as `uid`:`gid`, in `runtime_dir`'s
  // subdirectory `home_id` (created 0711 when missing). Returns its path.
  Result<std::string> openAppSocket(const std::string& app, uid_t uid, gid_t gid,
                                    const std::string& runtime_dir, const std::string& home_id);
  // Closes the app's socket and removes its file.
  void closeAppSocket(const std::string& app);

 private:
  struct Socket;
  Result<std::unique_ptr<Socket>> bindSocket(const std::string& path, const std::string& tag);
  void drain(Socket& s);

  uv_loop_t* loop_;
  Handler handler_;
  NotifyRateLimit limit_;
  uint64_t last_drop_log_ = 0;
  std::unique_ptr<Socket> main_;
  std::map<std::string, std::unique_ptr<Socket>> apps_;
  uint64_t next_app_socket_ = 0;
  std::string app_dir_;  // the runtime subdirectory once an app socket was made
};

// The runtime directory for app sockets: $RUNTIME_DIRECTORY (systemd's
// RuntimeDirectory=) or /run/clusterd.
std::string notifyRuntimeDir();
// A short name for `home` in that directory (hex of a hash of its real path).
std::string homeId(const std::string& home);

}  // namespace clusterd::master
