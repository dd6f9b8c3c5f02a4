// testapp: the worker program the master's integration tests supervise. A
// tiny HTTP/1.1 server on fd 3 (socket activation) or on --port, with
// switches for the misbehaviour a supervisor must handle.
//
//   --ready              send READY=1 to $NOTIFY_SOCKET once serving
//   --ready-delay MS     wait this long before serving and READY=1
//   --ready-file PATH    then also wait until PATH exists (a test opens the gate)
//   --crash-after MS     exit 3 after MS
//   --leak MB            grow RSS by MB MiB every 100 ms
//   --ignore-term        ignore SIGTERM
//   --fork-child FILE    fork a child that sleeps forever; write its pid to FILE
//   --watchdog MS        send WATCHDOG=1 every MS (`auto`: half of $WATCHDOG_USEC) ...
//   --hang-after MS      ... but stop after MS (a hung worker)
//   --stats              send CLUSTERD_STATS={"requests":N} every 100 ms
//   --status TEXT        send STATUS=TEXT at start
//   --say TEXT           print TEXT to stdout and "err: TEXT" to stderr at start
//   --port N             listen on 127.0.0.1:N when no LISTEN_FDS
//   --reuseport          ... with SO_REUSEPORT (several processes on one port, as under
//                        the master; bench/master_accept.py compares the two)
//   --delay MS           each response takes this long
//   --impersonate PID    fork a child that joins process group PID and sends
//                        STATUS=impersonated and WATCHDOG=trigger to $NOTIFY_SOCKET
//                        (and to --other-socket PATH), printing what worked
//
// GET /     -> "pid <pid> instance <CLUSTERD_INSTANCE>\n"
// GET /env  -> LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, CLUSTERD_APP, NODE_APP_INSTANCE,
//              WATCHDOG_USEC, NOTIFY_SOCKET, PID, UID, GID, GROUPS (count of supplementary groups),
//              APP_MODE
// GET /fds  -> the descriptors open when the program started, e.g. "0 1 2 3"
// GET /exit -> exits 4 after answering
// SIGTERM: stop accepting, finish requests, answer each open keep-alive
// connection's next request with "Connection: close" (idle ones are closed
// after 1 s), exit 0 when none are left.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace {

volatile sig_atomic_t g_term = 0;

long long nowMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

// Sends `msg` to the datagram socket at `path` ('@': abstract); "ok" or
// the error.
std::string sendTo(const char* path, const std::string& msg) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  size_t len = std::strlen(path);
  if (len >= sizeof a.sun_path) return "path too long";
  std::memcpy(a.sun_path, path, len);
  if (a.sun_path[0] == '@') a.sun_path[0] = '\0';
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ssize_t n = sendto(fd, msg.data(), msg.size(), 0, reinterpret_cast<sockaddr*>(&a),
                     static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len));
  std::string result = n < 0 ? std::strerror(errno) : "ok";
  close(fd);
  return result;
}

void notify(const std::string& msg) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path && *path) sendTo(path, msg);
}

// A child that moves into process group `victim` and speaks for it on our
// NOTIFY_SOCKET and on `other_socket`; prints what worked and exits.
void impersonate(pid_t victim, const std::string& other_socket) {
  if (fork() != 0) return;
  std::string joined = setpgid(0, victim) == 0 ? "ok" : std::strerror(errno);
  const char* own = std::getenv("NOTIFY_SOCKET");
  std::string msg = "STATUS=impersonated\nWATCHDOG=trigger\n";
  std::string ours = own ? sendTo(own, msg) : "none";
  std::string other = other_socket.empty() ? "none" : sendTo(other_socket.c_str(), msg);
  std::printf("impersonate: setpgid %s; own socket %s; other socket %s\n", joined.c_str(),
              ours.c_str(), other.c_str());
  std::fflush(stdout);
  _exit(0);
}

// The open descriptors, in order, as "0 1 2 …" (the directory's own left out).
std::string openFds() {
  DIR* d = opendir("/proc/self/fd");
  if (!d) return "?";
  std::vector<int> fds;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.' && std::atoi(e->d_name) != dirfd(d))
      fds.push_back(std::atoi(e->d_name));
  closedir(d);
  std::sort(fds.begin(), fds.end());
  std::string out;
  for (int fd : fds) {
    if (!out.empty()) out += ' ';
    out += std::to_string(fd);  // appended: GCC 12 -O3 warns falsely (-Wrestrict) on "…" + string
  }
  return out;
}

struct Conn {
  std::string in;
  long long idle_since = 0;
};

}  // namespace

int main(int argc, char** argv) {
  const std::string fds_at_start = openFds();
  bool ready = false, ignore_term = false, stats = false, reuseport = false;
  long long ready_delay = 0, crash_after = -1, watchdog = 0, hang_after = -1, delay = 0;
  int leak_mb = 0, port = 0;
  std::string fork_file, status, say, ready_file, other_socket;
  pid_t victim = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--ready") ready = true;
    else if (a == "--ready-delay") ready_delay = std::atoll(next().c_str());
    else if (a == "--ready-file") ready_file = next();
    else if (a == "--crash-after") crash_after = std::atoll(next().c_str());
    else if (a == "--leak") leak_mb = std::atoi(next().c_str());
    else if (a == "--ignore-term") ignore_term = true;
    else if (a == "--fork-child") fork_file = next();
    else if (a == "--watchdog") {
      std::string v = next();
      const char* usec = std::getenv("WATCHDOG_USEC");
      watchdog = v == "auto" ? (usec ? std::atoll(usec) / 2000 : 0) : std::atoll(v.c_str());
    }
    else if (a == "--hang-after") hang_after = std::atoll(next().c_str());
    else if (a == "--stats") stats = true;
    else if (a == "--status") status = next();
    else if (a == "--say") say = next();
    else if (a == "--port") port = std::atoi(next().c_str());
    else if (a == "--reuseport") reuseport = true;
    else if (a == "--delay") delay = std::atoll(next().c_str());
    else if (a == "--impersonate")
      victim = std::atoi(next().c_str());
    else if (a == "--other-socket")
      other_socket = next();
    else {
      std::fprintf(stderr, "testapp: unknown option %s\n", a.c_str());
      return 100;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = ignore_term ? SIG_IGN : [](int) { g_term = 1; };
  sigaction(SIGTERM, &sa, nullptr);

  if (!say.empty()) {
    std::printf("%s\n", say.c_str());
    std::fflush(stdout);
    std::fprintf(stderr, "err: %s\n", say.c_str());
  }
  if (victim > 0) impersonate(victim, other_socket);
  if (!fork_file.empty()) {
    pid_t child = fork();
    if (child == 0) {
      signal(SIGTERM, SIG_IGN);  // only SIGKILL of the group removes it
      for (;;) pause();
    }
    FILE* f = std::fopen(fork_file.c_str(), "w");
    if (f) {
      std::fprintf(f, "%d\n", child);
      std::fclose(f);
    }
  }
  if (ready_delay > 0) usleep(static_cast<useconds_t>(ready_delay * 1000));
  while (!ready_file.empty() && access(ready_file.c_str(), F_OK) != 0) usleep(10'000);

  int lfd = -1;
  const char* fds = std::getenv("LISTEN_FDS");
  const char* lpid = std::getenv("LISTEN_PID");
  if (fds && std::atoi(fds) >= 1 && (!lpid || std::atoi(lpid) == getpid())) {
    lfd = 3;
  } else if (port > 0) {
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport) setsockopt(lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(lfd, 128) != 0) {
      std::perror("testapp: bind");
      return 1;
    }
  }
  if (lfd >= 0) fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK);
  if (ready) notify("READY=1");
  if (!status.empty()) notify("STATUS=" + status);

  std::map<int, Conn> conns;
  std::vector<char*> leaked;
  long long start = nowMs(), last_leak = start, last_wd = 0, last_stats = 0, term_at = 0;
  unsigned long long requests = 0;
  bool draining = false;
  std::string instance = std::getenv("CLUSTERD_INSTANCE") ? std::getenv("CLUSTERD_INSTANCE") : "-";

  for (;;) {
    long long now = nowMs();
    if (crash_after >= 0 && now - start >= crash_after) return 3;
    if (leak_mb > 0 && now - last_leak >= 100) {
      last_leak = now;
      size_t n = static_cast<size_t>(leak_mb) << 20;
      char* p = static_cast<char*>(std::malloc(n));
      if (p) {
        std::memset(p, 1, n);
        leaked.push_back(p);
      }
    }
    if (watchdog > 0 && now - last_wd >= watchdog && (hang_after < 0 || now - start < hang_after)) {
      last_wd = now;
      notify("WATCHDOG=1");
    }
    if (stats && now - last_stats >= 100) {
      last_stats = now;
      notify("CLUSTERD_STATS={\"requests\":" + std::to_string(requests) + "}");
    }
    if (g_term && !draining) {
      draining = true;
      term_at = now;
      if (lfd >= 0) close(lfd);
      lfd = -1;
    }
    if (draining) {
      for (auto it = conns.begin(); it != conns.end();) {
        if (it->second.in.empty() && now - it->second.idle_since >= 1000) {
          close(it->first);
          it = conns.erase(it);
        } else {
          ++it;
        }
      }
      if (conns.empty()) return 0;
      (void)term_at;
    }
    std::vector<pollfd> pfds;
    if (lfd >= 0) pfds.push_back({lfd, POLLIN, 0});
    for (auto& [fd, c] : conns) pfds.push_back({fd, POLLIN, 0});
    int rc = poll(pfds.data(), pfds.size(), 20);
    if (rc <= 0) continue;
    for (auto& p : pfds) {
      if (!p.revents) continue;
      if (p.fd == lfd) {
        for (;;) {
          int c = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
          if (c < 0) break;
          conns[c].idle_since = nowMs();
        }
        continue;
      }
      char buf[8192];
      ssize_t n = read(p.fd, buf, sizeof buf);
      if (n <= 0) {
        close(p.fd);
        conns.erase(p.fd);
        continue;
      }
      Conn& c = conns[p.fd];
      c.in.append(buf, static_cast<size_t>(n));
      bool closed = false;
      size_t end;
      while (!closed && (end = c.in.find("\r\n\r\n")) != std::string::npos) {
        std::string head = c.in.substr(0, end);
        c.in.erase(0, end + 4);
        ++requests;
        if (delay > 0) usleep(static_cast<useconds_t>(delay * 1000));
        std::string path = head.substr(head.find(' ') + 1);
        path = path.substr(0, path.find(' '));
        std::string body;
        if (path == "/env") {
          for (const char* k :
               {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "CLUSTERD_APP", "CLUSTERD_INSTANCE",
                "NODE_APP_INSTANCE", "WATCHDOG_USEC", "NOTIFY_SOCKET"}) {
            const char* v = std::getenv(k);
            body += std::string(k) + "=" + (v ? v : "") + "\n";
          }
          body += "PID=" + std::to_string(getpid()) + "\n";
          body += "UID=" + std::to_string(getuid()) + "\nGID=" + std::to_string(getgid()) + "\n";
          gid_t groups[64];
          int ng = getgroups(64, groups);
          body += "GROUPS=" + std::to_string(ng) + "\n";
          const char* mode = std::getenv("APP_MODE");
          body += std::string("APP_MODE=") + (mode ? mode : "") + "\n";
        } else if (path == "/fds") {
          body = fds_at_start + "\n";
        } else {
          body = "pid " + std::to_string(getpid()) + " instance " + instance + "\n";
        }
        bool close_after = draining || head.find("Connection: close") != std::string::npos ||
                           path == "/exit";
        std::string resp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                           std::to_string(body.size()) + "\r\n" +
                           (close_after ? "Connection: close\r\n" : "") + "\r\n" + body;
        size_t off = 0;
        while (off < resp.size()) {
          ssize_t w = write(p.fd, resp.data() + off, resp.size() - off);
          if (w <= 0) break;
          off += static_cast<size_t>(w);
        }
        if (path == "/exit") return 4;
        if (close_after) {
          close(p.fd);
          conns.erase(p.fd);
          closed = true;
        }
      }
      if (!closed) conns[p.fd].idle_since = nowMs();
    }
  }
}
