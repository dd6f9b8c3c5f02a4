// Integration tests of the master's privilege and service-manager edges:
// uid/gid drop for workers, the control socket's peer check, a script that
// is not executable, autorestart: false, READY=1/STOPPING=1 sent to a
// service manager's NOTIFY_SOCKET, and what an app running as another user
// cannot do: point its log at root's files, reach the master's notify
// socket, or speak for another app's worker. The root-only checks say so and pass
// trivially when the tests do not run as root.
#include <catch2/catch.hpp>

#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <thread>

#include "master/daemon.h"
#include "tests/master/daemon_fixture.h"

namespace master_privileges_test {

using namespace clusterd::master;
using namespace clusterd::master::test;
using namespace std::chrono;
using clusterd::test::reservedTcpPort;
using clusterd::test::readFile;
using clusterd::test::waitFor;
using clusterd::test::writeFile;

namespace {

std::string field(const std::string& body, const std::string& key) {
  std::string text = "\n" + body;
  size_t p = text.find("\n" + key + "=");
  if (p == std::string::npos) return "";
  p += key.size() + 2;
  return text.substr(p, text.find('\n', p) - p);
}

bool runningAsRoot() {
  if (::geteuid() == 0) return true;
  WARN("not root: privilege checks need root and were not run");
  return false;
}

}  // namespace

TEST_CASE("uid drops a worker to the user and its primary group, gid overrides the group") {
  if (!runningAsRoot()) return;
  struct passwd* nobody = ::getpwnam("nobody");
  REQUIRE(nobody != nullptr);
  DaemonUnderTest d;
  int port = reservedTcpPort();
  auto app = testApp("low", 1, port, {"--ready"});
  app.spec.uid = "nobody";
  REQUIRE(d.start(app)["ok"] == true);
  REQUIRE(d.waitOnline("low", 1));
  std::string env = httpGet(port, "/env");
  CHECK(field(env, "UID") == std::to_string(nobody->pw_uid));
  CHECK(field(env, "GID") == std::to_string(nobody->pw_gid));  // not root's group
  CHECK(field(env, "GROUPS") == "0");                          // no supplementary groups kept

  int port2 = reservedTcpPort();
  auto app2 = testApp("low2", 1, port2, {"--ready"});
  app2.spec.uid = std::to_string(nobody->pw_uid);
  app2.spec.gid = "1";
  REQUIRE(d.start(app2)["ok"] == true);
  REQUIRE(d.waitOnline("low2", 1));
  env = httpGet(port2, "/env");
  CHECK(field(env, "UID") == std::to_string(nobody->pw_uid));
  CHECK(field(env, "GID") == "1");

  auto bad = testApp("bad", 1, 0, {});
  bad.spec.uid = "no-such-user-here";
  auto r = d.start(bad);
  CHECK(r["ok"] == false);
  CHECK(r["error"].get<std::string>().find("no-such-user-here") != std::string::npos);
}

TEST_CASE("the control socket refuses a peer whose uid is neither the daemon's nor root") {
  if (!runningAsRoot()) return;
  DaemonUnderTest d;
  // Open the file permissions so only the SO_PEERCRED check stands in the way.
  REQUIRE(::chmod(d.home().c_str(), 0711) == 0);
  std::string path = controlSocketPath(d.home());
  REQUIRE(::chmod(path.c_str(), 0666) == 0);
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // 0: connected and closed without a reply; 1: got a reply; 2: could not connect.
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(3);
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) ::_exit(2);
    const char ping[] = "{\"cmd\":\"ping\"}\n";
    ::send(fd, ping, sizeof ping - 1, MSG_NOSIGNAL);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[256];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    ::_exit(n > 0 ? 1 : 0);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(readFile(d.home() + "/daemon.out").find("refused a connection from uid 65534") != std::string::npos);
  CHECK(d.call({{"cmd", "ping"}})["ok"] == true);  // root (our uid) is still served
}

TEST_CASE("a script that is not executable is refused with what to do") {
  DaemonUnderTest d;
  clusterd::test::TempDir dir("cd-noexec");
  writeFile(dir.file("server.sh"), "#!/bin/sh\nexit 0\n");
  REQUIRE(::chmod(dir.file("server.sh").c_str(), 0644) == 0);
  auto app = testApp("noexec", 1, 0, {});
  app.spec.script = dir.file("server.sh");
  auto r = d.start(app);
  CHECK(r["ok"] == false);
  CHECK(r["error"].get<std::string>().find("not executable (chmod +x it, or set `interpreter`)") !=
        std::string::npos);
  app.spec.interpreter = "/bin/sh";  // the same file through an interpreter is fine
  CHECK(d.start(app)["ok"] == true);
}

TEST_CASE("with autorestart false a worker that exits stays stopped") {
  DaemonUnderTest d;
  auto app = testApp("once", 1, 0, {"--crash-after", "300"});
  app.spec.autorestart = false;
  REQUIRE(d.start(app)["ok"] == true);
  REQUIRE(d.waitOnline("once", 1));
  pid_t first = d.pids("once").at(0);
  REQUIRE(waitFor([&] { return d.status()[0]["state"] == "stopped"; }, seconds(5)));
  std::this_thread::sleep_for(milliseconds(300));
  auto w = d.status()[0];
  CHECK(w["state"] == "stopped");
  CHECK(w["pid"] == 0);
  CHECK(w["last_exit"] == "exit 3");
  CHECK(!processAlive(first));
}

TEST_CASE("the daemon reports READY=1 and STOPPING=1 to its service manager's NOTIFY_SOCKET") {
  clusterd::test::TempDir dir("cd-sdnotify");
  std::string sock = dir.file("notify.sock");
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, sock.c_str(), sock.size() + 1);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  clusterd::test::Child daemon({CLUSTERD_BIN, "--home", dir.file("home"), "daemon", "--foreground"},
                               {{"NOTIFY_SOCKET", sock}}, dir.file("daemon.out"));
  char buf[512];
  ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  REQUIRE(n > 0);
  std::string msg(buf, static_cast<size_t>(n));
  CHECK(msg.find("READY=1\n") == 0);
  CHECK(msg.find("MAINPID=" + std::to_string(daemon.pid())) != std::string::npos);
  // Ready means the control socket answers.
  CHECK(clusterd::test::runClusterd({"--home", dir.file("home"), "ping"}).exit_code == 0);
  daemon.signal(SIGTERM);
  n = ::recv(fd, buf, sizeof buf, 0);
  REQUIRE(n > 0);
  CHECK(std::string(buf, static_cast<size_t>(n)) == "STOPPING=1\n");
  CHECK(daemon.wait(seconds(10)) != -1);
  ::close(fd);
}

TEST_CASE("an app running as another user cannot point its log at a file of root's") {
  if (!runningAsRoot()) return;
  struct passwd* nobody = ::getpwnam("nobody");
  REQUIRE(nobody != nullptr);
  DaemonUnderTest d;
  clusterd::test::TempDir dir("cd-loglink");
  std::string logs = dir.file("logs"), secret = dir.file("authorized_keys");
  REQUIRE(::mkdir(logs.c_str(), 0755) == 0);
  writeFile(secret, "ssh-ed25519 AAAA root@host\n");
  // A link the app's user made, as it could in a directory of its own.
  REQUIRE(::symlink(secret.c_str(), (logs + "/out.log").c_str()) == 0);
  REQUIRE(::lchown((logs + "/out.log").c_str(), nobody->pw_uid, nobody->pw_gid) == 0);
  auto app = testApp("linked", 1, 0, {"--say", "pwned"});
  app.spec.uid = "nobody";
  app.spec.out_file = logs + "/out.log";
  auto r = d.start(app);
  CHECK(r["ok"] == false);
  CHECK(r["error"].get<std::string>().find("log file " + logs + "/out.log is a symbolic link") !=
        std::string::npos);

  // A directory the app's user owns is refused even while it holds no link yet.
  REQUIRE(::chown(logs.c_str(), nobody->pw_uid, nobody->pw_gid) == 0);
  app.spec.out_file = logs + "/fresh.log";
  r = d.start(app);
  CHECK(r["ok"] == false);
  CHECK(r["error"].get<std::string>().find("log directory " + logs + " is writable by nobody") !=
        std::string::npos);
  CHECK(readFile(secret) == "ssh-ed25519 AAAA root@host\n");
}

TEST_CASE("a worker running as another user cannot speak for another app's worker") {
  if (!runningAsRoot()) return;
  DaemonUnderTest d;
  int port = reservedTcpPort();
  auto victim = testApp("victim", 1, port, {"--ready"});
  victim.spec.wait_ready = true;
  REQUIRE(d.start(victim)["ok"] == true);
  REQUIRE(d.waitOnline("victim", 1));
  pid_t vpid = d.pids("victim").at(0);
  // Its child tries to join the victim's process group and to send
  // STATUS=impersonated and WATCHDOG=trigger on its own notify socket and on
  // the master's main one.
  auto intruder = testApp("intruder", 1, 0,
                          {"--ready", "--impersonate", std::to_string(vpid), "--other-socket",
                           notifySocketPath(d.home())});
  intruder.spec.uid = "nobody";
  intruder.spec.wait_ready = true;
  intruder.spec.listen_timeout = seconds(30);
  REQUIRE(d.start(intruder)["ok"] == true);
  std::string log = d.home() + "/logs/intruder-out.log";
  REQUIRE(waitFor([&] { return readFile(log).find("impersonate:") != std::string::npos; },
                  seconds(10)));
  std::string said = readFile(log);
  INFO(said);
  CHECK(said.find("setpgid Operation not permitted") != std::string::npos);  // another session
  CHECK(said.find("other socket Permission denied") != std::string::npos);   // root's socket
  // The worker's own READY=1 reached the master through its app's socket,
  // long before listen_timeout.
  REQUIRE(d.waitOnline("intruder", 1, seconds(10)));
  std::this_thread::sleep_for(milliseconds(300));
  auto workers = d.status();
  for (auto& w : workers) {
    if (w["app"] != "victim") continue;
    CHECK(w["pid"] == vpid);  // not replaced by a forged WATCHDOG=trigger
    CHECK(w["status"] != "impersonated");
  }
}

TEST_CASE("other local users cannot reach the workers' notify socket") {
  if (!runningAsRoot()) return;
  DaemonUnderTest d;
  int port = reservedTcpPort();
  REQUIRE(d.start(testApp("web", 1, port, {"--ready"}))["ok"] == true);
  REQUIRE(d.waitOnline("web", 1));
  std::string path = field(httpGet(port, "/env"), "NOTIFY_SOCKET");
  REQUIRE(!path.empty());
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // 0: refused with EACCES; 1: sent; 2: another error.
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(3);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path.c_str(), path.size());
    if (a.sun_path[0] == '@') a.sun_path[0] = '\0';
    int fd = ::socket(AF_UNIX, SOCK_DGRAM, 0);
    const char msg[] = "WATCHDOG=trigger\n";
    auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
    if (::sendto(fd, msg, sizeof msg - 1, 0, reinterpret_cast<sockaddr*>(&a), len) >= 0) ::_exit(1);
    ::_exit(errno == EACCES ? 0 : 2);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

}  // namespace master_privileges_test
