// The daemon's start-up checks (see master/startup.h).
#include "master/startup.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "common/uv_handle.h"

namespace clusterd::master {

namespace {

std::string octal(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

std::string userName(uid_t uid) {
  struct passwd* pw = ::getpwuid(uid);
  return pw ? std::string(pw->pw_name) : std::to_string(uid);
}

// One file or directory of the home: owned by `uid`, not writable by group
// or others. Symbolic links have no mode of their own, and a socket's mode
// says who may connect, which the daemon sets itself when it binds a new
// one: only their owner counts.
Result<void> checkEntry(const std::string& path, const struct stat& st, uid_t uid) {
  if (st.st_uid != uid)
    return Error{"home " + path + " belongs to " + userName(st.st_uid) + ", not to " +
                 userName(uid) + " who runs the daemon; `chown " + userName(uid) + " " + path +
                 "` or use another --home"};
  if (!S_ISLNK(st.st_mode) && !S_ISSOCK(st.st_mode) && (st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
    return Error{"home " + path + " is writable by its group or by others (mode " +
                 octal(st.st_mode) + "); `chmod go-w " + path + "`"};
  return success();
}

// The entries of one directory of the home.
Result<void> checkEntries(const std::string& dir, uid_t uid) {
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
  if (!d) {
    if (errno == ENOENT) return success();
    return Error{"opendir " + dir + ": " + std::strerror(errno)};
  }
  int count = 0;
  while (dirent* e = ::readdir(d.get())) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    if (++count > 100'000) break;  // bounded; a home is a handful of files
    struct stat st {};
    std::string path = dir + "/" + name;
    if (::fstatat(::dirfd(d.get()), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone
    auto r = checkEntry(path, st, uid);
    if (!r) return r;
  }
  return success();
}

}  // namespace

Result<void> checkHome(const std::string& home) {
  uid_t uid = ::geteuid();
  char resolved[PATH_MAX];
  if (!::realpath(home.c_str(), resolved))
    return Error{"home " + home + ": " + std::strerror(errno)};
  std::string real = resolved;
  struct stat st {};
  if (::lstat(real.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return Error{"home " + home + " is not a directory"};
  auto r = checkEntry(real, st, uid);
  if (!r) return r;
  // Each parent: whoever may write it can rename the home away and put
  // another in its place, unless the sticky bit keeps them to their own
  // entries (the next component is ours, checked above or below).
  for (std::string dir = real; dir != "/";) {
    dir = dir.substr(0, dir.rfind('/'));
    if (dir.empty()) dir.assign(1, '/');  // not = "/": GCC 12 -O3 warns falsely (-Wrestrict)
    if (::lstat(dir.c_str(), &st) != 0)
      return Error{"home " + home + ": stat " + dir + ": " + std::strerror(errno)};
    if (st.st_uid != uid && st.st_uid != 0)
      return Error{"home " + home + ": its parent " + dir + " belongs to " + userName(st.st_uid) +
                   ", who could replace the home; use a home under a directory of root's or " +
                   userName(uid) + "'s"};
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (st.st_mode & S_ISVTX) == 0)
      return Error{"home " + home + ": its parent " + dir +
                   " is writable by its group or by others (mode " + octal(st.st_mode) +
                   "), who could replace the home; `chmod go-w " + dir + "` or use another --home"};
  }
  r = checkEntries(real, uid);
  if (!r) return r;
  return checkEntries(real + "/logs", uid);
}

void closeInheritedOnExec() {
  if (::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return;
  // Kernels before 5.11: one descriptor at a time.
  std::vector<int> fds;
  {
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir("/proc/self/fd"), ::closedir);
    if (!d) return;
    while (dirent* e = ::readdir(d.get())) {
      int fd = std::atoi(e->d_name);
      if (fd > 2 && fd != ::dirfd(d.get())) fds.push_back(fd);
    }
  }
  for (int fd : fds) ::fcntl(fd, F_SETFD, ::fcntl(fd, F_GETFD) | FD_CLOEXEC);
}

}  // namespace clusterd::master
