// The daemon's own files on a shared or full disk: `save` keeps the previous
// dump whole when the new one cannot be written; daemon.log is rotated and
// collapses repeated lines.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "cli/control_client.h"
#include "master/daemon.h"
#include "tests/master/daemon_fixture.h"

namespace master_files_test {

using namespace clusterd::master;
using namespace clusterd::master::test;
using clusterd::test::readFile;
using clusterd::test::runClusterd;

namespace {

// A tmpfs of `size` mounted on `dir` in a mount namespace of this test
// process (and the daemon it starts), so nothing outlives the test. False
// with a message when the test cannot mount (not root).
bool mountSmallTmpfs(const std::string& dir, const char* size) {
  if (::geteuid() != 0) {
    WARN("skipped: mounting a small tmpfs needs root");
    return false;
  }
  if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    WARN("skipped: no mount namespace: " << std::strerror(errno));
    return false;
  }
  std::string options = std::string("mode=0700,size=") + size;
  if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, options.c_str()) != 0) {
    WARN("skipped: mount tmpfs: " << std::strerror(errno));
    return false;
  }
  return true;
}

// Writes into `path` until the file system is full.
void fillDisk(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  REQUIRE(fd >= 0);
  std::string block(4096, 'f');
  for (int i = 0; i < 1 << 20; ++i) {
    if (::write(fd, block.data(), block.size()) < 0) break;
  }
  CHECK(errno == ENOSPC);
  ::close(fd);
}

// One request on a new connection to the daemon of `home`.
json call(const std::string& home, const json& request) {
  auto c = clusterd::cli::ControlClient::connect(home);
  REQUIRE(c.ok());
  auto r = c->call(request, std::chrono::seconds(30));
  REQUIRE(r.ok());
  return *r;
}

// Connects to the control socket and reads until the daemon closes it.
void connectAndWaitForClose(const std::string& home) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::string path = controlSocketPath(home);
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[512];
  while (::recv(fd, buf, sizeof buf, 0) > 0) {
  }
  ::close(fd);
}

}  // namespace

TEST_CASE("save on a full disk reports the error and keeps the previous dump whole") {
  clusterd::test::TempDir dir("cd-files");
  const std::string home = dir.file("home");
  REQUIRE(::mkdir(home.c_str(), 0700) == 0);
  if (!mountSmallTmpfs(home, "512k")) return;
  DaemonUnderTest d(home);
  REQUIRE(d.start(testApp("first", 1, 0, {}))["ok"] == true);
  REQUIRE(d.waitOnline("first", 1));
  REQUIRE(d.call({{"cmd", "save"}})["ok"] == true);
  const std::string before = readFile(dumpPath(home));
  REQUIRE(before.find("\"first\"") != std::string::npos);

  REQUIRE(d.start(testApp("second", 1, 0, {}))["ok"] == true);
  REQUIRE(d.waitOnline("second", 1));
  fillDisk(home + "/filler");
  json r = d.call({{"cmd", "save"}});
  INFO(r.dump());
  CHECK(r["ok"] == false);
  CHECK_THAT(r.value("error", ""), Catch::Contains(dumpPath(home) + ".tmp") &&
                                       Catch::Contains(std::strerror(ENOSPC)) &&
                                       Catch::Contains(dumpPath(home) + " is unchanged"));
  CHECK(readFile(dumpPath(home)) == before);
  CHECK(::access((dumpPath(home) + ".tmp").c_str(), F_OK) != 0);
}

TEST_CASE("save writes a dump only its owner can read, whatever an earlier temporary file's mode") {
  clusterd::test::TempDir dir("cd-files");
  const std::string home = dir.file("home");
  REQUIRE(::mkdir(home.c_str(), 0700) == 0);
  DaemonUnderTest d(home);
  auto app = testApp("first", 1, 0, {});
  app.spec.env["SECRET_TOKEN"] = "t0ps3cret";
  REQUIRE(d.start(app)["ok"] == true);
  REQUIRE(d.waitOnline("first", 1));
  // A temporary file left behind by an interrupted save, readable by all.
  const std::string tmp = dumpPath(home) + ".tmp";
  clusterd::test::writeFile(tmp, "{}");
  REQUIRE(::chmod(tmp.c_str(), 0644) == 0);
  REQUIRE(d.call({{"cmd", "save"}})["ok"] == true);
  struct stat st{};
  REQUIRE(::stat(dumpPath(home).c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(readFile(dumpPath(home)).find("t0ps3cret") != std::string::npos);
}

TEST_CASE("daemon.log is rotated past its size and a repeated line is written once with a count") {
  clusterd::test::TempDir home("cd-daemonlog");
  clusterd::test::RunOptions options;
  options.env = {{"CLUSTERD_DAEMON_LOG_MAX_SIZE", "2K"},
                 {"CLUSTERD_DAEMON_LOG_RETAIN", "2"},
                 {"CLUSTERD_CONTROL_MAX_CLIENTS", "1"}};
  auto started = runClusterd({"--home", home.path(), "daemon"}, options);
  REQUIRE(started.exit_code == 0);
  const pid_t daemon = call(home.path(), {{"cmd", "ping"}})["pid"].get<pid_t>();
  struct StopOnFailure {
    pid_t pid;
    ~StopOnFailure() {
      if (processAlive(pid)) ::kill(pid, SIGTERM);
    }
  } stop{daemon};
  // Distinct lines (pids differ) from restarts, enough to rotate twice.
  AppConfig app = testApp("web", 1, 0, {});
  REQUIRE(call(home.path(), {{"cmd", "start"}, {"apps", json::array({appToJson(app)})}})["ok"] == true);
  // Online with a pid other than `before`: a restart has finished, so its
  // lines cannot fall between the repeated ones below.
  auto onlineOtherThan = [&](int64_t before) {
    json w = call(home.path(), {{"cmd", "status"}})["workers"];
    return w.size() == 1 && w[0]["state"] == "online" && w[0].value("pid", int64_t{0}) != before;
  };
  auto pidNow = [&] {
    json w = call(home.path(), {{"cmd", "status"}})["workers"];
    return w.size() == 1 ? w[0].value("pid", int64_t{0}) : int64_t{0};
  };
  REQUIRE(clusterd::test::waitFor([&] { return onlineOtherThan(0); }, std::chrono::seconds(10)));
  for (int i = 0; i < 30; ++i) {
    int64_t before = pidNow();
    REQUIRE(call(home.path(), {{"cmd", "restart"}, {"target", "web"}})["ok"] == true);
    REQUIRE(clusterd::test::waitFor([&] { return onlineOtherThan(before); }, std::chrono::seconds(10)));
  }
  // One line, 50 times: every connection past the one held is refused.
  {
    auto held = clusterd::cli::ControlClient::connect(home.path());
    REQUIRE(held.ok());
    REQUIRE(held->call({{"cmd", "ping"}}, std::chrono::seconds(10)).ok());
    for (int i = 0; i < 50; ++i) connectAndWaitForClose(home.path());
  }
  // Served again once the daemon has seen the previous connection close.
  REQUIRE(clusterd::test::waitFor([&] {
    auto c = clusterd::cli::ControlClient::connect(home.path());
    auto r = c ? c->call({{"cmd", "kill"}}, std::chrono::seconds(10)) : clusterd::Result<json>(c.error());
    return r.ok() && (*r)["ok"] == true;
  }, std::chrono::seconds(10)));
  REQUIRE(clusterd::test::waitFor([&] { return !processAlive(daemon); }, std::chrono::seconds(15)));

  const std::string log = daemonLogPath(home.path());
  struct stat st {};
  REQUIRE(::stat(log.c_str(), &st) == 0);
  CHECK(st.st_size <= 2048);
  CHECK(::access((log + ".1").c_str(), F_OK) == 0);
  CHECK(::access((log + ".2").c_str(), F_OK) == 0);
  CHECK(::access((log + ".3").c_str(), F_OK) != 0);
  std::string all = readFile(log + ".2") + readFile(log + ".1") + readFile(log);
  INFO(all);
  size_t refused = 0;
  for (size_t p = all.find("refused a connection"); p != std::string::npos;
       p = all.find("refused a connection", p + 1))
    ++refused;
  CHECK(refused == 1);
  // 49, or more when a ping above came before the daemon saw the close.
  const std::string summary = "info [log] last message repeated ";
  size_t at = all.find(summary);
  REQUIRE(at != std::string::npos);
  CHECK(std::stoi(all.substr(at + summary.size())) >= 49);
}

}  // namespace master_files_test
