// The control socket server: a Unix stream socket in the daemon's home
// (mode 0600, in a 0700 directory) carrying JSON lines, one request and one
// reply per line (docs/CONTROL.md). Peers whose uid is neither the daemon's
// nor root are refused (SO_PEERCRED).
//
// Bounds (ControlLimits, docs/CONTROL.md "Limits"): a request line longer
// than max_request, or nested deeper than max_depth, gets an error reply and
// the connection carries on; a client with more than max_queued bytes of
// replies it has not read is dropped; a connection that sends and receives
// nothing for idle_timeout is closed; past max_clients connections a new one
// gets an error line and is closed.
//
// Design: every request a client sent is answered, also after it half-closes
// (shutdown(SHUT_WR)): on end-of-file the connection stops reading and is
// closed once its queued replies are written. One periodic sweep closes idle
// connections, instead of a timer per connection.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

#include "common/result.h"
#include "common/uv_handle.h"

namespace clusterd::master {

struct ControlLimits {
  size_t max_request = 1 << 20;  // bytes in one request line
  int max_depth = 32;            // nesting of arrays and objects in one request
  size_t max_queued = 4 << 20;   // bytes of replies one client has not read, past the kernel's buffer
  size_t max_clients = 64;       // connections at once
  std::chrono::milliseconds idle_timeout{60'000};
};

// The deepest nesting of arrays and objects in JSON text, counted up to
// `stop` (a larger answer is not needed); strings are skipped.
int jsonDepth(std::string_view text, int stop);

class ControlServer {
 public:
  // Returns the reply object for one request object.
  using Handler = std::function<nlohmann::json(const nlohmann::json& request)>;
  ControlServer(uv_loop_t* loop, Handler handler, ControlLimits limits = {});
  ~ControlServer();
  Result<void> listen(const std::string& path);
  void close();

 private:
  struct Conn;
  void onConnection();
  void onData(Conn& c, std::string_view data);
  void onEof(Conn& c);
  void onWritten(Conn& c, int status);
  // Answers one complete line; false when the client was dropped.
  bool answer(Conn& c, const std::string& line);
  // Queues one reply; false when the client was dropped.
  bool send(Conn& c, const std::string& line);
  void sweepIdle();
  void drop(Conn& c);

  uv_loop_t* loop_;
  Handler handler_;
  ControlLimits limits_;
  UvHandle<uv_pipe_t> server_;
  UvHandle<uv_timer_t> sweep_;
  std::list<std::unique_ptr<Conn>> conns_;
  std::string path_;
};

}  // namespace clusterd::master
