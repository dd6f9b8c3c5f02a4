// Test helpers for the worker module: a blocking HTTP/1.1 client on plain
// POSIX sockets (so the tests see exactly the bytes on the wire), and a
// `clusterd worker` process on a loopback port.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/process.h"

namespace clusterd::test {

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

// One client connection.
class HttpConn {
 public:
  explicit HttpConn(int port);
  ~HttpConn();
  HttpConn(const HttpConn&) = delete;
  HttpConn& operator=(const HttpConn&) = delete;

  bool connected() const { return fd_ >= 0; }
  // Sends raw bytes; false when the peer is gone.
  bool send(const std::string& raw);
  // Reads one response (Content-Length framing; HEAD-style when `no_body`).
  std::optional<HttpResponse> read(std::chrono::milliseconds timeout = std::chrono::seconds(5),
                                   bool no_body = false);
  // True when the server closes the connection (EOF or reset) within `timeout`.
  bool closedByPeer(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  int fd() const { return fd_; }

 private:
  bool fill(std::chrono::steady_clock::time_point deadline);
  int fd_ = -1;
  std::string buf_;
};

std::string getRequest(const std::string& path, const std::string& extra_headers = "");
std::string postRequest(const std::string& path, const std::string& body,
                        const std::string& extra_headers = "");
// One request on a fresh connection.
std::optional<HttpResponse> httpGet(int port, const std::string& path,
                                    const std::string& extra_headers = "");
std::optional<HttpResponse> httpPost(int port, const std::string& path, const std::string& body,
                                     const std::string& extra_headers = "");

// A `clusterd worker --listen 127.0.0.1:<free port> <args>` process, waited
// for until /health answers.
class WorkerProcess {
 public:
  explicit WorkerProcess(const std::vector<std::string>& args,
                         const std::map<std::string, std::string>& env = {});
  // Serves an inherited listening socket (fd 3 via LISTEN_FDS) instead.
  WorkerProcess(int listen_fd, const std::vector<std::string>& args,
                const std::map<std::string, std::string>& env = {});
  int port() const { return port_; }
  Child& child() { return *child_; }
  std::string log() const;
  // Sends SIGTERM and waits; returns the exit code (-1 on signal/timeout).
  int terminate(std::chrono::milliseconds timeout = std::chrono::seconds(10));

 private:
  void waitServing();
  TempDir dir_;
  int port_ = 0;
  std::unique_ptr<Child> child_;
};

// A listening TCP socket on 127.0.0.1:0 that children inherit (no CLOEXEC).
int inheritableListener(int& port);

// gunzip for checking compressed bodies.
std::string gunzip(const std::string& data);

}  // namespace clusterd::test
