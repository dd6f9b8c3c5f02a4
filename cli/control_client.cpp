// The control protocol client and daemon start-up (see cli/control_client.h).
#include "cli/control_client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "master/daemon.h"
#include "master/startup.h"

namespace clusterd::cli {

using nlohmann::json;
using namespace std::chrono;

Result<ControlClient> ControlClient::connect(const std::string& home) {
  std::string path = master::controlSocketPath(home);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) return Error{"control socket path too long: " + path};
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  ControlClient c;
  c.fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!c.fd_) return Error{std::string("socket(): ") + std::strerror(errno)};
  if (::connect(c.fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    return Error{"no daemon answers on " + path + " (" + std::strerror(errno) +
                 "); start one with `clusterd start FILE` or `clusterd daemon`"};
  return c;
}

Result<json> ControlClient::call(const json& request, milliseconds timeout) {
  std::string line = request.dump() + "\n";
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = ::send(fd_.get(), line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error{std::string("sending to the daemon: ") + std::strerror(errno)};
    }
    off += static_cast<size_t>(n);
  }
  auto deadline = steady_clock::now() + timeout;
  for (;;) {
    size_t nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string reply = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      json j = json::parse(reply, nullptr, false);
      if (j.is_discarded()) return Error{"the daemon sent a malformed reply: " + reply};
      return j;
    }
    auto left = duration_cast<milliseconds>(deadline - steady_clock::now()).count();
    if (left <= 0) return Error{"the daemon did not reply within " + std::to_string(timeout.count()) + " ms"};
    pollfd p{fd_.get(), POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno != EINTR) return Error{std::string("poll(): ") + std::strerror(errno)};
    if (r <= 0) continue;
    char buf[65536];
    ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
    if (n == 0) return Error{"the daemon closed the connection"};
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return Error{std::string("reading from the daemon: ") + std::strerror(errno)};
    }
    buffer_.append(buf, static_cast<size_t>(n));
  }
}

DaemonState probeDaemon(const std::string& home) {
  if (ControlClient::connect(home)) return DaemonState::kRunning;
  struct stat st {};
  if (::stat(master::controlSocketPath(home).c_str(), &st) != 0) return DaemonState::kNotRunning;
  // The socket file exists; the daemon holds the lock for as long as it runs.
  UniqueFd lock(::open(master::lockPath(home).c_str(), O_RDWR | O_CLOEXEC));
  if (lock && ::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) return DaemonState::kRunning;
  return DaemonState::kStale;
}

std::string selfExe(const std::string& argv0) {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n > 0) return std::string(buf, static_cast<size_t>(n));
  return argv0;
}

std::string siblingExe(const std::string& self_exe, const std::string& name) {
  return self_exe.substr(0, self_exe.rfind('/') + 1) + name;
}

std::string masterExe(const std::string& self_exe) {
  std::string candidate = siblingExe(self_exe, "clusterd-master");
  return ::access(candidate.c_str(), X_OK) == 0 ? candidate : "";
}

int execDaemon(const std::string& home, const std::string& self_exe) {
  // Workers of builtin:worker apps run `<clusterd> worker …`: give them the
  // full binary directly rather than the front, which would exec it.
  std::string full = siblingExe(self_exe, "clusterd-full");
  std::string worker = ::access(full.c_str(), X_OK) == 0 ? full : self_exe;
  std::string master = masterExe(self_exe);
  if (!master.empty()) {
    ::execl(master.c_str(), master.c_str(), "--home", home.c_str(), "--clusterd", worker.c_str(),
            static_cast<char*>(nullptr));
    std::fprintf(stderr, "clusterd: cannot execute %s: %s; running the daemon in-process\n",
                 master.c_str(), std::strerror(errno));
  }
  return master::runDaemon({home, self_exe, worker});
}

namespace {

// Puts copies of `fd` on `targets` (fds an exec keeps) and closes `fd`.
// A descriptor that landed on 0-2 itself (one of them was closed) is moved
// above them first, since dup2 onto itself would keep close-on-exec set.
void placeOn(UniqueFd fd, std::initializer_list<int> targets) {
  if (fd.get() <= 2) fd.reset(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 3));
  if (!fd) return;
  for (int t : targets) ::dup2(fd.get(), t);
}

}  // namespace

Result<void> startDaemon(const std::string& home, const std::string& self_exe, std::string& note) {
  std::string err;
  if (!master::prepareHome(home, err)) return Error{err};
  // The daemon would refuse this home too, but only after the wait below.
  if (auto r = master::checkHome(home); !r) return r.error();
  if (probeDaemon(home) == DaemonState::kStale) {
    ::unlink(master::controlSocketPath(home).c_str());
    note = "removed a stale control socket left by a daemon that is gone";
  }
  std::string log = master::daemonLogPath(home);
  pid_t pid = ::fork();
  if (pid < 0) return Error{std::string("fork(): ") + std::strerror(errno)};
  if (pid == 0) {
    ::setsid();
    // A background daemon is nobody's service: it must not report to the
    // service manager of whoever ran the CLI.
    ::unsetenv("NOTIFY_SOCKET");
    // Opened close-on-exec and moved onto 0, 1 and 2 only: the daemon, and
    // through it every worker, inherits nothing else of ours.
    {
      UniqueFd in(::open("/dev/null", O_RDONLY | O_CLOEXEC));
      UniqueFd out(
          ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (in) placeOn(std::move(in), {0});
      if (out) placeOn(std::move(out), {1, 2});
    }
    // A second fork so the daemon is not our child (no zombie, no SIGHUP).
    if (::fork() != 0) ::_exit(0);
    ::_exit(execDaemon(home, self_exe));
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  auto deadline = steady_clock::now() + seconds(10);
  while (steady_clock::now() < deadline) {
    if (auto c = ControlClient::connect(home)) {
      if (auto r = c->call({{"cmd", "ping"}}, seconds(5)); r && r->value("ok", false)) return success();
    }
    std::this_thread::sleep_for(milliseconds(5));
  }
  std::ifstream f(log);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string tail = ss.str();
  if (tail.size() > 2000) tail = tail.substr(tail.size() - 2000);
  return Error{"the daemon did not come up within 10 s; " + log + " says:\n" + tail};
}

}  // namespace clusterd::cli
