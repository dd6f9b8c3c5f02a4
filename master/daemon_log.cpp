// The daemon's rotating, repeat-collapsing log (see master/daemon_log.h).
#include "master/daemon_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include "common/log.h"
#include "master/daemon.h"
#include "master/logs.h"

namespace clusterd::master {
namespace {
constexpr const char* kName = "daemon.log";
}

DaemonLog::DaemonLog(std::string home, uint64_t max_size, int retain)
    : home_(std::move(home)), max_size_(max_size), retain_(retain) {}

DaemonLog::~DaemonLog() {
  if (!adopted_) return;
  flushRepeats();
  log::setSink({});
}

bool DaemonLog::adopt() {
  struct stat err {};
  struct stat file {};
  if (::fstat(STDERR_FILENO, &err) != 0 || ::stat(daemonLogPath(home_).c_str(), &file) != 0 ||
      err.st_dev != file.st_dev || err.st_ino != file.st_ino)
    return false;
  dir_.reset(::open(home_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir_) return false;
  adopted_ = true;
  log::setSink([this](std::string_view line, std::string_view key) { write(line, key); });
  return true;
}

void DaemonLog::write(std::string_view line, std::string_view key) {
  auto now = std::chrono::steady_clock::now();
  if (key == last_key_) {
    if (repeats_++ == 0) first_repeat_ = now;
    last_stamp_ = line.substr(0, line.size() - key.size());
    if (now - first_repeat_ >= kRepeatSummary) flushRepeats();
    return;
  }
  flushRepeats();
  last_key_ = key;
  append(line);
}

void DaemonLog::flushRepeats() {
  if (repeats_ == 0) return;
  append(fmt::format("{}info [log] last message repeated {} times\n", last_stamp_, repeats_));
  repeats_ = 0;
}

void DaemonLog::append(std::string_view text) {
  struct stat st {};
  if (max_size_ > 0 && ::fstat(STDERR_FILENO, &st) == 0 && st.st_size > 0 &&
      static_cast<uint64_t>(st.st_size) + text.size() > max_size_)
    rotate();
  // One write(2) per line so lines from concurrent processes never interleave.
  ssize_t unused = ::write(STDERR_FILENO, text.data(), text.size());
  (void)unused;
}

void DaemonLog::rotate() {
  rotateFiles(dir_.get(), kName, retain_);
  UniqueFd fresh(::openat(dir_.get(), kName,
                          O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fresh) return;  // keep writing to the renamed file rather than nowhere
  ::dup2(fresh.get(), STDOUT_FILENO);
  ::dup2(fresh.get(), STDERR_FILENO);
}

}  // namespace clusterd::master
