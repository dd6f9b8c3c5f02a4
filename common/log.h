// Process-wide logging to stderr: one line per event, with a UTC timestamp,
// a level and the component. Workers' stderr is collected by the master into
// log files, so plain lines on stderr are the whole logging story.
#pragma once

#include <fmt/format.h>

#include <functional>
#include <string_view>

namespace clusterd::log {

enum class Level { kDebug, kInfo, kWarn, kError };

void write(Level level, std::string_view component, std::string_view message);
// The minimum level printed; set once at start-up from the command line.
void setMinLevel(Level level);

// Where lines go instead of stderr: `line` is the whole line (newline
// included), `key` the part after its timestamp, the same for a repeated
// event. Set at start-up before other threads log (the daemon's rotating
// daemon.log, master/daemon_log.h); an empty sink restores stderr.
using Sink = std::function<void(std::string_view line, std::string_view key)>;
void setSink(Sink sink);

template <typename... Args>
void info(std::string_view component, fmt::format_string<Args...> f, Args&&... args) {
  write(Level::kInfo, component, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void warn(std::string_view component, fmt::format_string<Args...> f, Args&&... args) {
  write(Level::kWarn, component, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void error(std::string_view component, fmt::format_string<Args...> f, Args&&... args) {
  write(Level::kError, component, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void debug(std::string_view component, fmt::format_string<Args...> f, Args&&... args) {
  write(Level::kDebug, component, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace clusterd::log
