// Implementation of tests/master/daemon_fixture.h.
#include "tests/master/daemon_fixture.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>

#include "cli/control_client.h"

namespace clusterd::master::test {

using namespace std::chrono;
using clusterd::test::waitFor;

DaemonUnderTest::DaemonUnderTest(std::string home)
    : home_path_(home.empty() ? home_.path() : std::move(home)) {
  launch();
}

std::string DaemonUnderTest::output() const { return clusterd::test::readFile(home_.file("daemon.out")); }

void DaemonUnderTest::startAgain() {
  if (child_) throw std::logic_error("startAgain() while a daemon runs");
  launch();
}

void DaemonUnderTest::launch() {
  child_ = std::make_unique<clusterd::test::Child>(
      std::vector<std::string>{CLUSTERD_BIN, "--home", home_path_, "daemon", "--foreground"},
      std::map<std::string, std::string>{}, home_.file("daemon.out"));
  bool up = waitFor([&] { return cli::ControlClient::connect(home_path_).ok(); }, seconds(10));
  if (!up) throw std::runtime_error("daemon did not start: " + output());
}

DaemonUnderTest::~DaemonUnderTest() {
  if (!child_) return;
  child_->signal(SIGTERM);
  if (child_->wait(seconds(15)) == -1) child_->signal(SIGKILL);
}

void DaemonUnderTest::crash() {
  child_->signal(SIGKILL);
  child_->wait(seconds(10));
  child_.reset();
}

json DaemonUnderTest::call(const json& request) {
  auto c = cli::ControlClient::connect(home_path_);
  if (!c) throw std::runtime_error(c.error().message);
  auto r = c->call(request, seconds(30));
  if (!r) throw std::runtime_error(r.error().message);
  return *r;
}

json DaemonUnderTest::start(const AppConfig& app) {
  return call({{"cmd", "start"}, {"apps", json::array({appToJson(app)})}});
}

bool DaemonUnderTest::waitOnline(const std::string& app, size_t count, milliseconds timeout) {
  return waitFor(
      [&] {
        size_t online = 0;
        for (auto& w : status()) {
          if (w["app"] != app) continue;
          if (w["role"] != "main") return false;
          if (w["state"] == "online") ++online;
        }
        return online == count;
      },
      timeout);
}

std::vector<pid_t> DaemonUnderTest::pids(const std::string& app) {
  std::vector<pid_t> out;
  for (auto& w : status())
    if (w["app"] == app && w["role"] == "main") out.push_back(w["pid"].get<pid_t>());
  return out;
}

clusterd::test::RunResult DaemonUnderTest::cli(const std::vector<std::string>& args,
                                               const std::map<std::string, std::string>& env) {
  std::vector<std::string> a{"--home", home_path_};
  a.insert(a.end(), args.begin(), args.end());
  clusterd::test::RunOptions o;
  o.env = env;
  return clusterd::test::runClusterd(a, o);
}

AppConfig testApp(const std::string& name, int instances, int port, std::vector<std::string> args) {
  AppConfig a;
  a.spec.name = name;
  a.spec.script = MASTER_TESTAPP;
  a.spec.args = std::move(args);
  a.spec.instances = instances;
  a.spec.kill_timeout = milliseconds(3000);
  a.base_dir = "/tmp";
  if (port > 0) {
    a.spec.exec_mode = config::ExecMode::kCluster;
    config::ListenAddress l;
    l.host = "127.0.0.1";
    l.port = static_cast<uint16_t>(port);
    l.text = "127.0.0.1:" + std::to_string(port);
    a.spec.listen = l;
  }
  return a;
}

namespace {

int connectTo(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Sends one request and reads one response; false on any failure.
bool exchange(int fd, const std::string& path, bool keep_alive, std::string& body, bool& server_closes) {
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: t\r\n" +
                    (keep_alive ? "" : "Connection: close\r\n") + "\r\n";
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) return false;
  std::string in;
  char buf[4096];
  for (;;) {
    size_t end = in.find("\r\n\r\n");
    if (end != std::string::npos) {
      std::string head = in.substr(0, end);
      size_t cl = head.find("Content-Length: ");
      if (cl == std::string::npos) return false;
      size_t len = std::stoul(head.substr(cl + 16));
      if (in.size() >= end + 4 + len) {
        body = in.substr(end + 4, len);
        server_closes = head.find("Connection: close") != std::string::npos;
        return true;
      }
    }
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return false;
    in.append(buf, static_cast<size_t>(n));
  }
}

}  // namespace

std::string httpGet(int port, const std::string& path) {
  int fd = connectTo(port);
  if (fd < 0) return "";
  std::string body;
  bool closes = false;
  bool ok = exchange(fd, path, false, body, closes);
  ::close(fd);
  return ok ? body : "";
}

bool processAlive(pid_t pid) {
  if (pid <= 0) return false;
  if (::kill(pid, 0) != 0) return false;
  // A zombie still answers kill(0): check its state.
  std::string stat = clusterd::test::readFile("/proc/" + std::to_string(pid) + "/stat");
  size_t close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
}

LoadLoop::LoadLoop(int port, int connections, milliseconds max_time, int max_requests)
    : port_(port), deadline_(steady_clock::now() + max_time), max_requests_(max_requests) {
  for (int i = 0; i < connections; ++i) threads_.emplace_back([this] { run(); });
}

LoadLoop::~LoadLoop() { stop(); }

void LoadLoop::stop() {
  stop_ = true;
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

std::set<std::string> LoadLoop::bodies() {
  std::lock_guard<std::mutex> lock(mu_);
  return bodies_;
}

void LoadLoop::run() {
  int fd = -1;
  while (!stop_ && steady_clock::now() < deadline_ && ok_ + failed_ < max_requests_) {
    if (fd < 0) fd = connectTo(port_);
    if (fd < 0) {
      ++failed_;
      std::this_thread::sleep_for(milliseconds(5));
      continue;
    }
    std::string body;
    bool closes = false;
    if (exchange(fd, "/", true, body, closes)) {
      ++ok_;
      {
        std::lock_guard<std::mutex> lock(mu_);
        bodies_.insert(body);
      }
      if (closes) {
        ::close(fd);
        fd = -1;
      }
    } else {
      ++failed_;
      ::close(fd);
      fd = -1;
    }
  }
  if (fd >= 0) ::close(fd);
}

}  // namespace clusterd::master::test
