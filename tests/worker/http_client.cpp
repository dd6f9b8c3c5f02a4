// Test helpers for the worker module (see http_client.h).
#include "tests/worker/http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <stdexcept>
#include <thread>

namespace clusterd::test {

using namespace std::chrono;

HttpConn::HttpConn(int port) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd_);
    fd_ = -1;
    return;
  }
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

HttpConn::~HttpConn() {
  if (fd_ >= 0) ::close(fd_);
}

bool HttpConn::send(const std::string& raw) {
  size_t off = 0;
  while (off < raw.size()) {
    ssize_t n = ::send(fd_, raw.data() + off, raw.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

bool HttpConn::fill(steady_clock::time_point deadline) {
  auto left = duration_cast<milliseconds>(deadline - steady_clock::now()).count();
  if (left <= 0) return false;
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(left)) <= 0) return false;
  char tmp[16384];
  ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
  if (n <= 0) return false;
  buf_.append(tmp, static_cast<size_t>(n));
  return true;
}

std::optional<HttpResponse> HttpConn::read(milliseconds timeout, bool no_body) {
  auto deadline = steady_clock::now() + timeout;
  size_t end;
  while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
    if (!fill(deadline)) return std::nullopt;
  }
  std::string head = buf_.substr(0, end);
  buf_.erase(0, end + 4);
  HttpResponse r;
  size_t line_end = head.find("\r\n");
  std::string status_line = head.substr(0, line_end);
  if (status_line.size() < 12) return std::nullopt;
  r.status = std::stoi(status_line.substr(9, 3));
  size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
  while (pos < head.size()) {
    size_t e = head.find("\r\n", pos);
    if (e == std::string::npos) e = head.size();
    std::string line = head.substr(pos, e - pos);
    size_t colon = line.find(':');
    if (colon != std::string::npos) {
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      std::string value = line.substr(colon + 1);
      while (!value.empty() && value[0] == ' ') value.erase(0, 1);
      r.headers[name] = value;
    }
    pos = e + 2;
  }
  if (r.status == 100) return read(timeout, no_body);  // interim answer
  size_t len = no_body ? 0 : std::stoul(r.header("content-length").empty() ? "0" : r.header("content-length"));
  while (buf_.size() < len) {
    if (!fill(deadline)) return std::nullopt;
  }
  r.body = buf_.substr(0, len);
  buf_.erase(0, len);
  return r;
}

bool HttpConn::closedByPeer(milliseconds timeout) {
  auto deadline = steady_clock::now() + timeout;
  while (steady_clock::now() < deadline) {
    auto left = duration_cast<milliseconds>(deadline - steady_clock::now()).count();
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::max<long>(left, 1))) <= 0) return false;
    char tmp[4096];
    ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) return true;
    buf_.append(tmp, static_cast<size_t>(n));
  }
  return false;
}

std::string getRequest(const std::string& path, const std::string& extra_headers) {
  return "GET " + path + " HTTP/1.1\r\nHost: test\r\n" + extra_headers + "\r\n";
}

std::string postRequest(const std::string& path, const std::string& body,
                        const std::string& extra_headers) {
  return "POST " + path + " HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n" +
         "Content-Length: " + std::to_string(body.size()) + "\r\n" + extra_headers + "\r\n" + body;
}

std::optional<HttpResponse> httpGet(int port, const std::string& path,
                                    const std::string& extra_headers) {
  HttpConn c(port);
  if (!c.connected() || !c.send(getRequest(path, extra_headers))) return std::nullopt;
  return c.read();
}

std::optional<HttpResponse> httpPost(int port, const std::string& path, const std::string& body,
                                     const std::string& extra_headers) {
  HttpConn c(port);
  if (!c.connected() || !c.send(postRequest(path, body, extra_headers))) return std::nullopt;
  return c.read();
}

WorkerProcess::WorkerProcess(const std::vector<std::string>& args,
                             const std::map<std::string, std::string>& env)
    : dir_("clusterd-worker") {
  port_ = reservedTcpPort();
  std::vector<std::string> argv = {CLUSTERD_BIN, "worker", "--listen",
                                   "127.0.0.1:" + std::to_string(port_)};
  argv.insert(argv.end(), args.begin(), args.end());
  child_ = std::make_unique<Child>(argv, env, dir_.file("out.log"));
  waitServing();
}

WorkerProcess::WorkerProcess(int listen_fd, const std::vector<std::string>& args,
                             const std::map<std::string, std::string>& env)
    : dir_("clusterd-worker") {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  getsockname(listen_fd, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  // The shell moves the inherited socket to fd 3, as the master does.
  std::string cmd = "exec \"$0\" worker \"$@\" 3<&" + std::to_string(listen_fd);
  std::vector<std::string> argv = {"/bin/sh", "-c", cmd, CLUSTERD_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  auto e = env;
  e.insert_or_assign("LISTEN_FDS", std::string(1, '1'));  // not = "1": GCC 12 -O3 -Wrestrict
  child_ = std::make_unique<Child>(argv, e, dir_.file("out.log"));
  waitServing();
}

void WorkerProcess::waitServing() {
  bool up = waitFor([&] {
    if (!child_->running()) return true;
    auto r = httpGet(port_, "/metrics");
    return r.has_value();
  });
  if (!up || !child_->running()) throw std::runtime_error("worker did not start:\n" + log());
}

std::string WorkerProcess::log() const { return readFile(dir_.file("out.log")); }

int WorkerProcess::terminate(milliseconds timeout) {
  child_->signal(SIGTERM);
  int st = child_->wait(timeout);
  if (st < 0 || !WIFEXITED(st)) return -1;
  return WEXITSTATUS(st);
}

int inheritableListener(int& port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);  // no CLOEXEC: children inherit it
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 1024) != 0) {
    throw std::runtime_error("cannot create a listening socket");
  }
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  return fd;
}

std::string gunzip(const std::string& data) {
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 16) != Z_OK) throw std::runtime_error("inflateInit2");
  std::string out;
  char buf[16384];
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  int rc;
  do {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&zs);
      throw std::runtime_error("not gzip data");
    }
    out.append(buf, sizeof buf - zs.avail_out);
  } while (rc != Z_STREAM_END);
  inflateEnd(&zs);
  return out;
}

}  // namespace clusterd::test
