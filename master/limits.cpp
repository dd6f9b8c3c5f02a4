// Reading the daemon's limits from its environment (see master/limits.h).
#include "master/limits.h"

#include <charconv>
#include <cstdlib>
#include <string>

#include "config/load.h"

namespace clusterd::master {
namespace {

Error invalid(const char* name, const std::string& value, const std::string& takes) {
  return Error{std::string(name) + "=" + value + " is not valid: it takes " + takes +
               "; fix or unset it"};
}

// Reads `name` into `out` when set. Sizes take the units of log_max_size
// (512K, 10M), durations those of kill_timeout (500ms, 2s, 1m).
Result<void> count(const char* name, uint64_t min, uint64_t max, uint64_t& out) {
  const char* v = std::getenv(name);
  if (!v) return success();
  std::string s(v);
  uint64_t n = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size() || n < min || n > max)
    return invalid(name, s, "a whole number from " + std::to_string(min) + " to " + std::to_string(max));
  out = n;
  return success();
}

Result<void> size(const char* name, uint64_t min, uint64_t& out) {
  const char* v = std::getenv(name);
  if (!v) return success();
  uint64_t n = 0;
  if (!config::parseMemory(v, n) || n < min)
    return invalid(name, v, "a size of at least " + std::to_string(min) + " bytes (512K, 10M, 1G)");
  out = n;
  return success();
}

Result<void> duration(const char* name, std::chrono::milliseconds& out) {
  const char* v = std::getenv(name);
  if (!v) return success();
  config::Millis ms{0};
  if (!config::parseDuration(v, ms) || ms.count() < 1)
    return invalid(name, v, "a duration of at least 1ms (500ms, 30s, 5m)");
  out = std::chrono::milliseconds(ms.count());
  return success();
}

}  // namespace

Result<DaemonLimits> limitsFromEnvironment() {
  DaemonLimits l;
  uint64_t max_request = l.control.max_request, max_queued = l.control.max_queued;
  uint64_t max_depth = static_cast<uint64_t>(l.control.max_depth), max_clients = l.control.max_clients;
  uint64_t max_apps = l.max_apps, max_workers = l.max_workers;
  uint64_t retain = static_cast<uint64_t>(l.log_retain);
  for (Result<void> r : {size("CLUSTERD_CONTROL_MAX_REQUEST", 1024, max_request),
                         count("CLUSTERD_CONTROL_MAX_DEPTH", 2, 10'000, max_depth),
                         size("CLUSTERD_CONTROL_MAX_QUEUED", 64 * 1024, max_queued),
                         count("CLUSTERD_CONTROL_MAX_CLIENTS", 1, 100'000, max_clients),
                         duration("CLUSTERD_CONTROL_IDLE_TIMEOUT", l.control.idle_timeout),
                         count("CLUSTERD_MAX_APPS", 1, 1'000'000, max_apps),
                         count("CLUSTERD_MAX_WORKERS", 1, 1'000'000, max_workers),
                         size("CLUSTERD_DAEMON_LOG_MAX_SIZE", 0, l.log_max_size),
                         count("CLUSTERD_DAEMON_LOG_RETAIN", 0, 100, retain)}) {
    if (!r) return r.error();
  }
  l.control.max_request = max_request;
  l.control.max_queued = max_queued;
  l.control.max_depth = static_cast<int>(max_depth);
  l.control.max_clients = max_clients;
  l.max_apps = max_apps;
  l.max_workers = max_workers;
  l.log_retain = static_cast<int>(retain);
  return l;
}

}  // namespace clusterd::master
