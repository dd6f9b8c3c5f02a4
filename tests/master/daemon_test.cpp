// Integration tests of the master: a real daemon on a temp home supervising
// the testapp program; every behaviour is checked by observation (pids,
// states, bounded timings, failed requests, processes left behind).
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <fstream>

#include "master/daemon.h"
#include "tests/master/daemon_fixture.h"

namespace master_daemon_test {

using namespace clusterd::master;
using namespace clusterd::master::test;
using namespace std::chrono;
using clusterd::test::reservedTcpPort;
using clusterd::test::readFile;
using clusterd::test::waitFor;

namespace {

std::string field(const std::string& body, const std::string& key) {
  size_t p = body.find(key + "=");
  if (p == std::string::npos) return "";
  size_t e = body.find('\n', p);
  return body.substr(p + key.size() + 1, e - p - key.size() - 1);
}

json workerRow(DaemonUnderTest& d, const std::string& app, int instance = 0) {
  for (auto& w : d.status())
    if (w["app"] == app && w["instance"] == instance && w["role"] == "main") return w;
  return nullptr;
}

}  // namespace

TEST_CASE("cluster workers share the master's socket as fd 3 with socket-activation variables") {
  DaemonUnderTest d;
  int port = reservedTcpPort();
  REQUIRE(d.start(testApp("web", 2, port, {"--ready"}))["ok"] == true);
  REQUIRE(d.waitOnline("web", 2));
  auto pids = d.pids("web");
  std::string env = httpGet(port, "/env");
  REQUIRE(!env.empty());
  CHECK(field(env, "LISTEN_PID") == field(env, "PID"));
  CHECK(field(env, "LISTEN_FDS") == "1");
  CHECK(field(env, "LISTEN_FDNAMES") == "web");
  CHECK(field(env, "CLUSTERD_APP") == "web");
  CHECK(field(env, "NODE_APP_INSTANCE") == field(env, "CLUSTERD_INSTANCE"));
  // Connections spread over both workers (reuseport hash over 40 new connections).
  std::set<std::string> seen;
  for (int i = 0; i < 40; ++i) seen.insert(httpGet(port, "/"));
  CHECK(seen.size() == 2);
}

// How fast the replacement comes is measured in bench/master_bench.py; this
// bound only says it comes.
TEST_CASE("a SIGKILLed worker is replaced by a new process that serves") {
  DaemonUnderTest d;
  int port = reservedTcpPort();
  REQUIRE(d.start(testApp("web", 1, port, {"--ready"}))["ok"] == true);
  REQUIRE(d.waitOnline("web", 1));
  pid_t old = d.pids("web").at(0);
  ::kill(old, SIGKILL);
  REQUIRE(waitFor([&] {
    auto w = workerRow(d, "web");
    return w != nullptr && w["state"] == "online" && w["pid"] != old;
  }, seconds(10)));
  CHECK(workerRow(d, "web")["restarts"] == 1);
  CHECK(httpGet(port, "/").find("pid ") == 0);
}

TEST_CASE("reload under keep-alive load fails no request and replaces every worker") {
  DaemonUnderTest d;
  int port = reservedTcpPort();
  REQUIRE(d.start(testApp("web", 2, port, {"--ready"}))["ok"] == true);
  REQUIRE(d.waitOnline("web", 2));
  auto before = d.pids("web");
  LoadLoop load(port, 4, seconds(20), 200'000);
  std::this_thread::sleep_for(milliseconds(200));
  auto r = d.cli({"reload", "web"});
  REQUIRE(r.exit_code == 0);
  std::this_thread::sleep_for(milliseconds(300));
  load.stop();
  auto after = d.pids("web");
  INFO("ok " << load.ok() << " failed " << load.failed() << "\n" << r.err);
  CHECK(load.failed() == 0);
  CHECK(load.ok() > 100);
  for (pid_t p : before) CHECK(std::find(after.begin(), after.end(), p) == after.end());
  for (pid_t p : before) CHECK(waitFor([&] { return !processAlive(p); }, seconds(5)));
}

TEST_CASE("reload waits for READY=1 of the new worker before stopping the old one") {
  DaemonUnderTest d;
  int port = reservedTcpPort();
  // The test holds the replacement back: a worker serves and sends READY=1
  // only once the gate file exists.
  std::string gate = d.home() + "/ready-gate";
  clusterd::test::writeFile(gate, "");
  auto app = testApp("web", 1, port, {"--ready", "--ready-file", gate});
  app.spec.wait_ready = true;
  app.spec.listen_timeout = seconds(30);
  REQUIRE(d.start(app)["ok"] == true);
  REQUIRE(d.waitOnline("web", 1));
  pid_t old = d.pids("web").at(0);
  REQUIRE(::unlink(gate.c_str()) == 0);
  REQUIRE(d.call({{"cmd", "reload"}, {"target", "web"}})["ok"] == true);
  auto incoming = [&] {
    for (auto& w : d.status())
      if (w["app"] == "web" && w["pid"] != old && w["pid"].get<pid_t>() > 0) return true;
    return false;
  };
  REQUIRE(waitFor(incoming, seconds(5)));
  std::this_thread::sleep_for(milliseconds(300));
  CHECK(processAlive(old));  // the replacement is running but not ready
  CHECK(httpGet(port, "/") == "pid " + std::to_string(old) + " instance 0\n");
  clusterd::test::writeFile(gate, "");
  REQUIRE(waitFor([&] { return !processAlive(old); }, seconds(5)));
  CHECK(d.pids("web").at(0) != old);
}

TEST_CASE("SIGHUP to the master reloads every app") {
  DaemonUnderTest d;
  REQUIRE(d.start(testApp("a", 1, reservedTcpPort(), {"--ready"}))["ok"] == true);
  REQUIRE(d.start(testApp("b", 1, 0, {}))["ok"] == true);
  REQUIRE(d.waitOnline("a", 1));
  REQUIRE(d.waitOnline("b", 1));
  pid_t a = d.pids("a").at(0), b = d.pids("b").at(0);
  ::kill(d.pid(), SIGHUP);
  CHECK(waitFor([&] { return d.pids("a").at(0) != a && d.pids("b").at(0) != b; }, seconds(5)));
}

TEST_CASE("a worker ignoring SIGTERM is SIGKILLed after kill_timeout with its children") {
  DaemonUnderTest d;
  auto app = testApp("stubborn", 1, 0, {"--ignore-term", "--fork-child", d.home() + "/child.pid"});
  app.spec.kill_timeout = milliseconds(500);
  REQUIRE(d.start(app)["ok"] == true);
  REQUIRE(d.waitOnline("stubborn", 1));
  REQUIRE(waitFor([&] { return !readFile(d.home() + "/child.pid").empty(); }));
  pid_t worker = d.pids("stubborn").at(0);
  pid_t child = std::stoi(readFile(d.home() + "/child.pid"));
  REQUIRE(processAlive(child));
  auto t0 = steady_clock::now();
  REQUIRE(d.call({{"cmd", "stop"}, {"target", "stubborn"}})["ok"] == true);
  REQUIRE(waitFor([&] { return workerRow(d, "stubborn")["state"] == "stopped"; }, seconds(5)));
  auto took = steady_clock::now() - t0;
  CHECK(took >= milliseconds(450));
  CHECK(took < seconds(3));
  CHECK(!processAlive(worker));
  CHECK(waitFor([&] { return !processAlive(child); }, seconds(2)));
}

TEST_CASE("each worker leads its own process group in the master's session") {
  // Its own group: the master signals a worker and what it forks together.
  // The master's session: the scheduler groups the master and its workers
  // as one (autogroups), as with nginx and PM2.
  DaemonUnderTest d;
  // Online on READY=1, so the program runs: past the trampoline's setpgid.
  // (Without wait_ready, online is a 100 ms grace, which a loaded machine can
  // reach before the trampoline has run.)
  auto app = testApp("web", 2, reservedTcpPort(), {"--ready"});
  app.spec.wait_ready = true;
  REQUIRE(d.start(app)["ok"] == true);
  REQUIRE(d.waitOnline("web", 2));
  for (pid_t p : d.pids("web")) {
    CHECK(getpgid(p) == p);
    CHECK(getsid(p) == getsid(d.pid()));
  }
}

TEST_CASE("no worker outlives a master killed with SIGKILL") {
  DaemonUnderTest d;
  REQUIRE(d.start(testApp("web", 2, reservedTcpPort(), {"--ready"}))["ok"] == true);
  REQUIRE(d.start(testApp("plain", 1, 0, {}))["ok"] == true);
  REQUIRE(d.waitOnline("web", 2));
  REQUIRE(d.waitOnline("plain", 1));
  auto pids = d.pids("web");
  pids.push_back(d.pids("plain").at(0));
  d.crash();
  for (pid_t p : pids) CHECK(waitFor([&] { return !processAlive(p); }, seconds(3)));
}

TEST_CASE("kill stops every worker and the daemon, leaving no process") {
  DaemonUnderTest d;
  REQUIRE(d.start(testApp("web", 2, reservedTcpPort(), {"--ready"}))["ok"] == true);
  REQUIRE(d.waitOnline("web", 2));
  auto pids = d.pids("web");
  auto r = d.cli({"kill"});
  CHECK(r.exit_code == 0);
  CHECK(waitFor([&] { return !processAlive(d.pid()); }, seconds(5)));
  for (pid_t p : pids) CHECK(!processAlive(p));
  struct stat st {};
  CHECK(::stat(controlSocketPath(d.home()).c_str(), &st) != 0);
}

TEST_CASE("a leaking worker is replaced soon after it passes max_memory_restart") {
  DaemonUnderTest d;
  int port = reservedTcpPort();
  auto app = testApp("leaky", 1, port, {"--ready", "--leak", "8"});
  app.spec.max_memory_restart = 64ull << 20;
  app.spec.memory_check_interval = milliseconds(200);
  app.spec.wait_ready = true;
  REQUIRE(d.start(app)["ok"] == true);
  REQUIRE(d.waitOnline("leaky", 1));
  pid_t first = d.pids("leaky").at(0);
  // 8 MiB per 100 ms passes 64 MiB after ~0.8 s; allow generous slack.
  REQUIRE(waitFor([&] { return !processAlive(first); }, seconds(5)));
  auto w = workerRow(d, "leaky");
  CHECK(w["pid"] != first);
  CHECK(w["restarts"].get<int>() >= 1);
}

TEST_CASE("a worker that stops sending WATCHDOG=1 is replaced") {
  DaemonUnderTest d;
  auto app = testApp("hung", 1, reservedTcpPort(), {"--ready", "--watchdog", "100", "--hang-after", "300"});
  app.spec.watchdog = milliseconds(500);
  app.spec.wait_ready = true;
  REQUIRE(d.start(app)["ok"] == true);
  REQUIRE(d.waitOnline("hung", 1));
  pid_t first = d.pids("hung").at(0);
  REQUIRE(waitFor([&] { return workerRow(d, "hung")["pid"] != first; }, seconds(5)));
  CHECK(waitFor([&] { return !processAlive(first); }, seconds(5)));
}

TEST_CASE("a worker is told its watchdog period in WATCHDOG_USEC and is kept while it pings") {
  DaemonUnderTest d;
  int port = reservedTcpPort();
  auto app = testApp("fed", 1, port, {"--ready", "--watchdog", "auto"});
  app.spec.watchdog = milliseconds(400);
  app.spec.wait_ready = true;
  REQUIRE(d.start(app)["ok"] == true);
  REQUIRE(d.waitOnline("fed", 1));
  pid_t first = d.pids("fed").at(0);
  CHECK(field(httpGet(port, "/env"), "WATCHDOG_USEC") == "400000");
  // Five watchdog periods: a worker that did not know the period would
  // have been replaced several times by now.
  std::this_thread::sleep_for(milliseconds(2000));
  auto w = workerRow(d, "fed");
  CHECK(w["pid"] == first);
  CHECK(w["restarts"] == 0);
}

TEST_CASE("a crash loop ends errored with a reason and the daemon stays up") {
  DaemonUnderTest d;
  auto app = testApp("crashy", 1, 0, {"--crash-after", "0"});
  app.spec.max_restarts = 3;
  REQUIRE(d.start(app)["ok"] == true);
  REQUIRE(waitFor([&] { return workerRow(d, "crashy")["state"] == "errored"; }, seconds(5)));
  auto w = workerRow(d, "crashy");
  CHECK(w["status"].get<std::string>().find("min_uptime") != std::string::npos);
  CHECK(w["restarts"] == 3);
  CHECK(d.call({{"cmd", "ping"}})["ok"] == true);
}

TEST_CASE("bad apps get clear errors and the daemon stays up") {
  DaemonUnderTest d;
  auto missing = testApp("missing", 1, 0, {});
  missing.spec.script = "/nonexistent/server";
  auto r = d.start(missing);
  CHECK(r["ok"] == false);
  CHECK(r["error"].get<std::string>().find("does not exist") != std::string::npos);

  auto zero = testApp("zero", 0, 0, {});
  r = d.start(zero);
  CHECK(r["ok"] == false);
  CHECK(r["error"].get<std::string>().find("instances") != std::string::npos);

  // A port someone else listens on.
  int taken = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(taken, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(taken, 1) == 0);
  socklen_t len = sizeof a;
  ::getsockname(taken, reinterpret_cast<sockaddr*>(&a), &len);
  r = d.start(testApp("busy", 1, ntohs(a.sin_port), {}));
  ::close(taken);
  CHECK(r["ok"] == false);
  CHECK(r["error"].get<std::string>().find("already in use") != std::string::npos);

  CHECK(d.call({{"cmd", "ping"}})["ok"] == true);
  CHECK(d.status().empty());
}

TEST_CASE("the control socket answers malformed and oversized requests with errors") {
  DaemonUnderTest d;
  struct stat st {};
  REQUIRE(::stat(controlSocketPath(d.home()).c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  REQUIRE(::stat(d.home().c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);

  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::string path = controlSocketPath(d.home());
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  std::string big(2 << 20, 'x');
  std::string out = "this is not json\n{\"cmd\": 42}\n" + big + "\n{\"cmd\":\"ping\"}\n";
  std::thread writer([&] { ::send(fd, out.data(), out.size(), MSG_NOSIGNAL); });
  std::string in;
  char buf[4096];
  while (std::count(in.begin(), in.end(), '\n') < 4) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    in.append(buf, static_cast<size_t>(n));
  }
  writer.join();
  ::close(fd);
  std::vector<json> replies;
  size_t start = 0;
  for (size_t nl; (nl = in.find('\n', start)) != std::string::npos; start = nl + 1)
    replies.push_back(json::parse(in.substr(start, nl - start)));
  REQUIRE(replies.size() == 4);
  CHECK(replies[0]["ok"] == false);
  CHECK(replies[1]["ok"] == false);
  CHECK(replies[2]["error"].get<std::string>().find("longer than") != std::string::npos);
  CHECK(replies[3]["ok"] == true);
  CHECK(d.call({{"cmd", "nonsense"}})["ok"] == false);
}

TEST_CASE("a second daemon for the same home refuses to start") {
  DaemonUnderTest d;
  auto r = clusterd::test::runClusterd({"--home", d.home(), "daemon", "--foreground"});
  CHECK(r.exit_code == 111);
  CHECK(r.err.find("already runs") != std::string::npos);
  CHECK(d.call({{"cmd", "ping"}})["ok"] == true);
}

TEST_CASE("a stale socket from a crashed daemon is detected and replaced") {
  DaemonUnderTest d;
  d.crash();
  struct stat st {};
  REQUIRE(::stat(controlSocketPath(d.home()).c_str(), &st) == 0);  // left behind
  auto r = d.cli({"ping"});
  CHECK(r.exit_code == 111);
  r = d.cli({"daemon"});
  CHECK(r.exit_code == 0);
  CHECK(r.err.find("stale") != std::string::npos);
  CHECK(d.cli({"ping"}).exit_code == 0);
  CHECK(d.cli({"kill"}).exit_code == 0);
}

TEST_CASE("worker output lands in the app's log files and logs/flush work") {
  DaemonUnderTest d;
  auto app = testApp("talk", 1, 0, {"--say", "hello-from-worker"});
  app.spec.log_date_format = "%Y-%m-%d";
  REQUIRE(d.start(app)["ok"] == true);
  std::string out = d.home() + "/logs/talk-out.log", err = d.home() + "/logs/talk-error.log";
  REQUIRE(waitFor([&] { return readFile(out).find("hello-from-worker") != std::string::npos; }));
  REQUIRE(waitFor([&] { return readFile(err).find("err: hello-from-worker") != std::string::npos; }));
  CHECK(readFile(out).find(": hello-from-worker\n") == 10);  // "YYYY-MM-DD: "
  auto r = d.cli({"logs", "talk", "--lines", "5"});
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("hello-from-worker") != std::string::npos);
  r = d.cli({"logs", "talk", "--err"});
  CHECK(r.out.find("talk-out.log") == std::string::npos);
  CHECK(r.out.find("err: hello-from-worker") != std::string::npos);
  CHECK(d.cli({"flush", "talk"}).exit_code == 0);
  CHECK(readFile(out).empty());
}

TEST_CASE("status, describe and scale through the CLI") {
  DaemonUnderTest d;
  int port = reservedTcpPort();
  REQUIRE(d.start(testApp("web", 1, port, {"--ready", "--stats", "--status", "warm"}))["ok"] == true);
  REQUIRE(d.waitOnline("web", 1));
  auto r = d.cli({"status", "--json"});
  REQUIRE(r.exit_code == 0);
  json rows = json::parse(r.out);
  REQUIRE(rows.size() == 1);
  for (const char* key : {"id", "app", "mode", "instance", "pid", "state", "uptime_ms", "restarts",
                          "cpu", "memory", "stats"})
    CHECK(rows[0].contains(key));
  CHECK(rows[0]["mode"] == "cluster");
  r = d.cli({"ls"});
  CHECK(r.out.find("online") != std::string::npos);
  CHECK(r.out.find("\x1b[") == std::string::npos);  // no colours without a TTY
  REQUIRE(waitFor([&] { return d.cli({"describe", "web"}).out.find("\"requests\"") != std::string::npos; }));
  CHECK(d.cli({"describe", "web"}).out.find("STATUS=warm") != std::string::npos);
  r = d.cli({"scale", "web", "+2"});
  CHECK(r.exit_code == 0);
  CHECK(d.waitOnline("web", 3));
  r = d.cli({"scale", "web", "-2"});
  CHECK(r.exit_code == 0);
  CHECK(waitFor([&] { return d.status().size() == 1; }));
  CHECK(d.cli({"describe", "nope"}).exit_code == 1);
  CHECK(d.cli({"stop", "nope"}).exit_code == 1);
}

TEST_CASE("save and resurrect bring the apps back after the daemon stops") {
  DaemonUnderTest d;
  REQUIRE(d.start(testApp("web", 2, reservedTcpPort(), {"--ready"}))["ok"] == true);
  REQUIRE(d.waitOnline("web", 2));
  REQUIRE(d.cli({"save"}).exit_code == 0);
  REQUIRE(d.cli({"kill"}).exit_code == 0);
  auto r = d.cli({"resurrect"});
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("online") != std::string::npos);
  CHECK(d.cli({"kill"}).exit_code == 0);
}

TEST_CASE("stop, restart and delete take effect and report") {
  DaemonUnderTest d;
  REQUIRE(d.start(testApp("a", 2, 0, {}))["ok"] == true);
  REQUIRE(d.waitOnline("a", 2));
  auto before = d.pids("a");
  CHECK(d.cli({"stop", "a"}).exit_code == 0);
  for (auto& w : d.status()) CHECK(w["state"] == "stopped");
  for (pid_t p : before) CHECK(!processAlive(p));
  CHECK(d.cli({"restart", "a"}).exit_code == 0);
  CHECK(d.waitOnline("a", 2));
  std::string id = std::to_string(d.status()[0]["id"].get<int>());
  pid_t one = d.status()[0]["pid"];
  CHECK(d.cli({"restart", id}).exit_code == 0);
  CHECK(d.status()[0]["pid"] != one);
  CHECK(d.cli({"delete", "all"}).exit_code == 0);
  CHECK(d.status().empty());
}

}  // namespace master_daemon_test
