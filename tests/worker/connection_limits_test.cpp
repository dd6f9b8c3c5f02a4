// What one connection may cost a real `clusterd worker`: a client that
// pipelines without reading, one whose writes stall, one that sends only
// blank lines, and one asking for a protocol upgrade.
#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "tests/worker/http_client.h"

namespace worker_connection_limits_test {

using namespace clusterd::test;
using namespace std::chrono_literals;

namespace {

// The worker's resident memory in bytes, from /proc.
uint64_t residentBytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

// The value of the open-connections gauge in /metrics, or -1.
int openConnections(int port) {
  auto r = httpGet(port, "/metrics");
  if (!r) return -1;
  const std::string key = "\nclusterd_http_connections_open ";
  size_t at = r->body.find(key);
  if (at == std::string::npos) return -1;
  return std::stoi(r->body.substr(at + key.size()));
}

struct PipelineResult {
  uint64_t sent = 0;
  bool stalled = false;  // the worker stopped taking bytes
};

// Sends pipelined requests on `fd` and never reads, until the worker stops
// taking them for a second or `cap` bytes went out (bounded in time too).
PipelineResult pipelineWithoutReading(int fd, const std::string& request, uint64_t cap) {
  PipelineResult out;
  std::string batch;
  while (batch.size() < 64 * 1024) batch += request;
  auto deadline = std::chrono::steady_clock::now() + 60s;
  size_t off = 0;
  while (out.sent < cap && std::chrono::steady_clock::now() < deadline) {
    ssize_t n = ::send(fd, batch.data() + off, batch.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      out.sent += static_cast<uint64_t>(n);
      off = (off + static_cast<size_t>(n)) % batch.size();
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) break;
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, 1000) == 0) {
      out.stalled = true;
      break;
    }
  }
  return out;
}

}  // namespace

TEST_CASE(
    "a client that pipelines and never reads is paused at max_unsent, then closed when its writes "
    "stall",
    "[worker][http][limits]") {
  // The request timeout is longer than the second without progress that
  // tells this client the worker stopped reading.
  //
  // Under AddressSanitizer, freed memory waits in a quarantine (256 MB by
  // default) before it is reused, which reads as growth here; the worker gets
  // none, so its RSS measures only what it holds. Elsewhere the option is unused.
  const char* asan = std::getenv("ASAN_OPTIONS");
  std::string asan_options = std::string(asan ? asan : "") + ":quarantine_size_mb=0";
  WorkerProcess w({"--max-unsent", "64K", "--request-timeout", "3s"},
                  {{"ASAN_OPTIONS", asan_options}});
  uint64_t rss_before = residentBytes(w.child().pid());
  HttpConn c(w.port());
  REQUIRE(c.connected());
  int small = 64 * 1024;
  ::setsockopt(c.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  ::setsockopt(c.fd(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  // Each request is answered with a 404 that repeats its path: about 1 KB
  // out for 1 KB in.
  const std::string request = getRequest("/" + std::string(1000, 'p'));
  // The kernel's buffers on both sides hold a few megabytes at most; a
  // worker that keeps reading takes all 64 MB and holds their answers.
  const uint64_t cap = 64ull << 20;
  PipelineResult r = pipelineWithoutReading(c.fd(), request, cap);
  INFO("sent " << r.sent << " bytes");
  CHECK(r.stalled);
  CHECK(r.sent < cap / 4);
  uint64_t rss_after = residentBytes(w.child().pid());
  INFO("worker RSS " << rss_before << " -> " << rss_after);
  CHECK(rss_after < rss_before + (16ull << 20));
  // Nothing leaves the worker for the request timeout: it closes the
  // connection (only the /metrics request itself stays open).
  CHECK(waitFor([&] { return openConnections(w.port()) == 1; }, 10s));
  CHECK(w.child().running());
}

TEST_CASE("a connection that sends only blank lines is closed after the keep-alive timeout",
          "[worker][http][limits]") {
  WorkerProcess w({"--keepalive-timeout", "1s"});
  HttpConn c(w.port());
  REQUIRE(c.connected());
  // "\r\n" every 200 ms starts no request: the idle time keeps counting.
  bool closed = false;
  for (int i = 0; i < 40 && !closed; ++i) {  // 8 s at most
    if (!c.send("\r\n")) {
      closed = true;
      break;
    }
    closed = c.closedByPeer(200ms);
  }
  CHECK(closed);
}

TEST_CASE("a request asking for a protocol upgrade gets one response, then the connection closes",
          "[worker][http]") {
  WorkerProcess w({});
  HttpConn c(w.port());
  REQUIRE(
      c.send("GET /health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"));
  auto r = c.read();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->header("connection") == "close");
  // No second, unsolicited answer follows.
  CHECK_FALSE(c.read(1s).has_value());
  CHECK(c.closedByPeer());
}

}  // namespace worker_connection_limits_test
