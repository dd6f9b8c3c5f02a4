// Integration tests of what the master inherits and trusts at start-up: the
// descriptors a worker is given (only stdio and its LISTEN_FDS), and the home
// directory checks (owner and write permission of the home, its parents and
// its files). The checks that need another user skip with a message when the
// tests do not run as root.
#include <catch2/catch.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdlib>
#include <string>

#include "cli/control_client.h"
#include "tests/master/daemon_fixture.h"

namespace master_startup_test {

using namespace clusterd::master;
using namespace clusterd::master::test;
using namespace std::chrono;
using clusterd::test::readFile;
using clusterd::test::reservedTcpPort;
using clusterd::test::runClusterd;
using clusterd::test::TempDir;

namespace {

// The descriptors above 2 of process `pid` that an exec would keep (no
// O_CLOEXEC in their fdinfo flags), with what they point to.
std::vector<std::string> inheritableFds(pid_t pid) {
  std::vector<std::string> out;
  std::string dir = "/proc/" + std::to_string(pid);
  DIR* d = ::opendir((dir + "/fd").c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.' || std::atoi(e->d_name) <= 2) continue;
    std::string info = readFile(dir + "/fdinfo/" + e->d_name);
    size_t p = info.find("flags:");
    if (p == std::string::npos) continue;  // closed meanwhile
    unsigned long flags = std::stoul(info.substr(p + 6), nullptr, 8);
    if (flags & O_CLOEXEC) continue;
    char buf[PATH_MAX];
    ssize_t n = ::readlink((dir + "/fd/" + e->d_name).c_str(), buf, sizeof buf - 1);
    out.push_back(std::string(e->d_name) + " -> " +
                  (n > 0 ? std::string(buf, static_cast<size_t>(n)) : "?"));
  }
  ::closedir(d);
  return out;
}

json call(const std::string& home, const json& request) {
  auto c = clusterd::cli::ControlClient::connect(home);
  REQUIRE(c.ok());
  auto r = c->call(request, seconds(30));
  REQUIRE(r.ok());
  return *r;
}

bool runningAsRoot() {
  if (::geteuid() == 0) return true;
  WARN("not root: this check needs a second user and was not run");
  return false;
}

}  // namespace

TEST_CASE("workers of a daemon the CLI started inherit only stdio and their LISTEN_FDS") {
  TempDir dir("cd-fds");
  std::string home = dir.file("home");
  REQUIRE(runClusterd({"--home", home, "daemon"}).exit_code == 0);
  json ping = call(home, {{"cmd", "ping"}});
  auto daemon = static_cast<pid_t>(ping["pid"].get<int>());
  // Nothing but its stdio would survive an exec of the daemon's: not the
  // /dev/null and daemon.log the CLI opened for it, nor anything else.
  CHECK(inheritableFds(daemon) == std::vector<std::string>{});
  int cluster_port = reservedTcpPort(), fork_port = reservedTcpPort();
  auto cluster = testApp("web", 1, cluster_port, {"--ready"});
  auto fork = testApp("forked", 1, 0, {"--port", std::to_string(fork_port)});
  json apps = json::array({appToJson(cluster), appToJson(fork)});
  REQUIRE(call(home, {{"cmd", "start"}, {"apps", apps}})["ok"] == true);
  REQUIRE(
      clusterd::test::waitFor([&] { return !httpGet(cluster_port, "/fds").empty(); }, seconds(10)));
  REQUIRE(
      clusterd::test::waitFor([&] { return !httpGet(fork_port, "/fds").empty(); }, seconds(10)));
  CHECK(httpGet(cluster_port, "/fds") == "0 1 2 3\n");
  CHECK(httpGet(fork_port, "/fds") == "0 1 2\n");
  CHECK(runClusterd({"--home", home, "kill"}).exit_code == 0);
  clusterd::test::waitFor([&] { return !processAlive(daemon); }, seconds(10));
}

TEST_CASE("a home writable by its group refuses to start, naming the path and the fix") {
  TempDir dir("cd-home");
  std::string home = dir.file("home");
  REQUIRE(::mkdir(home.c_str(), 0700) == 0);
  REQUIRE(::chmod(home.c_str(), 0770) == 0);
  auto r = runClusterd({"--home", home, "daemon"});
  CHECK(r.exit_code != 0);
  CHECK(r.err.find(home + " is writable by its group or by others (mode 0770); `chmod go-w " +
                   home + "`") != std::string::npos);
  CHECK(!clusterd::cli::ControlClient::connect(home).ok());
  // The daemon itself refuses it too (started directly, in the foreground).
  auto fg = runClusterd({"--home", home, "daemon", "--foreground"});
  CHECK(fg.exit_code == 111);
  CHECK(fg.err.find("`chmod go-w " + home + "`") != std::string::npos);
}

TEST_CASE("a world-writable file in the home refuses to start, naming it") {
  TempDir dir("cd-home");
  std::string home = dir.file("home");
  REQUIRE(::mkdir(home.c_str(), 0700) == 0);
  clusterd::test::writeFile(home + "/dump.json", "[]\n");
  REQUIRE(::chmod((home + "/dump.json").c_str(), 0666) == 0);
  auto r = runClusterd({"--home", home, "daemon", "--foreground"});
  CHECK(r.exit_code == 111);
  CHECK(r.err.find(home + "/dump.json is writable by its group or by others (mode 0666)") !=
        std::string::npos);
}

TEST_CASE("a home under a parent others may write refuses to start") {
  TempDir dir("cd-home");
  REQUIRE(::chmod(dir.path().c_str(), 0777) == 0);  // no sticky bit: anyone may rename the home
  std::string home = dir.file("home");
  auto r = runClusterd({"--home", home, "daemon", "--foreground"});
  CHECK(r.exit_code == 111);
  CHECK(r.err.find("its parent " + dir.path() +
                   " is writable by its group or by others (mode 0777)") != std::string::npos);
}

TEST_CASE("a home that belongs to another user refuses to start, naming the owner and the fix") {
  if (!runningAsRoot()) return;
  struct passwd* nobody = ::getpwnam("nobody");
  REQUIRE(nobody != nullptr);
  TempDir dir("cd-home");
  std::string home = dir.file("home");
  REQUIRE(::mkdir(home.c_str(), 0700) == 0);
  REQUIRE(::chown(home.c_str(), nobody->pw_uid, nobody->pw_gid) == 0);
  auto r = runClusterd({"--home", home, "daemon", "--foreground"});
  CHECK(r.exit_code == 111);
  CHECK(r.err.find("home " + home +
                   " belongs to nobody, not to root who runs the daemon; `chown root " + home +
                   "`") != std::string::npos);
}

}  // namespace master_startup_test
