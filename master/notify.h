// The sd_notify server: one Unix datagram socket for all workers (its
// address goes to them as NOTIFY_SOCKET). Messages are newline-separated
// VAR=value lines (READY=1, STATUS=…, WATCHDOG=1, STOPPING=1, MAINPID=…,
// CLUSTERD_STATS=<json>). The sender is identified by the pid the kernel
// attaches (SO_PASSCRED / SCM_CREDENTIALS), so a worker cannot speak for
// another one.
//
// Design: the socket lives in the abstract namespace ("@clusterd-notify-<pid>")
// so workers that dropped privileges can reach it without a path they may
// write to; trust comes from the kernel-verified pid, not the address.
#pragma once

#include <uv.h>

#include <functional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "common/uv_handle.h"

namespace clusterd::master {

class NotifyServer {
 public:
  using Handler = std::function<void(pid_t sender, std::string_view message)>;
  NotifyServer(uv_loop_t* loop, Handler handler);
  // Binds the socket and starts reading; returns the NOTIFY_SOCKET value.
  Result<std::string> start(const std::string& name);

 private:
  void drain();
  uv_loop_t* loop_;
  Handler handler_;
  UniqueFd fd_;
  UvHandle<uv_poll_t> poll_;
};

}  // namespace clusterd::master
