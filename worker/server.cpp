// worker::Server: listening, accepting, the timeout sweep and drain (see
// server.h).
#include "worker/server.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include <fmt/format.h>

#include "worker/connection.h"

namespace clusterd::worker {

Server::Server(uv_loop_t* loop, ServerLimits limits, Dispatch dispatch, Observer observer)
    : loop_(loop),
      limits_(limits),
      dispatch_(std::move(dispatch)),
      observer_(std::move(observer)),
      read_buffer_(new char[kReadBufferSize]) {
  uv_timer_init(loop_, sweep_timer_.get());
  sweep_timer_->data = this;
  uint64_t shortest = std::min({limits_.request_timeout_ms, limits_.keepalive_timeout_ms,
                                limits_.drain_idle_ms, limits_.linger_ms});
  uint64_t period = std::clamp<uint64_t>(shortest / 4, 10, 1000);
  uv_timer_start(
      sweep_timer_.get(), [](uv_timer_t* t) { static_cast<Server*>(t->data)->sweep(); }, period,
      period);
  uv_unref(sweep_timer_.handle());
}

Server::~Server() {
  for (HttpConnection* c = head_; c;) {
    HttpConnection* next = c->next;
    c->orphan();
    c = next;
  }
  head_ = nullptr;
}

Result<void> Server::listenFd(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return Error{fmt::format("fd {} is not a socket (getsockname: {}); check LISTEN_FDS", fd,
                             std::strerror(errno))};
  }
  // An inherited listening socket (LISTEN_FDS) is ours now: the programs
  // this worker starts (command handlers) must not inherit it.
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  int rc;
  if (ss.ss_family == AF_UNIX) {
    is_pipe_ = true;
    uv_pipe_init(loop_, pipe_listener_.get(), 0);
    rc = uv_pipe_open(pipe_listener_.get(), fd);
    listener_ = reinterpret_cast<uv_stream_t*>(pipe_listener_.get());
  } else {
    uv_tcp_init(loop_, tcp_listener_.get());
    rc = uv_tcp_open(tcp_listener_.get(), fd);
    listener_ = reinterpret_cast<uv_stream_t*>(tcp_listener_.get());
  }
  if (rc != 0) return Error{fmt::format("cannot use fd {} as a listener: {}", fd, uv_strerror(rc))};
  listener_->data = this;
  return success();
}

Result<void> Server::listenTcp(const std::string& host, uint16_t port) {
  sockaddr_storage ss{};
  bool v6 = host.find(':') != std::string::npos;
  int rc = v6 ? uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(&ss))
              : uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(&ss));
  if (rc != 0) {
    return Error{fmt::format("--listen {}:{}: '{}' is not an IP address ({})", host, port, host,
                             uv_strerror(rc))};
  }
  int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Error{fmt::format("socket(): {}", std::strerror(errno))};
  UniqueFd owned(fd);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  socklen_t alen = v6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), alen) != 0) {
    return Error{fmt::format("cannot bind {}:{}: {} (is another program using the port?)", host,
                             port, std::strerror(errno))};
  }
  if (::listen(fd, 1024) != 0) {
    return Error{fmt::format("listen({}:{}): {}", host, port, std::strerror(errno))};
  }
  uv_tcp_init(loop_, tcp_listener_.get());
  rc = uv_tcp_open(tcp_listener_.get(), fd);
  if (rc != 0) return Error{fmt::format("uv_tcp_open: {}", uv_strerror(rc))};
  owned.release();
  listener_ = reinterpret_cast<uv_stream_t*>(tcp_listener_.get());
  listener_->data = this;
  return success();
}

bool Server::loopbackOnly() const {
  if (!listener_) return false;
  if (is_pipe_) return true;
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getsockname(tcp_listener_.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0)
    return false;
  char buf[64] = {0};
  if (ss.ss_family == AF_INET6) {
    uv_ip6_name(reinterpret_cast<sockaddr_in6*>(&ss), buf, sizeof buf);
  } else {
    uv_ip4_name(reinterpret_cast<sockaddr_in*>(&ss), buf, sizeof buf);
  }
  static const Cidr v4 = *parseCidr("127.0.0.0/8"), v6 = *parseCidr("::1");
  auto ip = parseIp(buf);
  return ip && (v4.contains(*ip) || v6.contains(*ip));
}

Result<void> Server::startAccepting() {
  if (accepting_ || draining_ || !listener_) return success();
  int rc = uv_listen(listener_, 1024, [](uv_stream_t* s, int status) {
    static_cast<Server*>(s->data)->onConnection(status);
  });
  if (rc != 0) return Error{fmt::format("listen on {}: {}", address(), uv_strerror(rc))};
  accepting_ = true;
  return success();
}

int Server::port() const {
  if (is_pipe_ || !listener_) return 0;
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getsockname(tcp_listener_.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return 0;
  }
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

std::string Server::address() const {
  if (!listener_) return "";
  if (is_pipe_) {
    char buf[256];
    size_t len = sizeof buf;
    if (uv_pipe_getsockname(pipe_listener_.get(), buf, &len) == 0) return std::string(buf, len);
    return "unix";
  }
  sockaddr_storage ss{};
  int len = sizeof ss;
  uv_tcp_getsockname(tcp_listener_.get(), reinterpret_cast<sockaddr*>(&ss), &len);
  char buf[64] = {0};
  if (ss.ss_family == AF_INET6) {
    uv_ip6_name(reinterpret_cast<sockaddr_in6*>(&ss), buf, sizeof buf);
    return fmt::format("[{}]:{}", buf, port());
  }
  uv_ip4_name(reinterpret_cast<sockaddr_in*>(&ss), buf, sizeof buf);
  return fmt::format("{}:{}", buf, port());
}

void Server::onConnection(int status) {
  if (status != 0 || draining_) return;
  auto* conn = new HttpConnection(*this);
  int rc = conn->accept(listener_, is_pipe_);
  // Link it first: close() unlinks through forget().
  conn->next = head_;
  if (head_) head_->prev = conn;
  head_ = conn;
  ++stats_.open;
  if (rc != 0) {
    conn->close();
    return;
  }
  ++stats_.accepted;
  if (stats_.open > static_cast<uint64_t>(limits_.max_connections)) {
    ++stats_.rejected;
    conn->rejectBusy();
    conn->start();
    return;
  }
  conn->start();
}

void Server::forget(HttpConnection* conn) {
  if (conn->prev) conn->prev->next = conn->next;
  if (conn->next) conn->next->prev = conn->prev;
  if (head_ == conn) head_ = conn->next;
  conn->prev = conn->next = nullptr;
  --stats_.open;
  checkDrained();
}

const std::string& Server::dateLine() {
  int64_t sec = static_cast<int64_t>(uv_now(loop_) / 1000);
  if (sec != date_second_) {
    date_second_ = sec;
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[64];
    size_t n = std::strftime(buf, sizeof buf, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    date_line_.assign(buf, n);
  }
  return date_line_;
}

void Server::sweep() {
  uint64_t now = uv_now(loop_);
  for (HttpConnection* c = head_; c;) {
    HttpConnection* next = c->next;  // sweep may close c (freed later, on the loop)
    c->sweep(now);
    c = next;
  }
}

void Server::drain(std::function<void()> done) {
  drained_ = std::move(done);
  if (!draining_) {
    draining_ = true;
    // Closing the handle stops accepting; in cluster mode the master keeps
    // the socket open, so clients queued on it go to the other workers.
    tcp_listener_.reset();
    pipe_listener_.reset();
    listener_ = nullptr;
    uv_ref(sweep_timer_.handle());
    for (HttpConnection* c = head_; c; c = c->next) c->beginDrain();
  }
  checkDrained();
}

void Server::checkDrained() {
  if (!draining_ || head_ != nullptr || !drained_) return;
  auto done = std::move(drained_);
  drained_ = nullptr;
  uv_unref(sweep_timer_.handle());
  done();
}

void Server::closeAll() {
  for (HttpConnection* c = head_; c;) {
    HttpConnection* next = c->next;
    c->close();
    c = next;
  }
}

}  // namespace clusterd::worker
