// Integration tests of the master's privilege and service-manager edges:
// uid/gid drop for workers, the control socket's peer check, a script that
// is not executable, autorestart: false, and READY=1/STOPPING=1 sent to a
// service manager's NOTIFY_SOCKET. The root-only checks say so and pass
// trivially when the tests do not run as root.
#include <catch2/catch.hpp>

#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "master/daemon.h"
#include "tests/master/daemon_fixture.h"

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
