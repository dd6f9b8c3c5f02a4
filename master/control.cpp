// The control socket server (see master/control.h).
#include "master/control.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "common/log.h"

namespace clusterd::master {

using nlohmann::json;

struct ControlServer::Conn {
  ControlServer* server = nullptr;
  UvHandle<uv_pipe_t> pipe;
  std::string buffer;
  bool discarding = false;  // inside an oversized request: skip to its newline
};

ControlServer::ControlServer(uv_loop_t* loop, Handler handler)
    : loop_(loop), handler_(std::move(handler)) {}

ControlServer::~ControlServer() { close(); }

Result<void> ControlServer::listen(const std::string& path) {
  ::unlink(path.c_str());
  uv_pipe_init(loop_, server_.get(), 0);
  server_->data = this;
  // Created 0600 from the start: no window where another user could connect.
  mode_t old = ::umask(0177);
  int rc = uv_pipe_bind(server_.get(), path.c_str());
  ::umask(old);
  if (rc != 0) return Error{"control socket " + path + ": bind: " + uv_strerror(rc)};
  ::chmod(path.c_str(), 0600);
  rc = uv_listen(reinterpret_cast<uv_stream_t*>(server_.get()), 64, [](uv_stream_t* s, int status) {
    if (status == 0 && s->data) static_cast<ControlServer*>(s->data)->onConnection();
  });
  if (rc != 0) return Error{"control socket " + path + ": listen: " + uv_strerror(rc)};
  path_ = path;
  return success();
}

void ControlServer::close() {
  conns_.clear();
  server_.reset();
  if (!path_.empty()) ::unlink(path_.c_str());
  path_.clear();
}

void ControlServer::onConnection() {
  auto c = std::make_unique<Conn>();
  c->server = this;
  uv_pipe_init(loop_, c->pipe.get(), 0);
  if (uv_accept(reinterpret_cast<uv_stream_t*>(server_.get()),
                reinterpret_cast<uv_stream_t*>(c->pipe.get())) != 0)
    return;
  uv_os_fd_t fd = -1;
  uv_fileno(c->pipe.handle(), &fd);
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
      (cred.uid != 0 && cred.uid != ::geteuid())) {
    log::warn("control", "refused a connection from uid {} pid {}", cred.uid, cred.pid);
    return;  // c's destructor closes the connection
  }
  c->pipe->data = c.get();
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(c->pipe.get()),
      [](uv_handle_t*, size_t, uv_buf_t* buf) {
        static char storage[64 * 1024];
        buf->base = storage;
        buf->len = sizeof storage;
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
        auto* conn = static_cast<Conn*>(s->data);
        if (!conn) return;
        if (n < 0) {
          conn->server->drop(*conn);
          return;
        }
        conn->server->onData(*conn, std::string_view(buf->base, static_cast<size_t>(n)));
      });
  conns_.push_back(std::move(c));
}

void ControlServer::onData(Conn& c, std::string_view data) {
  while (!data.empty()) {
    size_t nl = data.find('\n');
    std::string_view part = data.substr(0, nl);
    data = nl == std::string_view::npos ? std::string_view{} : data.substr(nl + 1);
    if (c.discarding) {
      if (nl != std::string_view::npos) c.discarding = false;
      continue;
    }
    c.buffer.append(part);
    if (c.buffer.size() > kMaxRequest) {
      c.buffer.clear();
      c.discarding = nl == std::string_view::npos;
      send(c, json{{"ok", false}, {"error", "request longer than " + std::to_string(kMaxRequest) +
                                                " bytes"}}.dump());
      continue;
    }
    if (nl == std::string_view::npos) return;  // wait for the rest of the line
    std::string line = std::move(c.buffer);
    c.buffer.clear();
    if (line.empty()) continue;
    json req = json::parse(line, nullptr, false);
    json reply;
    if (req.is_discarded() || !req.is_object() || !req.contains("cmd") || !req["cmd"].is_string())
      reply = {{"ok", false}, {"error", "malformed request: expected one JSON object with a \"cmd\" string per line"}};
    else
      reply = handler_(req);
    send(c, reply.dump(-1, ' ', false, json::error_handler_t::replace));
  }
}

void ControlServer::send(Conn& c, const std::string& line) {
  struct Write {
    uv_write_t req;
    std::string data;
  };
  auto* w = new Write{};
  w->data = line + "\n";
  uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(c.pipe.get()), &buf, 1,
                    [](uv_write_t* r, int) { delete reinterpret_cast<Write*>(r); });
  if (rc != 0) delete w;
}

void ControlServer::drop(Conn& c) {
  for (auto it = conns_.begin(); it != conns_.end(); ++it) {
    if (it->get() == &c) {
      (*it)->pipe->data = nullptr;
      conns_.erase(it);
      return;
    }
  }
}

}  // namespace clusterd::master
