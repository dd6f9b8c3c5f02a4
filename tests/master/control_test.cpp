// The control socket under clients that misbehave: bursts and half-closes,
// replies never read, idle or too many connections, deep nesting. Each
// limit is set small through the daemon's environment (master/limits.h).
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "master/control.h"
#include "master/daemon.h"
#include "tests/master/daemon_fixture.h"

namespace master_control_test {

using namespace clusterd::master;
using namespace clusterd::master::test;
using namespace std::chrono;
using clusterd::UniqueFd;
using clusterd::test::waitFor;

namespace {

UniqueFd connectTo(const std::string& home) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::string path = controlSocketPath(home);
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  timeval tv{20, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return fd;
}

// Sends all of `data`; false once the peer is gone.
bool sendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Reads until end-of-file, an error or the receive timeout; `eof` says
// whether the daemon closed the connection.
std::string readToEnd(int fd, bool* eof = nullptr) {
  std::string in;
  char buf[65536];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      in.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (eof) *eof = n == 0 || errno == ECONNRESET;
    return in;
  }
}

json readLine(int fd) {
  std::string line;
  char ch;
  while (::recv(fd, &ch, 1, 0) == 1 && ch != '\n') line += ch;
  return json::parse(line, nullptr, false);
}

size_t lines(const std::string& s) { return static_cast<size_t>(std::count(s.begin(), s.end(), '\n')); }

std::string repeat(const std::string& s, size_t n) {
  std::string out;
  out.reserve(s.size() * n);
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

}  // namespace

TEST_CASE("every request sent before a half-close is answered") {
  DaemonUnderTest d;
  UniqueFd fd = connectTo(d.home());
  REQUIRE(sendAll(fd.get(), repeat("{\"cmd\":\"ping\"}\n", 5000)));
  REQUIRE(::shutdown(fd.get(), SHUT_WR) == 0);
  bool eof = false;
  std::string in = readToEnd(fd.get(), &eof);
  CHECK(eof);
  CHECK(lines(in) == 5000);
  CHECK(in.find("\"ok\":false") == std::string::npos);
}

TEST_CASE("a last request without its newline before a half-close is answered") {
  DaemonUnderTest d;
  UniqueFd fd = connectTo(d.home());
  REQUIRE(sendAll(fd.get(), "{\"cmd\":\"ping\"}\n{\"cmd\":\"ping\"}"));
  REQUIRE(::shutdown(fd.get(), SHUT_WR) == 0);
  CHECK(lines(readToEnd(fd.get())) == 2);
}

TEST_CASE("a client that leaves more than max_queued bytes of replies unread is dropped") {
  ::setenv("CLUSTERD_CONTROL_MAX_QUEUED", "64K", 1);
  DaemonUnderTest d;
  UniqueFd fd = connectTo(d.home());
  // 20,000 requests, no reply read while sending: the daemon must not hold
  // them all (about 600 KB here, 36 MB with a few workers per reply).
  const std::string burst = repeat("{\"cmd\":\"status\"}\n", 20'000);
  sendAll(fd.get(), burst);  // fails part-way once the daemon has dropped us
  bool eof = false;
  std::string in = readToEnd(fd.get(), &eof);
  CHECK(eof);
  CHECK(lines(in) < 20'000);
  CHECK(waitFor([&] { return d.output().find("dropped a control client") != std::string::npos; },
                seconds(10)));
  CHECK(d.call({{"cmd", "ping"}})["ok"] == true);
}

TEST_CASE("an idle control connection is closed after idle_timeout and a busy one is not") {
  ::setenv("CLUSTERD_CONTROL_IDLE_TIMEOUT", "2s", 1);
  DaemonUnderTest d;
  UniqueFd idle = connectTo(d.home());
  UniqueFd busy = connectTo(d.home());
  auto start = steady_clock::now();
  for (int i = 0; i < 30; ++i) {  // 3 s of a request every 100 ms
    REQUIRE(sendAll(busy.get(), "{\"cmd\":\"ping\"}\n"));
    CHECK(readLine(busy.get())["ok"] == true);
    std::this_thread::sleep_for(milliseconds(100));
  }
  bool eof = false;
  CHECK(readToEnd(idle.get(), &eof).empty());
  CHECK(eof);
  // Closed by the daemon, not by the 20 s receive timeout of this test.
  CHECK(steady_clock::now() - start < seconds(19));
}

TEST_CASE("past max_clients a new control connection gets an error naming the limit") {
  ::setenv("CLUSTERD_CONTROL_MAX_CLIENTS", "2", 1);
  DaemonUnderTest d;
  // A connection the daemon serves; the fixture's own probes may still
  // count for a moment after they closed.
  auto served = [&] {
    UniqueFd fd;
    REQUIRE(waitFor([&] {
      fd = connectTo(d.home());
      return sendAll(fd.get(), "{\"cmd\":\"ping\"}\n") && readLine(fd.get())["ok"] == true;
    }, seconds(10)));
    return fd;
  };
  UniqueFd a = served();
  UniqueFd b = served();
  UniqueFd c = connectTo(d.home());
  bool eof = false;
  std::string refused = readToEnd(c.get(), &eof);
  CHECK(eof);
  CHECK_THAT(refused, Catch::Contains("too many control connections (limit 2)"));
  a.reset();
  CHECK(waitFor([&] {
    UniqueFd again = connectTo(d.home());
    return sendAll(again.get(), "{\"cmd\":\"ping\"}\n") && readLine(again.get())["ok"] == true;
  }, seconds(10)));
}

TEST_CASE("a request nested deeper than max_depth gets an error naming the limit") {
  DaemonUnderTest d;
  UniqueFd fd = connectTo(d.home());
  // 400,000 levels: copying such a value recursed past the daemon's stack.
  const size_t levels = 400'000;
  std::string deep = "{\"cmd\":\"start\",\"apps\":" + std::string(levels, '[') +
                     std::string(levels, ']') + "}\n";
  REQUIRE(sendAll(fd.get(), deep));
  json reply = readLine(fd.get());
  CHECK(reply["ok"] == false);
  CHECK_THAT(reply.value("error", ""), Catch::Contains("nested deeper than 32 levels"));
  REQUIRE(sendAll(fd.get(), "{\"cmd\":\"ping\",\"x\":[[[\"]]]]\"]]]}\n"));
  CHECK(readLine(fd.get())["ok"] == true);
}

TEST_CASE("jsonDepth counts arrays and objects outside strings") {
  CHECK(jsonDepth("{}", 32) == 1);
  CHECK(jsonDepth("{\"a\":[1,{\"b\":[]}]}", 32) == 4);
  CHECK(jsonDepth("{\"a\":\"[[[[\\\"[[\"}", 32) == 1);
  CHECK(jsonDepth(std::string(100, '['), 10) == 11);
}

}  // namespace master_control_test
