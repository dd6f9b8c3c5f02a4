// The control socket server (see master/control.h).
#include "master/control.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>

#include "common/log.h"

namespace clusterd::master {

using nlohmann::json;

namespace {
constexpr std::string_view kControlLog = "control";

std::string errorLine(const std::string& message) {
  return json{{"ok", false}, {"error", message}}.dump();
}
}  // namespace

struct ControlServer::Conn {
  ControlServer* server = nullptr;
  UvHandle<uv_pipe_t> pipe;
  std::string buffer;
  bool discarding = false;   // inside an oversized request: skip to its newline
  bool eof = false;          // the client half-closed: close once the replies are out
  size_t writes = 0;         // replies handed to libuv whose write has not completed
  uint64_t last_active = 0;  // uv_now() of the last read or completed write
};

int jsonDepth(std::string_view text, int stop) {
  int depth = 0;
  int deepest = 0;
  bool in_string = false;
  bool escaped = false;
  for (char ch : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (ch == '\\') escaped = true;
      else if (ch == '"') in_string = false;
    } else if (ch == '"') {
      in_string = true;
    } else if (ch == '[' || ch == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > stop) return deepest;
    } else if (ch == ']' || ch == '}') {
      --depth;
    }
  }
  return deepest;
}

ControlServer::ControlServer(uv_loop_t* loop, Handler handler, ControlLimits limits)
    : loop_(loop), handler_(std::move(handler)), limits_(limits) {}

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
  // A quarter of the timeout between sweeps: an idle connection is closed
  // within 1.25 timeouts.
  auto every = std::clamp<uint64_t>(static_cast<uint64_t>(limits_.idle_timeout.count()) / 4, 10, 1000);
  uv_timer_init(loop_, sweep_.get());
  sweep_->data = this;
  uv_timer_start(sweep_.get(), [](uv_timer_t* t) {
    if (t->data) static_cast<ControlServer*>(t->data)->sweepIdle();
  }, every, every);
  uv_unref(sweep_.handle());
  return success();
}

void ControlServer::close() {
  conns_.clear();
  server_.reset();
  sweep_.reset();
  if (!path_.empty()) ::unlink(path_.c_str());
  path_.clear();
}

void ControlServer::onConnection() {
  auto c = std::make_unique<Conn>();
  c->server = this;
  uv_pipe_init(loop_, c->pipe.get(), 0);
  auto* stream = reinterpret_cast<uv_stream_t*>(c->pipe.get());
  if (uv_accept(reinterpret_cast<uv_stream_t*>(server_.get()), stream) != 0) return;
  uv_os_fd_t fd = -1;
  uv_fileno(c->pipe.handle(), &fd);
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
      (cred.uid != 0 && cred.uid != ::geteuid())) {
    log::warn(kControlLog, "refused a connection from uid {} pid {}", cred.uid, cred.pid);
    return;  // c's destructor closes the connection
  }
  if (conns_.size() >= limits_.max_clients) {
    log::warn(kControlLog, "refused a connection: {} control connections are open, the limit",
              limits_.max_clients);
    std::string line = errorLine("too many control connections (limit " +
                                 std::to_string(limits_.max_clients) +
                                 "); try again once others have closed") +
                       "\n";
    uv_buf_t buf = uv_buf_init(line.data(), static_cast<unsigned>(line.size()));
    (void)uv_try_write(stream, &buf, 1);  // best effort: a fresh socket has room
    return;
  }
  c->pipe->data = c.get();
  c->last_active = uv_now(loop_);
  uv_read_start(
      stream,
      [](uv_handle_t*, size_t, uv_buf_t* buf) {
        static char storage[64 * 1024];
        buf->base = storage;
        buf->len = sizeof storage;
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
        auto* conn = static_cast<Conn*>(s->data);
        if (!conn) return;
        if (n == UV_EOF) {
          conn->server->onEof(*conn);
        } else if (n < 0) {
          conn->server->drop(*conn);
        } else if (n > 0) {
          conn->last_active = uv_now(conn->server->loop_);
          conn->server->onData(*conn, std::string_view(buf->base, static_cast<size_t>(n)));
        }
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
    if (c.buffer.size() > limits_.max_request) {
      c.buffer.clear();
      c.discarding = nl == std::string_view::npos;
      if (!send(c, errorLine("request longer than " + std::to_string(limits_.max_request) +
                             " bytes")))
        return;
      continue;
    }
    if (nl == std::string_view::npos) return;  // wait for the rest of the line
    std::string line = std::move(c.buffer);
    c.buffer.clear();
    if (!answer(c, line)) return;
  }
}

void ControlServer::onEof(Conn& c) {
  c.eof = true;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(c.pipe.get()));
  // A last request without its newline is still a request the client sent.
  if (!c.discarding && !c.buffer.empty()) {
    std::string line = std::move(c.buffer);
    c.buffer.clear();
    if (!answer(c, line)) return;
  }
  if (c.writes == 0) drop(c);
}

bool ControlServer::answer(Conn& c, const std::string& line) {
  if (line.empty()) return true;
  json reply;
  // The parser is iterative, but copies and walks of a parsed value recurse.
  if (jsonDepth(line, limits_.max_depth) > limits_.max_depth) {
    reply = {{"ok", false},
             {"error", "request nested deeper than " + std::to_string(limits_.max_depth) +
                           " levels of arrays and objects"}};
  } else {
    json req = json::parse(line, nullptr, false);
    if (req.is_discarded() || !req.is_object() || !req.contains("cmd") || !req["cmd"].is_string())
      reply = {{"ok", false}, {"error", "malformed request: expected one JSON object with a \"cmd\" string per line"}};
    else
      reply = handler_(req);
  }
  return send(c, reply.dump(-1, ' ', false, json::error_handler_t::replace));
}

bool ControlServer::send(Conn& c, const std::string& line) {
  struct Write {
    uv_write_t req;
    std::string data;
  };
  auto* w = new Write{};
  w->req.data = w;
  w->data = line + "\n";
  uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(c.pipe.get()), &buf, 1,
                    [](uv_write_t* r, int status) {
                      // Null once the connection was dropped (its handle is closing).
                      auto* conn = static_cast<Conn*>(r->handle->data);
                      delete static_cast<Write*>(r->data);
                      if (conn) conn->server->onWritten(*conn, status);
                    });
  if (rc != 0) {
    delete w;
    drop(c);
    return false;
  }
  ++c.writes;
  // What libuv holds because the socket is full: replies the client has
  // not read, beyond what the kernel buffers.
  size_t queued = uv_stream_get_write_queue_size(reinterpret_cast<uv_stream_t*>(c.pipe.get()));
  if (queued > limits_.max_queued) {
    log::warn(kControlLog, "dropped a control client with {} bytes of replies it did not read (limit {})",
              queued, limits_.max_queued);
    drop(c);
    return false;
  }
  return true;
}

void ControlServer::onWritten(Conn& c, int status) {
  --c.writes;
  if (status < 0) {
    drop(c);
    return;
  }
  c.last_active = uv_now(loop_);
  if (c.eof && c.writes == 0) drop(c);
}

void ControlServer::sweepIdle() {
  const uint64_t now = uv_now(loop_);
  const auto timeout = static_cast<uint64_t>(limits_.idle_timeout.count());
  for (auto it = conns_.begin(); it != conns_.end();) {
    Conn& c = **it++;  // advanced first: drop() erases c
    if (now - c.last_active >= timeout) drop(c);
  }
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
