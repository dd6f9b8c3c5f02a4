// The sd_notify server (see master/notify.h).
#include "master/notify.h"

#include <dirent.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/log.h"

namespace clusterd::master {

namespace {

constexpr size_t kMaxDatagram = 8192;  // larger notifications are truncated and dropped
constexpr uint32_t kDefaultRate = 1000;
constexpr std::string_view kNotifyLog = "notify";

// A directory of root's (the daemon's user) that others may traverse but
// neither list nor write.
Result<void> ensureRuntimeDir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0711) != 0 && errno != EEXIST)
    return Error{"mkdir " + dir + ": " + std::strerror(errno)};
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) return Error{"stat " + dir + ": " + std::strerror(errno)};
  if (!S_ISDIR(st.st_mode) || st.st_uid != ::geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
    return Error{dir +
                 " is not a directory of the daemon's user that only it may write; remove it and "
                 "start the app again"};
  if ((st.st_mode & 07777) != 0711 && ::chmod(dir.c_str(), 0711) != 0)
    return Error{"chmod " + dir + ": " + std::strerror(errno)};
  return success();
}

}  // namespace

bool NotifyRateLimit::allow(pid_t sender, uint64_t now_ms, bool& first_drop) {
  first_drop = false;
  uint64_t window = now_ms / 1000;
  if (window != window_) {
    window_ = window;
    counts_.clear();
  }
  auto it = counts_.find(sender);
  if (it == counts_.end()) {
    if (counts_.size() >= max_senders_) return false;
    it = counts_.emplace(sender, 0).first;
  }
  if (it->second >= per_second_) {
    first_drop = it->second == per_second_;
    it->second = per_second_ + 1;
    return false;
  }
  ++it->second;
  return true;
}

uint32_t notifyRateFromEnvironment() {
  const char* v = std::getenv("CLUSTERD_NOTIFY_RATE");
  if (!v || !*v) return kDefaultRate;
  char* end = nullptr;
  unsigned long n = std::strtoul(v, &end, 10);
  if (*end != '\0' || n == 0 || n > 1'000'000) {
    log::warn(kNotifyLog, "CLUSTERD_NOTIFY_RATE={} is not a number from 1 to 1000000; using {}", v,
              kDefaultRate);
    return kDefaultRate;
  }
  return static_cast<uint32_t>(n);
}

std::string notifyRuntimeDir() {
  const char* d = std::getenv("RUNTIME_DIRECTORY");  // systemd; the first of a list
  if (d && *d == '/') return std::string(d).substr(0, std::string(d).find(':'));
  return "/run/clusterd";
}

std::string homeId(const std::string& home) {
  char real[PATH_MAX];
  std::string path = ::realpath(home.c_str(), real) ? real : home;
  uint64_t h = 14695981039346656037ULL;  // FNV-1a
  for (unsigned char c : path) h = (h ^ c) * 1099511628211ULL;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

struct NotifyServer::Socket {
  NotifyServer* owner = nullptr;
  std::string path, tag;
  UniqueFd fd;
  UvHandle<uv_poll_t> poll;  // declared after fd: stops polling before the fd closes
  ~Socket() {
    poll.reset();
    if (!path.empty()) ::unlink(path.c_str());
  }
};

NotifyServer::NotifyServer(uv_loop_t* loop, Handler handler, uint32_t rate_per_second)
    : loop_(loop), handler_(std::move(handler)), limit_(rate_per_second) {}

NotifyServer::~NotifyServer() {
  main_.reset();
  apps_.clear();
  if (!app_dir_.empty()) ::rmdir(app_dir_.c_str());
}

Result<std::unique_ptr<NotifyServer::Socket>> NotifyServer::bindSocket(const std::string& path,
                                                                       const std::string& tag) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path)
    return Error{"notify socket " + path + ": the path is longer than " +
                 std::to_string(sizeof a.sun_path - 1) + " bytes; use a shorter --home"};
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  auto s = std::make_unique<Socket>();
  s->owner = this;
  s->tag = tag;
  s->fd.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!s->fd) return Error{"notify socket " + path + ": socket(): " + std::strerror(errno)};
  // Linux gives the socket file the socket's mode at bind: owner-only from
  // the first moment, whatever the umask.
  ::fchmod(s->fd.get(), 0600);
  ::unlink(path.c_str());  // stale, from a daemon that is gone (we hold the home's lock)
  if (::bind(s->fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    return Error{"notify socket " + path + ": bind(): " + std::strerror(errno)};
  s->path = path;
  if (::chmod(path.c_str(), 0600) != 0)
    return Error{"notify socket " + path + ": chmod(): " + std::strerror(errno)};
  int one = 1;
  if (::setsockopt(s->fd.get(), SOL_SOCKET, SO_PASSCRED, &one, sizeof one) != 0)
    return Error{"notify socket " + path + ": setsockopt(SO_PASSCRED): " + std::strerror(errno)};
  uv_poll_init(loop_, s->poll.get(), s->fd.get());
  s->poll->data = s.get();
  uv_poll_start(s->poll.get(), UV_READABLE, [](uv_poll_t* h, int status, int) {
    auto* sock = static_cast<Socket*>(h->data);
    if (status == 0 && sock) sock->owner->drain(*sock);
  });
  return s;
}

Result<std::string> NotifyServer::start(const std::string& path) {
  auto s = bindSocket(path, "");
  if (!s) return s.error();
  main_ = std::move(*s);
  return path;
}

Result<std::string> NotifyServer::openAppSocket(const std::string& app, uid_t uid, gid_t gid,
                                                const std::string& runtime_dir,
                                                const std::string& home_id) {
  closeAppSocket(app);
  std::string dir = runtime_dir + "/" + home_id;
  for (const std::string& d : {runtime_dir, dir})
    if (auto r = ensureRuntimeDir(d); !r) return Error{"notify socket: " + r.error().message};
  app_dir_ = dir;
  std::string path = dir + "/" + std::to_string(next_app_socket_++) + ".sock";
  auto s = bindSocket(path, app);
  if (!s) return s.error();
  if (::lchown(path.c_str(), uid, gid) != 0)
    return Error{"notify socket " + path + ": chown(): " + std::strerror(errno)};
  apps_[app] = std::move(*s);
  return path;
}

void NotifyServer::closeAppSocket(const std::string& app) {
  apps_.erase(app);
}

void NotifyServer::drain(Socket& s) {
  char buf[kMaxDatagram];
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(sizeof(int) * 16)];
  for (int i = 0; i < 64; ++i) {  // bounded: other events get their turn
    iovec iov{buf, sizeof buf};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(s.fd.get(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) return;  // EAGAIN: drained
    pid_t pid = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
        ucred cred{};
        std::memcpy(&cred, CMSG_DATA(c), sizeof cred);
        pid = cred.pid;
      } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        // Passed fds (FDSTORE) are not supported: close them.
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t k = 0; k < count; ++k) {
          int fd;
          std::memcpy(&fd, CMSG_DATA(c) + k * sizeof(int), sizeof fd);
          UniqueFd closer(fd);
        }
      }
    }
    if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) continue;
    if (pid <= 0) continue;
    bool first_drop = false;
    uint64_t now = uv_now(loop_);
    if (!limit_.allow(pid, now, first_drop)) {
      if (first_drop && now - last_drop_log_ >= 1000) {
        last_drop_log_ = now;
        log::warn(kNotifyLog,
                  "pid {} sent more notifications in one second than CLUSTERD_NOTIFY_RATE allows; "
                  "the rest of this second's are dropped",
                  pid);
      }
      continue;
    }
    handler_(pid, s.tag, std::string_view(buf, static_cast<size_t>(n)));
  }
}

}  // namespace clusterd::master
