// Fuzz target: ecosystem files (config/load.h). The input is the text of a
// file, loaded with `--env production` and a fixed environment for ${VAR}
// (so runs repeat), through the whole loader: YAML/JSON parsing, merge keys,
// interpolation, every field's reader and the cross-app checks. Any text must
// come back as an ecosystem or as positioned diagnostics, never a crash; a
// file that loads must load the same way a second time.
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>

#include "config/load.h"

namespace {

clusterd::config::LoadResult load(const std::string& text) {
  clusterd::config::LoadOptions options;
  options.env_name = "production";
  options.cores = 4;
  options.environment = std::map<std::string, std::string>{
      {"HOME", "/home/fuzz"}, {"PORT", "8080"}, {"WORKERS", "2"}, {"EMPTY", ""},
      {"NESTED", "${PORT}"}, {"REDIS_URL", "redis://127.0.0.1:6379/0"}};
  return clusterd::config::loadEcosystemText(text, "/srv/app/ecosystem.config.yaml", options);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto first = load(text);
  for (const auto& d : first.diagnostics) (void)d.toString();
  for (const auto& d : first.warnings) (void)d.toString();
  if (first.ok()) {
    auto again = load(text);
    if (!again.ok() || again.ecosystem.apps.size() != first.ecosystem.apps.size()) std::abort();
  }
  return 0;
}
