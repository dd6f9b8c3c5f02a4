// The sd_notify server (see master/notify.h).
#include "master/notify.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

namespace clusterd::master {

namespace {
constexpr size_t kMaxDatagram = 8192;  // larger notifications are truncated and dropped
}

NotifyServer::NotifyServer(uv_loop_t* loop, Handler handler)
    : loop_(loop), handler_(std::move(handler)) {}

Result<std::string> NotifyServer::start(const std::string& name) {
  fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd_) return Error{std::string("notify socket: socket(): ") + std::strerror(errno)};
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (name.size() + 1 >= sizeof a.sun_path) return Error{"notify socket name too long: " + name};
  std::memcpy(a.sun_path + 1, name.data(), name.size());  // sun_path[0] = 0: abstract
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), len) != 0)
    return Error{"notify socket @" + name + ": bind(): " + std::strerror(errno)};
  int one = 1;
  if (::setsockopt(fd_.get(), SOL_SOCKET, SO_PASSCRED, &one, sizeof one) != 0)
    return Error{std::string("notify socket: setsockopt(SO_PASSCRED): ") + std::strerror(errno)};
  uv_poll_init(loop_, poll_.get(), fd_.get());
  poll_->data = this;
  uv_poll_start(poll_.get(), UV_READABLE, [](uv_poll_t* h, int status, int) {
    if (status == 0 && h->data) static_cast<NotifyServer*>(h->data)->drain();
  });
  return "@" + name;
}

void NotifyServer::drain() {
  char buf[kMaxDatagram];
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
  for (int i = 0; i < 64; ++i) {  // bounded: other events get their turn
    iovec iov{buf, sizeof buf};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(fd_.get(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) return;  // EAGAIN: drained
    if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) continue;
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
    if (pid > 0) handler_(pid, std::string_view(buf, static_cast<size_t>(n)));
  }
}

}  // namespace clusterd::master
