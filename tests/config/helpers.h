// Helpers for the config tests: load a fixture from tests/fixtures and find
// the diagnostic for a field.
#pragma once

#include <catch2/catch.hpp>

#include <string>

#include "config/load.h"

namespace clusterd::config::test {

inline std::string fixture(const std::string& name) {
  return std::string(CLUSTERD_FIXTURES) + "/" + name;
}

// Loads a fixture with 2 cores and no variables other than `env`.
inline LoadResult loadFixture(const std::string& name, std::map<std::string, std::string> env = {},
                              const std::string& env_name = "") {
  LoadOptions options;
  options.cores = 2;
  options.env_name = env_name;
  options.environment = std::move(env);
  return loadEcosystem(fixture(name), options);
}

inline LoadResult loadText(const std::string& text, std::map<std::string, std::string> env = {}) {
  LoadOptions options;
  options.cores = 4;
  options.environment = std::move(env);
  return loadEcosystemText(text, "inline.yaml", options);
}

// The one error for `field`; fails the test when there is none or several.
inline Diagnostic errorFor(const LoadResult& result, const std::string& field) {
  std::vector<Diagnostic> found;
  for (const auto& d : result.diagnostics) {
    if (d.field == field) found.push_back(d);
  }
  INFO("field " << field);
  for (const auto& d : result.diagnostics) INFO(d.toString());
  REQUIRE(found.size() == 1);
  return found[0];
}

inline std::string allErrors(const LoadResult& result) {
  std::string out;
  for (const auto& d : result.diagnostics) out += d.toString() + "\n";
  return out;
}

}  // namespace clusterd::config::test
