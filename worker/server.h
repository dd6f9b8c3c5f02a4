// worker::Server: the HTTP/1.1 listener of the built-in worker on the libuv
// loop. It accepts on an inherited listening socket (fd 3 from the master) or
// on a TCP address it binds itself (SO_REUSEPORT, so several standalone
// workers can share a port), enforces the connection limits and timeouts,
// and hands every complete request to a dispatch function.
//
// Limits and their answers: headers over max_header_bytes 431, body over
// max_body_bytes 413, a request not fully received within request_timeout
// 408, a handler silent for request_timeout 504, a malformed request 400;
// each of these closes the connection. An idle keep-alive connection closes
// after keepalive_timeout. Past max_connections a new client gets 503 and is
// closed. Every answer carries Content-Length; nothing is chunked.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/cidr.h"
#include "common/result.h"
#include "common/uv_handle.h"
#include "worker/exchange.h"

namespace clusterd::worker {

class HttpConnection;

struct ServerLimits {
  uint64_t max_header_bytes = 16 << 10;
  uint64_t max_body_bytes = 1 << 20;
  uint64_t request_timeout_ms = 30'000;
  uint64_t keepalive_timeout_ms = 5'000;
  int max_connections = 10'000;
  size_t max_pipeline = 64;        // requests queued per connection before reading pauses
  size_t max_unsent_bytes = 1 << 20;  // responses not yet taken by the kernel before reading pauses
  uint64_t drain_idle_ms = 250;    // while draining, an idle connection closes after this
  uint64_t linger_ms = 1'000;      // read-and-discard time after a closing response
  // Peers whose X-Forwarded-For names the client (Request::client_ip).
  std::vector<Cidr> trusted_proxies;
};

struct ServerStats {
  uint64_t accepted = 0;
  uint64_t rejected = 0;  // over max_connections
  uint64_t requests = 0;  // responses written
  uint64_t open = 0;
};

class Server {
 public:
  // Called for every complete request; must eventually send on a Responder
  // built from the exchange (dropping it answers 500).
  using Dispatch = std::function<void(const std::shared_ptr<Exchange>&)>;
  // Called as each response is serialized, for metrics and access logs.
  using Observer = std::function<void(const Exchange&, size_t wire_bytes)>;

  Server(uv_loop_t* loop, ServerLimits limits, Dispatch dispatch, Observer observer);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Takes an already listening socket (TCP or Unix), e.g. fd 3.
  Result<void> listenFd(int fd);
  // Binds host:port (port 0 = any) with SO_REUSEPORT and listens.
  Result<void> listenTcp(const std::string& host, uint16_t port);
  // Starts accepting on the socket of listenFd()/listenTcp(). Until then new
  // clients wait in the kernel's backlog, or, on a socket shared with other
  // workers, are accepted by those. Nothing once draining.
  Result<void> startAccepting();
  bool accepting() const { return accepting_; }
  // The local port (TCP), for tests that bind port 0.
  int port() const;
  std::string address() const;
  // True when only this machine can connect: a Unix socket, or TCP bound
  // to 127.0.0.0/8 or ::1.
  bool loopbackOnly() const;

  // Stops accepting (closes the listening handle), closes idle connections
  // after drain_idle_ms, answers in-flight requests with `Connection: close`,
  // and calls `done` once no connection is left.
  void drain(std::function<void()> done);
  bool draining() const { return draining_; }
  // Closes every connection at once.
  void closeAll();

  const ServerStats& stats() const { return stats_; }
  const ServerLimits& limits() const { return limits_; }

  // For HttpConnection.
  uv_loop_t* loop() const { return loop_; }
  char* readBuffer() { return read_buffer_.get(); }
  size_t readBufferSize() const { return kReadBufferSize; }
  const std::string& dateLine();
  void dispatch(const std::shared_ptr<Exchange>& ex) { dispatch_(ex); }
  void observe(const Exchange& ex, size_t bytes) {
    ++stats_.requests;
    if (observer_) observer_(ex, bytes);
  }
  void forget(HttpConnection* conn);  // the connection's handle closed

 private:
  static constexpr size_t kReadBufferSize = 64 * 1024;
  void onConnection(int status);
  void sweep();
  void checkDrained();

  uv_loop_t* loop_;
  ServerLimits limits_;
  Dispatch dispatch_;
  Observer observer_;
  std::unique_ptr<char[]> read_buffer_;
  UvHandle<uv_tcp_t> tcp_listener_;
  UvHandle<uv_pipe_t> pipe_listener_;
  uv_stream_t* listener_ = nullptr;
  bool is_pipe_ = false;
  UvHandle<uv_timer_t> sweep_timer_;
  HttpConnection* head_ = nullptr;  // intrusive list of live connections
  ServerStats stats_;
  bool draining_ = false;
  bool accepting_ = false;
  std::function<void()> drained_;
  std::string date_line_;
  int64_t date_second_ = -1;
};

}  // namespace clusterd::worker
