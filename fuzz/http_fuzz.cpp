// Fuzz target: the worker's HTTP request path. The input is what one client
// sends on one connection; its first byte chooses how the bytes are cut into
// writes, so requests split at every point reach the parser. A real
// worker::Worker (the built-in worker's server, router, limits and routes)
// serves a Unix socket in the abstract namespace: no network, no port. It is
// configured with a Redis address nothing listens on, so the job API's routes
// are installed and parse their JSON bodies into msgpack before answering
// 503, and with two routes of its own that take path parameters, a query and
// a JSON body converted to msgpack and back, as the shop's routes do.
//
// The client writes the input, half-closes, reads every answer and waits for
// the worker to close; the worker must answer or close every connection
// (within 10 s, else the run aborts as a hang) and stay up for the next.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "common/log.h"
#include "common/nesting.h"
#include "queue/job.h"
#include "worker/worker.h"

namespace {

using namespace clusterd::worker;
using nlohmann::json;

constexpr int kDeadlineSeconds = 10;

struct Env {
  uv_loop_t* loop = uv_default_loop();
  std::string name = "clusterd-fuzz-http-" + std::to_string(::getpid());
  sockaddr_un addr{};
  socklen_t addr_len = 0;
  std::unique_ptr<Worker> worker;

  Env() {
    clusterd::log::setMinLevel(clusterd::log::Level::kError);
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path + 1, name.data(), name.size());
    addr_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), addr_len) != 0 ||
        ::listen(fd, 16) != 0)
      die("cannot listen on the fuzz socket");
    WorkerOptions o;
    o.name = "fuzz";
    o.listen_fd = fd;
    o.redis_url = "redis://127.0.0.1:1";  // refused at once: the job API answers 503
    // The job API is off unless listed; the corpus uses these queues.
    o.spec.job_api.enabled = true;
    o.spec.job_api.queues = {{"orders", {"*"}}, {"mail", {"*"}}, {"q", {"*"}}};
    o.spec.max_body_bytes = 64 << 10;
    o.spec.max_header_bytes = 8 << 10;
    o.ready_wait = std::chrono::milliseconds{0};
    worker = std::make_unique<Worker>(loop, o);
    addRoutes(worker->router());
    if (!worker->start()) die("the worker did not start");
    for (int i = 0; i < 1000 && !worker->server()->accepting(); ++i) uv_run(loop, UV_RUN_ONCE);
    if (!worker->server()->accepting()) die("the worker does not accept connections");
  }

  static void addRoutes(Router& router) {
    router.get("/fuzz/items/{sku}", [](const Request& req, Responder res) {
      res.json(200, {{"sku", req.param("sku")}, {"q", req.queryParam("q").value_or("")}});
    });
    router.post("/fuzz/items/{sku}/orders", [](const Request& req, Responder res) {
      auto body = clusterd::parseJsonLimited(req.body);
      if (!body) return res.error(400, "the body is " + body.error().message, "body");
      auto back = clusterd::queue::payloadToJson(clusterd::queue::payloadFromJson(*body));
      if (!back) return res.error(500, back.error().message);
      res.json(201, {{"sku", req.param("sku")}, {"order", *back}});
    });
  }

  [[noreturn]] static void die(const char* why) {
    std::fprintf(stderr, "http fuzz: %s: %s\n", why, std::strerror(errno));
    std::abort();
  }
};

Env& env() {
  static Env* e = new Env();  // lives for the process: the fuzzer never returns
  return *e;
}

double now() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Env& e = env();
  size_t chunk = 1 + data[0] % 32 * 128;  // 1, 129, …, 3969 bytes per write
  const char* in = reinterpret_cast<const char*>(data) + 1;
  size_t left = size - 1;

  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&e.addr), e.addr_len) != 0)
    Env::die("cannot connect to the worker");
  bool shut = false, eof = false;
  char buf[16 << 10];
  double deadline = now() + kDeadlineSeconds;
  while (!eof) {
    if (left > 0) {
      ssize_t n = ::send(fd, in, std::min(left, chunk), MSG_NOSIGNAL);
      if (n > 0) {
        in += n;
        left -= static_cast<size_t>(n);
      } else if (errno == EPIPE || errno == ECONNRESET) {
        left = 0;  // the worker closed early (a limit, a bad request): fine
      }
    } else if (!shut) {
      ::shutdown(fd, SHUT_WR);
      shut = true;
    }
    uv_run(e.loop, left > 0 ? UV_RUN_NOWAIT : UV_RUN_ONCE);
    for (;;) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n > 0) continue;
      if (n == 0 || (errno != EAGAIN && errno != EINTR)) eof = true;
      break;
    }
    if (now() > deadline) {
      std::fprintf(stderr, "http fuzz: the connection was neither answered nor closed in %d s\n",
                   kDeadlineSeconds);
      std::abort();
    }
  }
  ::close(fd);
  while (e.worker->server()->stats().open > 0) {
    uv_run(e.loop, UV_RUN_ONCE);
    if (now() > deadline) {
      std::fprintf(stderr, "http fuzz: the worker kept a closed client's connection\n");
      std::abort();
    }
  }
  return 0;
}
