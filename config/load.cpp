// Placeholder until the loader lands.
#include "config/load.h"
namespace clusterd::config {
std::string Diagnostic::toString() const { return file + ": " + message; }
LoadResult loadEcosystem(const std::string& path, const LoadOptions&) {
  LoadResult r;
  r.diagnostics.push_back({path, 0, 0, "", "loader not implemented"});
  return r;
}
bool parseMemory(const std::string&, uint64_t&) { return false; }
bool parseDuration(const std::string&, Millis&) { return false; }
bool splitArgs(const std::string&, std::vector<std::string>&) { return false; }
}  // namespace clusterd::config
