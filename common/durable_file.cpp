// Implementation of common/durable_file.h.
#include "common/durable_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/uv_handle.h"

namespace clusterd {
namespace {

// `err` defaults to errno as it is at the call, before any allocation here.
Error failure(const std::string& call, const std::string& file, int err = errno) {
  return Error{call + " " + file + ": " + std::strerror(err)};
}

std::string directoryOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

Result<void> writeAll(int fd, std::string_view data, const std::string& file) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return failure("write", file);
    if (n == 0) {
      errno = EIO;
      return failure("write", file);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return success();
}

Result<void> writeSynced(const std::string& tmp, std::string_view data, mode_t mode) {
  // O_NOFOLLOW: a link planted at the temporary name is refused, not written through.
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode));
  if (!fd) return failure("open", tmp);
  // A temporary file left by an earlier try keeps its old mode under
  // O_CREAT; the file may hold secrets (a dump holds environments), so its
  // mode is set, not inherited.
  if (::fchmod(fd.get(), mode) != 0) return failure("fchmod", tmp);
  if (auto w = writeAll(fd.get(), data, tmp); !w) return w;
  if (::fsync(fd.get()) != 0) return failure("fsync", tmp);
  // close(2) reports late write errors (NFS and others): check it too.
  if (::close(fd.release()) != 0) return failure("close", tmp);
  return success();
}

}  // namespace

Result<void> replaceFileDurably(const std::string& path, std::string_view data, mode_t mode) {
  const std::string tmp = path + ".tmp";
  auto written = writeSynced(tmp, data, mode);
  if (written && ::rename(tmp.c_str(), path.c_str()) != 0) written = failure("rename", tmp);
  if (!written) {
    ::unlink(tmp.c_str());
    return Error{written.error().message + "; " + path + " is unchanged"};
  }
  // The rename is durable only once the directory entry is.
  const std::string dir = directoryOf(path);
  UniqueFd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!d || ::fsync(d.get()) != 0) {
    return Error{failure("fsync", dir).message + "; " + path +
                 " was replaced but may not survive a crash"};
  }
  return success();
}

}  // namespace clusterd
