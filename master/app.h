// What the master knows about one app: its spec plus where it came from (for
// `builtin:worker`, which re-reads its ecosystem file, and for `save`).
// AppConfig travels as JSON over the control socket and in the dump file;
// the codec is here so the CLI and the daemon agree on it.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <string>

#include "common/result.h"
#include "config/spec.h"

namespace clusterd::master {

struct AppConfig {
  config::AppSpec spec;
  std::string ecosystem_path;  // absolute path of the file the app came from
  std::string env_name;        // the --env it was loaded with ("" = none)
  std::string base_dir;        // the file's directory (default cwd)
};

nlohmann::json appToJson(const AppConfig& app);
// Field by field, with a message naming the first missing or mistyped field.
Result<AppConfig> appFromJson(const nlohmann::json& j);

}  // namespace clusterd::master
