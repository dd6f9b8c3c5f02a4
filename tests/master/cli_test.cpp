// Integration tests of the master's CLI verbs as an operator types them:
// `start` with an ecosystem file (--env, --only, exit code on failure),
// `start` of a stopped app by name, `scale N`, `logs --follow`, merged and
// configured log files, a cluster app on a Unix socket, and the split
// between the lean `clusterd` front and clusterd-full (same help, same
// usage errors, control verbs run without clusterd-full).
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "tests/master/daemon_fixture.h"

namespace master_cli_test {

using namespace clusterd::master;
using namespace clusterd::master::test;
using namespace std::chrono;
using clusterd::test::reservedTcpPort;
using clusterd::test::readFile;
using clusterd::test::waitFor;
using clusterd::test::writeFile;

namespace {

std::string field(const std::string& body, const std::string& key) {
  size_t p = body.find("\n" + key + "=");
  if (p == std::string::npos) return "";
  p += key.size() + 2;
  return body.substr(p, body.find('\n', p) - p);
}

// Two apps: `web` (cluster, 2 instances, APP_MODE from env / env_production)
// and `other` (fork).
std::string twoApps(int port) {
  return "apps:\n"
         "  - name: web\n"
         "    script: " MASTER_TESTAPP "\n"
         "    args: [--ready]\n"
         "    instances: 2\n"
         "    listen: 127.0.0.1:" + std::to_string(port) + "\n"
         "    wait_ready: true\n"
         "    env:\n"
         "      APP_MODE: dev\n"
         "    env_production:\n"
         "      APP_MODE: prod\n"
         "  - name: other\n"
         "    script: " MASTER_TESTAPP "\n";
}

}  // namespace

TEST_CASE("start FILE --env --only starts the chosen apps, waits until online and prints the table") {
  DaemonUnderTest d;
  clusterd::test::TempDir dir("cd-eco");
  int port = reservedTcpPort();
  writeFile(dir.file("eco.yaml"), twoApps(port));
  auto r = d.cli({"start", dir.file("eco.yaml"), "--env", "production", "--only", "web"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("online") != std::string::npos);
  auto rows = d.status();
  REQUIRE(rows.size() == 2);
  for (auto& w : rows) {
    CHECK(w["app"] == "web");
    CHECK(w["state"] == "online");  // start returned only once they were
  }
  CHECK(field("\n" + httpGet(port, "/env"), "APP_MODE") == "prod");
  r = d.cli({"start", dir.file("eco.yaml"), "--only", "nope"});
  CHECK(r.exit_code == 100);
  CHECK(r.err.find("nope") != std::string::npos);
}

TEST_CASE("start NAME starts a stopped app again and leaves online ones alone") {
  DaemonUnderTest d;
  REQUIRE(d.start(testApp("a", 1, 0, {}))["ok"] == true);
  REQUIRE(d.start(testApp("b", 1, 0, {}))["ok"] == true);
  REQUIRE(d.waitOnline("a", 1));
  REQUIRE(d.waitOnline("b", 1));
  pid_t b = d.pids("b").at(0);
  REQUIRE(d.cli({"stop", "a"}).exit_code == 0);
  auto r = d.cli({"start", "a"});
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(d.waitOnline("a", 1));
  r = d.cli({"start", "all"});
  CHECK(r.exit_code == 0);
  CHECK(d.pids("b").at(0) == b);
  r = d.cli({"start", "nope"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("no such ecosystem file") != std::string::npos);
}

TEST_CASE("start exits non-zero naming the app when its workers crash at once") {
  DaemonUnderTest d;
  clusterd::test::TempDir dir("cd-eco");
  writeFile(dir.file("eco.yaml"), "apps:\n"
                                  "  - name: crashy\n"
                                  "    script: " MASTER_TESTAPP "\n"
                                  "    args: [--crash-after, '0']\n"
                                  "    wait_ready: true\n"
                                  "    max_restarts: 2\n");
  // wait_ready: a worker that never says READY=1 is never online, however
  // slowly it crashes; without it, a loaded machine could pass the 100 ms
  // online grace before the crash and `start` would rightly report online.
  auto r = d.cli({"start", dir.file("eco.yaml")});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("crashy") != std::string::npos);
  CHECK(r.err.find("errored") != std::string::npos);
  CHECK(d.call({{"cmd", "ping"}})["ok"] == true);
}

TEST_CASE("scale N sets the number of workers") {
  DaemonUnderTest d;
  REQUIRE(d.start(testApp("web", 1, reservedTcpPort(), {"--ready"}))["ok"] == true);
  REQUIRE(d.waitOnline("web", 1));
  CHECK(d.cli({"scale", "web", "3"}).exit_code == 0);
  CHECK(d.waitOnline("web", 3));
  CHECK(d.cli({"scale", "web", "1"}).exit_code == 0);
  CHECK(waitFor([&] { return d.status().size() == 1; }));
  auto r = d.cli({"scale", "web", "0"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("at least 1") != std::string::npos);
}

TEST_CASE("logs --follow prints new lines as workers write them") {
  DaemonUnderTest d;
  REQUIRE(d.start(testApp("talk", 1, 0, {"--say", "hello-follow"}))["ok"] == true);
  std::string out = d.home() + "/logs/talk-out.log";
  REQUIRE(waitFor([&] { return readFile(out).find("hello-follow") != std::string::npos; }));
  std::string followed = d.home() + "/followed.txt";
  clusterd::test::Child follower({CLUSTERD_BIN, "--home", d.home(), "logs", "talk", "--lines", "0", "--follow"},
                                 {}, followed);
  REQUIRE(waitFor([&] { return readFile(followed).find("talk-out.log") != std::string::npos; }));
  CHECK(readFile(followed).find("hello-follow") == std::string::npos);  // --lines 0: no old lines
  REQUIRE(d.cli({"restart", "talk"}).exit_code == 0);  // the new process says hello again
  CHECK(waitFor([&] { return readFile(followed).find("talk out | hello-follow") != std::string::npos; }));
  CHECK(waitFor([&] { return readFile(followed).find("talk err | err: hello-follow") != std::string::npos; }));
}

TEST_CASE("merge_logs and out_file put both streams in the configured file") {
  DaemonUnderTest d;
  clusterd::test::TempDir dir("cd-logs");
  auto app = testApp("talk", 1, 0, {"--say", "merged-line"});
  app.base_dir = dir.path();
  app.spec.out_file = "talk.log";  // relative to cwd, which defaults to the file's directory
  app.spec.merge_logs = true;
  REQUIRE(d.start(app)["ok"] == true);
  std::string log = dir.file("talk.log");
  CHECK(waitFor([&] {
    std::string s = readFile(log);
    return s.find("merged-line\n") != std::string::npos && s.find("err: merged-line\n") != std::string::npos;
  }));
  CHECK(readFile(d.home() + "/logs/talk-error.log").empty());
  auto r = d.cli({"logs", "talk"});
  CHECK(r.out.find(log) != std::string::npos);
}

TEST_CASE("a cluster app on a Unix socket shares one socket between its workers") {
  DaemonUnderTest d;
  clusterd::test::TempDir dir("cd-unix");
  auto app = testApp("sock", 2, 0, {"--ready"});
  app.spec.exec_mode = clusterd::config::ExecMode::kCluster;
  clusterd::config::ListenAddress l;
  l.kind = clusterd::config::ListenAddress::Kind::kUnix;
  l.path = dir.file("web.sock");
  l.text = l.path;
  app.spec.listen = l;
  REQUIRE(d.start(app)["ok"] == true);
  REQUIRE(d.waitOnline("sock", 2));
  std::set<std::string> seen;
  for (int i = 0; i < 20 && seen.size() < 2; ++i) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, l.path.c_str(), l.path.size() + 1);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    std::string req = "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
    std::string in;
    char buf[1024];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) in.append(buf, static_cast<size_t>(n));
    ::close(fd);
    size_t body = in.find("\r\n\r\n");
    REQUIRE(body != std::string::npos);
    CHECK(in.compare(body + 4, 4, "pid ") == 0);
    seen.insert(in.substr(body + 4));
  }
  CHECK(!seen.empty());
}

TEST_CASE("clusterd runs the control verbs itself and hands every other verb to clusterd-full") {
  DaemonUnderTest d;
  REQUIRE(d.start(testApp("web", 1, 0, {}))["ok"] == true);
  REQUIRE(d.waitOnline("web", 1));
  // A copy of the front without clusterd-full next to it.
  clusterd::test::TempDir bin("cd-front");
  std::string front = bin.file("clusterd");
  REQUIRE(clusterd::test::run({"cp", CLUSTERD_BIN, front}).exit_code == 0);
  auto status = clusterd::test::run({front, "--home", d.home(), "status", "--json"});
  CHECK(status.exit_code == 0);
  CHECK(status.out.find("\"app\":\"web\"") != std::string::npos);
  CHECK(clusterd::test::run({front, "--home=" + d.home(), "ping"}).exit_code == 0);
  for (std::vector<std::string> other : {std::vector<std::string>{"validate", "x.yaml"},
                                         {"--home", d.home(), "start", "web"},
                                         {"--home", d.home(), "reload", "web"},
                                         {"status", "--help"},
                                         {"--version"}}) {
    other.insert(other.begin(), front);
    auto r = clusterd::test::run(other);
    INFO(other[1] << ": " << r.err);
    CHECK(r.exit_code == 111);
    CHECK(r.err.find("cannot execute " + bin.file("clusterd-full")) != std::string::npos);
  }
}

TEST_CASE("clusterd shows the help and exit codes of clusterd-full") {
  std::string full = std::string(CLUSTERD_BIN) + "-full";
  auto help = clusterd::test::runClusterd({"--help"});
  CHECK(help.exit_code == 0);
  CHECK(help.out == clusterd::test::run({full, "--help"}).out);
  for (const char* verb : {"start", "status", "logs", "enqueue", "worker"})
    CHECK(help.out.find(std::string("  ") + verb) != std::string::npos);
  auto usage = clusterd::test::runClusterd({"status", "--no-such-flag"});
  CHECK(usage.exit_code == 100);
  CHECK(usage.err == clusterd::test::run({full, "status", "--no-such-flag"}).err);
  CHECK(clusterd::test::runClusterd({"no-such-verb"}).exit_code == 100);
}

}  // namespace master_cli_test
