// Worker log files with size rotation (see master/logs.h).
#include "master/logs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "common/log.h"

namespace clusterd::master {

namespace {
constexpr size_t kMaxPartialLine = 64 * 1024;  // a longer "line" is cut there
}

LogFile::LogFile(std::string path, uint64_t max_size, int retain, std::string date_format)
    : path_(std::move(path)), max_size_(max_size), retain_(retain), date_format_(std::move(date_format)) {
  open();
}

void LogFile::open() {
  fd_.reset(::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
  if (!fd_) {
    log::error("logs", "open({}): {}; this app's output is dropped", path_, std::strerror(errno));
    return;
  }
  struct stat st {};
  size_ = ::fstat(fd_.get(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

void LogFile::rotate() {
  fd_.reset();
  if (retain_ <= 0) {
    ::unlink(path_.c_str());
  } else {
    for (int i = retain_ - 1; i >= 1; --i) {
      std::string from = path_ + "." + std::to_string(i);
      std::string to = path_ + "." + std::to_string(i + 1);
      ::rename(from.c_str(), to.c_str());
    }
    ::rename(path_.c_str(), (path_ + ".1").c_str());
  }
  open();
}

void LogFile::truncate() {
  for (int i = 1; i <= retain_; ++i) ::unlink((path_ + "." + std::to_string(i)).c_str());
  if (fd_ && ::ftruncate(fd_.get(), 0) == 0) size_ = 0;
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
  if (max_size_ > 0 && size_ > 0 && size_ + lines.size() > max_size_) rotate();
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
