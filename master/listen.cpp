// Binding the listening sockets of cluster-mode apps (see master/listen.h).
#include "master/listen.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace clusterd::master {
namespace {

struct Resolved {
  sockaddr_storage addr{};
  socklen_t len = 0;
  int family = AF_INET;
};

Result<Resolved> resolve(const std::string& host, uint16_t port, const std::string& text) {
  Resolved r;
  std::string h = host.empty() ? "0.0.0.0" : host;
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&r.addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&r.addr);
  if (inet_pton(AF_INET, h.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    r.len = sizeof(sockaddr_in);
    r.family = AF_INET;
    return r;
  }
  if (inet_pton(AF_INET6, h.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    r.len = sizeof(sockaddr_in6);
    r.family = AF_INET6;
    return r;
  }
  if (h == "localhost") return resolve("127.0.0.1", port, text);
  return Error{"listen " + text + ": host \"" + host +
               "\" is not an IP address (use e.g. 127.0.0.1, 0.0.0.0 or ::1)"};
}

Result<UniqueFd> bindTcp(const std::string& host, uint16_t port, const std::string& text,
                         bool reuseport) {
  auto r = resolve(host, port, text);
  if (!r) return r.error();
  UniqueFd fd(::socket(r->family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Error{"listen " + text + ": socket(): " + std::strerror(errno)};
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuseport && ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
    return Error{"listen " + text + ": setsockopt(SO_REUSEPORT): " + std::strerror(errno)};
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&r->addr), r->len) != 0) {
    int e = errno;
    if (e == EADDRINUSE)
      return Error{"listen " + text +
                   ": address already in use; another process listens there (find it with "
                   "`ss -ltnp`) or pick another port"};
    return Error{"listen " + text + ": bind(): " + std::strerror(e)};
  }
  if (::listen(fd.get(), 1024) != 0)
    return Error{"listen " + text + ": listen(): " + std::strerror(errno)};
  return fd;
}

}  // namespace

Result<uint16_t> probeTcpPort(const std::string& host, uint16_t port, const std::string& text) {
  auto fd = bindTcp(host, port, text, false);
  if (!fd) return fd.error();
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  ::getsockname(fd->get(), reinterpret_cast<sockaddr*>(&a), &len);
  if (a.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&a)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&a)->sin_port);
}

Result<UniqueFd> bindTcpReusePort(const std::string& host, uint16_t port, const std::string& text) {
  return bindTcp(host, port, text, true);
}

Result<UniqueFd> bindUnix(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path)
    return Error{"listen " + path + ": path longer than " + std::to_string(sizeof a.sun_path - 1) +
                 " bytes; use a shorter path"};
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Error{"listen " + path + ": socket(): " + std::strerror(errno)};
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return Error{"listen " + path + ": a file that is not a socket exists there; remove it"};
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0)
      return Error{"listen " + path + ": another process listens on this socket"};
    ::unlink(path.c_str());  // stale socket from a process that is gone
  }
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    return Error{"listen " + path + ": bind(): " + std::strerror(errno)};
  if (::listen(fd.get(), 1024) != 0)
    return Error{"listen " + path + ": listen(): " + std::strerror(errno)};
  return fd;
}

}  // namespace clusterd::master
