// Integration tests, with a real daemon, of where an ecosystem file's
// variables come from: the environment of the `clusterd` command that reads
// the file, for `start`, `reload`, `restart`, `start NAME` and
// `start FILE --only`, both for a program app (the spec is resolved by the
// CLI) and a built-in worker (which reads the file again when it starts);
// and what happens when the file cannot be resolved, read, or asks for
// what a running app keeps. The daemon never has the variables: only the
// CLI's runs get them.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>

#include "tests/master/daemon_fixture.h"

namespace master_caller_env_test {

using namespace clusterd::master;
using namespace clusterd::master::test;
using namespace std::chrono;
using clusterd::test::reservedTcpPort;
using clusterd::test::writeFile;

namespace {

std::string field(const std::string& body, const std::string& key) {
  std::string text = "\n" + body;
  size_t p = text.find("\n" + key + "=");
  if (p == std::string::npos) return "";
  p += key.size() + 2;
  return text.substr(p, text.find('\n', p) - p);
}

// APP_MODE as each of a few requests to the app's port sees it: one value
// when every worker agrees.
std::set<std::string> modes(int port) {
  std::set<std::string> seen;
  for (int i = 0; i < 8; ++i) seen.insert(field(httpGet(port, "/env"), "APP_MODE"));
  return seen;
}

// clang-format off
// `web`: the testapp in cluster mode, its APP_MODE from ${CALLER_MODE}
// (line 10, column 17).
std::string programApp(int port) {
  return "apps:\n"
         "  - name: web\n"
         "    script: " MASTER_TESTAPP "\n"
         "    args: [--ready]\n"
         "    instances: 2\n"
         "    listen: 127.0.0.1:" + std::to_string(port) + "\n"
         "    wait_ready: true\n"
         "    kill_timeout: 3s\n"
         "    env:\n"
         "      APP_MODE: ${CALLER_MODE}\n";
}
// clang-format on

// The first status line the built-in worker answers to the head of a POST
// of 1000 bytes that asks for "100 Continue": 100 when the body would be
// taken, 413 when it is over http.max_body. No body is sent.
int bodyVerdict(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int status = -1;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    std::string head =
        "POST /health HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n";
    ::send(fd, head.data(), head.size(), MSG_NOSIGNAL);
    char buf[256] = {0};
    ssize_t n = ::recv(fd, buf, sizeof buf - 1, 0);
    if (n > 12) std::sscanf(buf, "HTTP/1.1 %d", &status);
  }
  ::close(fd);
  return status;
}

// clang-format off
// `api`: the built-in worker, http.max_body from ${BODY_LIMIT} (the probe
// above sends 1000 bytes). Its queue settings point nowhere: it serves
// HTTP only.
std::string workerApp(int port) {
  return "apps:\n"
         "  - name: api\n"
         "    script: builtin:worker\n"
         "    listen: 127.0.0.1:" + std::to_string(port) + "\n"
         "    wait_ready: true\n"
         "    listen_timeout: 10s\n"
         "    kill_timeout: 3s\n"
         "    http:\n"
         "      max_body: ${BODY_LIMIT}\n"
         "queue:\n"
         "  redis_url: redis://127.0.0.1:1\n";
}
// clang-format on

}  // namespace

TEST_CASE("reload and restart resolve a program app's variables in the caller's environment") {
  DaemonUnderTest d;
  clusterd::test::TempDir dir("cd-callerenv");
  int port = reservedTcpPort();
  writeFile(dir.file("eco.yaml"), programApp(port));
  auto r = d.cli({"start", dir.file("eco.yaml")}, {{"CALLER_MODE", "one"}});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(modes(port) == std::set<std::string>{"one"});

  r = d.cli({"reload", "web"}, {{"CALLER_MODE", "two"}});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(modes(port) == std::set<std::string>{"two"});

  r = d.cli({"restart", "web"}, {{"CALLER_MODE", "three"}});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(modes(port) == std::set<std::string>{"three"});

  // A worker id as the target: its app's spec is read again too.
  std::string id = std::to_string(d.status()[0]["id"].get<int>());
  r = d.cli({"restart", id}, {{"CALLER_MODE", "four"}});
  REQUIRE(r.exit_code == 0);
  CHECK(modes(port).count("four") == 1);

  REQUIRE(d.cli({"stop", "web"}).exit_code == 0);
  r = d.cli({"start", "web"}, {{"CALLER_MODE", "five"}});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(modes(port) == std::set<std::string>{"five"});
}

TEST_CASE(
    "a built-in worker reads its file with the caller's variables on start, reload, restart and "
    "start --only") {
  DaemonUnderTest d;
  clusterd::test::TempDir dir("cd-callerenv");
  int port = reservedTcpPort();
  writeFile(dir.file("eco.yaml"), workerApp(port));
  std::string file = dir.file("eco.yaml");
  auto expect = [&](const std::vector<std::string>& args, const char* limit, int verdict) {
    auto r = d.cli(args, {{"BODY_LIMIT", limit}});
    INFO(args[0] << " with BODY_LIMIT=" << limit << ": " << r.err);
    REQUIRE(r.exit_code == 0);
    REQUIRE(d.waitOnline("api", 1));
    CHECK(bodyVerdict(port) == verdict);
  };
  expect({"start", file}, "100", 413);
  expect({"reload", "api"}, "100K", 100);
  expect({"restart", "api"}, "100", 413);
  REQUIRE(d.cli({"stop", "api"}).exit_code == 0);
  expect({"start", file, "--only", "api"}, "100K", 100);
  REQUIRE(d.cli({"stop", "api"}).exit_code == 0);
  expect({"start", "api"}, "100", 413);
  // describe shows where the app came from, never the variables' values.
  auto described = d.call({{"cmd", "describe"}, {"app", "api"}});
  CHECK_FALSE(described["app"].contains("vars"));
}

TEST_CASE(
    "an unset variable at reload or restart names the file, line and variable and leaves the app "
    "alone") {
  DaemonUnderTest d;
  clusterd::test::TempDir dir("cd-callerenv");
  int port = reservedTcpPort();
  writeFile(dir.file("eco.yaml"), programApp(port));
  REQUIRE(d.cli({"start", dir.file("eco.yaml")}, {{"CALLER_MODE", "one"}}).exit_code == 0);
  auto pids = d.pids("web");
  for (const char* verb : {"reload", "restart"}) {
    auto r = d.cli({verb, "web"});
    INFO(verb << ": " << r.err);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find(dir.file("eco.yaml") + ":10:17: apps[0].env.APP_MODE: environment variable "
                                            "CALLER_MODE is not set") != std::string::npos);
    CHECK(r.err.find("the running apps are unchanged") != std::string::npos);
    CHECK(d.pids("web") == pids);
    CHECK(modes(port) == std::set<std::string>{"one"});
  }
  for (auto& w : d.status()) {
    CHECK(w["restarts"] == 0);
    CHECK(w["state"] == "online");
  }
}

TEST_CASE("a reload whose file changes what a running app keeps is refused, naming the field") {
  DaemonUnderTest d;
  clusterd::test::TempDir dir("cd-callerenv");
  int port = reservedTcpPort();
  writeFile(dir.file("eco.yaml"), programApp(port));
  REQUIRE(d.cli({"start", dir.file("eco.yaml")}, {{"CALLER_MODE", "one"}}).exit_code == 0);
  auto pids = d.pids("web");
  writeFile(dir.file("eco.yaml"), programApp(reservedTcpPort()));
  auto r = d.cli({"reload", "web"}, {{"CALLER_MODE", "two"}});
  INFO(r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("`listen`") != std::string::npos);
  CHECK(r.err.find("clusterd delete web") != std::string::npos);
  CHECK(d.pids("web") == pids);
  CHECK(modes(port) == std::set<std::string>{"one"});
}

TEST_CASE("a reload of an app whose file is gone goes ahead with its settings and says so") {
  DaemonUnderTest d;
  clusterd::test::TempDir dir("cd-callerenv");
  int port = reservedTcpPort();
  writeFile(dir.file("eco.yaml"), programApp(port));
  REQUIRE(d.cli({"start", dir.file("eco.yaml")}, {{"CALLER_MODE", "one"}}).exit_code == 0);
  auto pids = d.pids("web");
  REQUIRE(::unlink(dir.file("eco.yaml").c_str()) == 0);
  auto r = d.cli({"reload", "web"}, {{"CALLER_MODE", "two"}});
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.err.find(dir.file("eco.yaml") + ": cannot read the ecosystem file") != std::string::npos);
  CHECK(r.err.find("web keeps the settings it runs with") != std::string::npos);
  CHECK(d.pids("web") != pids);
  CHECK(modes(port) == std::set<std::string>{"one"});
}

}  // namespace master_caller_env_test
