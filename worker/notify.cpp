// worker::Notifier (see notify.h).
#include "worker/notify.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace clusterd::worker {

Notifier::Notifier() {
  const char* p = std::getenv("NOTIFY_SOCKET");
  if (p && *p) *this = Notifier(p);
}

Notifier::Notifier(std::string socket_path) : path_(std::move(socket_path)) {
  if (path_.empty() || path_.size() >= sizeof(sockaddr_un{}.sun_path)) {
    path_.clear();
    return;
  }
  fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd_) path_.clear();
}

bool Notifier::send(std::string_view message) {
  if (!enabled()) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path_.data(), path_.size());
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path_.size());
  ssize_t n = ::sendto(fd_.get(), message.data(), message.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
                       reinterpret_cast<sockaddr*>(&addr), len);
  return n == static_cast<ssize_t>(message.size());
}

}  // namespace clusterd::worker
