// Fuzz target: the control protocol as the daemon reads it. The input is
// what one client writes to a real ControlServer (master/control.h) on a Unix
// socket in a temporary directory; its first byte chooses how the bytes are
// cut into writes, so requests split at every point reach the server. A
// stand-in handler answers parsed requests, reading their fields the way the
// daemon's dispatch does.
//
// The client writes the input, half-closes and reads until the server closes.
// Every reply must be one line holding a JSON object with an "ok" boolean,
// there must be no more replies than request lines, and the server must
// close the connection (within 10 s, else the run aborts as a hang) and stay
// up for the next client.
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "common/log.h"
#include "master/control.h"

namespace {

using nlohmann::json;

constexpr int kDeadlineSeconds = 10;

json handle(const json& req) {
  // The daemon reads "cmd", then typed fields with defaults; a field of the
  // wrong type throws, which it answers as a bad request.
  try {
    json reply = {{"ok", true}, {"cmd", req.value("cmd", "")}};
    reply["target"] = req.value("target", "");
    reply["parallel"] = req.value("parallel", 1);
    if (req.contains("apps")) reply["apps"] = req["apps"].size();
    return reply;
  } catch (const json::exception& e) {
    return {{"ok", false}, {"error", std::string("bad request: ") + e.what()}};
  }
}

struct Env {
  uv_loop_t* loop = uv_default_loop();
  std::string dir;
  std::string path;
  std::unique_ptr<clusterd::master::ControlServer> server;

  Env() {
    clusterd::log::setMinLevel(clusterd::log::Level::kError);
    char tmpl[] = "/tmp/clusterd-fuzz-control-XXXXXX";
    if (!::mkdtemp(tmpl)) die("mkdtemp");
    dir = tmpl;
    path = dir + "/control.sock";
    server = std::make_unique<clusterd::master::ControlServer>(loop, handle);
    if (!server->listen(path)) die("the control server did not listen");
  }

  [[noreturn]] static void die(const char* why) {
    std::fprintf(stderr, "control fuzz: %s: %s\n", why, std::strerror(errno));
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

void checkReplies(const std::string& out, size_t lines_sent) {
  size_t replies = 0;
  for (size_t at = 0; at < out.size();) {
    size_t nl = out.find('\n', at);
    if (nl == std::string::npos) break;  // cut off by a dropped client: not a reply
    json r = json::parse(out.substr(at, nl - at), nullptr, false);
    if (r.is_discarded() || !r.is_object() || !r.contains("ok") || !r["ok"].is_boolean()) {
      std::fprintf(stderr, "control fuzz: a reply that is not a JSON object with \"ok\"\n");
      std::abort();
    }
    ++replies;
    at = nl + 1;
  }
  if (replies > lines_sent) {
    std::fprintf(stderr, "control fuzz: %zu replies to %zu lines\n", replies, lines_sent);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Env& e = env();
  size_t chunk = 1 + data[0] % 32 * 128;  // 1, 129, …, 3969 bytes per write
  const char* in = reinterpret_cast<const char*>(data) + 1;
  size_t left = size - 1;
  // A last line without its newline may be answered too.
  size_t lines = static_cast<size_t>(std::count(in, in + left, '\n')) + 1;

  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, e.path.c_str(), e.path.size() + 1);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    Env::die("cannot connect to the control socket");
  std::string out;
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
        left = 0;  // the server dropped us (a limit): fine
      }
    } else if (!shut) {
      ::shutdown(fd, SHUT_WR);
      shut = true;
    }
    uv_run(e.loop, left > 0 ? UV_RUN_NOWAIT : UV_RUN_ONCE);
    for (;;) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n > 0) {
        out.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EINTR)) eof = true;
      break;
    }
    if (now() > deadline) {
      std::fprintf(stderr, "control fuzz: the connection was not closed in %d s\n",
                   kDeadlineSeconds);
      std::abort();
    }
  }
  ::close(fd);
  uv_run(e.loop, UV_RUN_NOWAIT);
  checkReplies(out, lines);
  return 0;
}
