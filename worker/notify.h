// worker::Notifier: messages to the master over NOTIFY_SOCKET (the sd_notify
// protocol): READY=1, STOPPING=1, STATUS=<text>, WATCHDOG=1 and clusterd's
// CLUSTERD_STATS=<one-line JSON>. Without NOTIFY_SOCKET every call is a
// no-op, so a standalone worker runs unchanged.
//
// Wire format: one Unix datagram per call, newline-separated VAR=value lines,
// sent to the path in NOTIFY_SOCKET ("@name" = the abstract namespace).
// Sending never blocks the loop (MSG_DONTWAIT); a full socket drops the
// message, which is harmless because the next report follows in a second.
#pragma once

#include <string>
#include <string_view>

#include "common/uv_handle.h"

namespace clusterd::worker {

class Notifier {
 public:
  // Reads NOTIFY_SOCKET from the environment.
  Notifier();
  explicit Notifier(std::string socket_path);

  bool enabled() const { return !path_.empty(); }
  // Sends the text as one datagram; false when it could not be sent.
  bool send(std::string_view message);

 private:
  std::string path_;
  UniqueFd fd_;
};

}  // namespace clusterd::worker
