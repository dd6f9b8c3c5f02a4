// The control socket server: a Unix stream socket in the daemon's home
// (mode 0600, in a 0700 directory) carrying JSON lines, one request and one
// reply per line (docs/CONTROL.md). Peers whose uid is neither the daemon's
// nor root are refused (SO_PEERCRED). A request longer than kMaxRequest or
// that is not a JSON object gets an error reply; the connection and the
// daemon carry on.
#pragma once

#include <uv.h>

#include <functional>
#include <list>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "common/result.h"
#include "common/uv_handle.h"

namespace clusterd::master {

inline constexpr size_t kMaxRequest = 1 << 20;

class ControlServer {
 public:
  // Returns the reply object for one request object.
  using Handler = std::function<nlohmann::json(const nlohmann::json& request)>;
  ControlServer(uv_loop_t* loop, Handler handler);
  ~ControlServer();
  Result<void> listen(const std::string& path);
  void close();

 private:
  struct Conn;
  void onConnection();
  void onData(Conn& c, std::string_view data);
  void send(Conn& c, const std::string& line);
  void drop(Conn& c);

  uv_loop_t* loop_;
  Handler handler_;
  UvHandle<uv_pipe_t> server_;
  std::list<std::unique_ptr<Conn>> conns_;
  std::string path_;
};

}  // namespace clusterd::master
