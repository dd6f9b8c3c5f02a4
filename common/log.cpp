// Implementation of common/log.h and of UniqueFd (common/uv_handle.h).
#include "common/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iterator>

#include "common/uv_handle.h"

namespace clusterd {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

namespace log {
namespace {
// The process-wide state here, each written once at start-up.
std::atomic<int> g_min_level{static_cast<int>(Level::kInfo)};
Sink g_sink;

const char* levelName(Level l) {
  switch (l) {
    case Level::kDebug: return "debug";
    case Level::kInfo: return "info";
    case Level::kWarn: return "warn";
    case Level::kError: return "error";
  }
  return "?";
}
}  // namespace

void setMinLevel(Level level) { g_min_level = static_cast<int>(level); }

void setSink(Sink sink) { g_sink = std::move(sink); }

void write(Level level, std::string_view component, std::string_view message) {
  if (static_cast<int>(level) < g_min_level) return;
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::string line = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z ", tm.tm_year + 1900,
                                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
  const size_t stamp = line.size();
  fmt::format_to(std::back_inserter(line), "{} [{}] {}\n", levelName(level), component, message);
  if (g_sink) {
    g_sink(line, std::string_view(line).substr(stamp));
    return;
  }
  // One write(2) per line so lines from concurrent processes never interleave.
  ssize_t unused = ::write(STDERR_FILENO, line.data(), line.size());
  (void)unused;
}

}  // namespace log
}  // namespace clusterd
