// Worker log files with size rotation (see master/logs.h).
#include "master/logs.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "common/log.h"

namespace clusterd::master {

namespace {
constexpr size_t kMaxPartialLine = 64 * 1024;  // a longer "line" is cut there

bool writableBy(const struct stat& st, const LogUser& u) {
  return (st.st_uid == u.uid && (st.st_mode & S_IWUSR)) ||
         (st.st_gid == u.gid && (st.st_mode & S_IWGRP)) || (st.st_mode & S_IWOTH);
}

std::string userName(uid_t uid) {
  struct passwd* pw = ::getpwuid(uid);
  return pw ? std::string(pw->pw_name) : "uid " + std::to_string(uid);
}

std::string dirRefusal(const std::string& dir, const LogUser& u) {
  return "log directory " + dir + " is writable by " + userName(u.uid) +
         ", who runs the app and could swap the log for a link to another file; put its logs in a "
         "directory only root can write (the default, <home>/logs, is one)";
}

}  // namespace

void rotateFiles(int dir_fd, const std::string& name, int retain) {
  if (retain <= 0) {
    ::unlinkat(dir_fd, name.c_str(), 0);
    return;
  }
  for (int i = retain - 1; i >= 1; --i) {
    std::string from = name + "." + std::to_string(i);
    std::string to = name + "." + std::to_string(i + 1);
    ::renameat(dir_fd, from.c_str(), dir_fd, to.c_str());  // renames a link, never its target
  }
  ::renameat(dir_fd, name.c_str(), dir_fd, (name + ".1").c_str());
}

LogFile::LogFile(std::string path, uint64_t max_size, int retain, std::string date_format,
                 std::optional<LogUser> untrusted)
    : path_(std::move(path)),
      max_size_(max_size),
      retain_(retain),
      date_format_(std::move(date_format)),
      untrusted_(std::move(untrusted)) {
  openDir();
  if (dir_ && refusal_.empty()) open();
}

// Opens the file's directory component by component from "/", along its
// canonical path (links the operator made are resolved first), never
// following a link on the way: what is checked is what is held.
void LogFile::openDir() {
  size_t slash = path_.rfind('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path_.substr(0, slash);
  name_ = slash == std::string::npos ? path_ : path_.substr(slash + 1);
  if (name_.empty() || name_ == "." || name_ == "..") {
    refusal_ = "log file " + path_ + " names a directory; name a file";
    return;
  }
  char real[PATH_MAX];
  if (!::realpath(dir.c_str(), real)) {
    log::error("logs", "{}: {}; this app's output is dropped", dir, std::strerror(errno));
    return;
  }
  UniqueFd cur(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
  std::string at = "/";
  struct stat st {};
  std::string_view rest(real);
  while (cur) {
    if (::fstat(cur.get(), &st) != 0) break;
    while (!rest.empty() && rest.front() == '/') rest.remove_prefix(1);
    if (rest.empty()) break;
    std::string part(rest.substr(0, rest.find('/')));
    rest.remove_prefix(part.size());
    if (untrusted_ && writableBy(st, *untrusted_)) {
      // A sticky directory (/tmp) keeps the user to their own entries.
      struct stat child {};
      bool sticky = (st.st_mode & S_ISVTX) != 0;
      if (!sticky || (::fstatat(cur.get(), part.c_str(), &child, AT_SYMLINK_NOFOLLOW) == 0 &&
                      child.st_uid == untrusted_->uid)) {
        refusal_ = dirRefusal(at, *untrusted_);
        return;
      }
    }
    cur.reset(::openat(cur.get(), part.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    at += (at == "/" ? "" : "/") + part;
  }
  if (!cur) {
    log::error("logs", "{}: {}; this app's output is dropped", at, std::strerror(errno));
    return;
  }
  if (untrusted_ && writableBy(st, *untrusted_)) {
    refusal_ = dirRefusal(at, *untrusted_);
    return;
  }
  dir_ = std::move(cur);
}

void LogFile::open() {
  fd_.reset(::openat(dir_.get(), name_.c_str(),
                     O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC,
                     0640));
  if (!fd_) {
    if (errno == ELOOP)
      refusal_ =
          "log file " + path_ +
          " is a symbolic link; clusterd does not follow links for log files: name the file itself";
    else
      log::error("logs", "open({}): {}; this app's output is dropped", path_, std::strerror(errno));
    return;
  }
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0) {
    fd_.reset();
    return;
  }
  if (S_ISCHR(st.st_mode)) {
    regular_ = false;  // /dev/null and the like: never rotated
  } else if (!S_ISREG(st.st_mode)) {
    refusal_ = "log file " + path_ +
               " is neither a regular file nor a character device (such as /dev/null)";
  } else if (untrusted_ && st.st_nlink > 1) {
    refusal_ = "log file " + path_ +
               " has other hard links, so writing it would change another file; remove it";
  }
  if (!refusal_.empty()) {
    fd_.reset();
    return;
  }
  size_ = S_ISREG(st.st_mode) ? static_cast<uint64_t>(st.st_size) : 0;
}

void LogFile::rotate() {
  fd_.reset();
  rotateFiles(dir_.get(), name_, retain_);
  open();
  if (!refusal_.empty()) log::error("logs", "{}; this app's output is dropped", refusal_);
}

void LogFile::truncate() {
  if (!dir_) return;
  for (int i = 1; i <= retain_; ++i)
    ::unlinkat(dir_.get(), (name_ + "." + std::to_string(i)).c_str(), 0);
  if (fd_ && regular_ && ::ftruncate(fd_.get(), 0) == 0) size_ = 0;
}

void LogFile::writeLines(std::string_view lines) {
  if (!fd_) return;
  std::string out;
  if (!date_format_.empty()) {
    char stamp[128];
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    localtime_r(&t, &tm);
    size_t n = std::strftime(stamp, sizeof stamp, date_format_.c_str(), &tm);
    std::string prefix(stamp, n);
    prefix += ": ";
    size_t start = 0;
    while (start < lines.size()) {
      size_t nl = lines.find('\n', start);
      size_t end = nl == std::string_view::npos ? lines.size() : nl + 1;
      out += prefix;
      out.append(lines.substr(start, end - start));
      start = end;
    }
    lines = out;
  }
  if (regular_ && max_size_ > 0 && size_ > 0 && size_ + lines.size() > max_size_) rotate();
  if (!fd_) return;
  ssize_t n = ::write(fd_.get(), lines.data(), lines.size());
  if (n > 0) size_ += static_cast<uint64_t>(n);
}

void LineSplitter::feed(std::string_view data) {
  size_t last_nl = data.rfind('\n');
  if (last_nl == std::string_view::npos) {
    partial_.append(data);
    if (partial_.size() >= kMaxPartialLine) finish();
    return;
  }
  if (partial_.empty()) {
    file_->writeLines(data.substr(0, last_nl + 1));
  } else {
    partial_.append(data.substr(0, last_nl + 1));
    file_->writeLines(partial_);
    partial_.clear();
  }
  partial_.append(data.substr(last_nl + 1));
}

void LineSplitter::finish() {
  if (partial_.empty()) return;
  partial_ += '\n';
  file_->writeLines(partial_);
  partial_.clear();
}

}  // namespace clusterd::master
