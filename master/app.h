// What the master knows about one app: its spec plus where it came from (for
// `builtin:worker`, which re-reads its ecosystem file, for `save`, and for
// the CLI, which re-reads the file for reload, restart and start NAME).
// AppConfig travels as JSON over the control socket and in the dump file;
// the codec is here so the CLI and the daemon agree on it.
//
// Design: ecosystem variables come from the environment of the `clusterd`
// command that reads the file, not from the daemon's. The spec arrives
// resolved; but a built-in worker reads the file again when it starts, so
// the variables that reading needs travel with the app (`vars`) and the
// master puts them into that worker's environment.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <map>
#include <optional>
#include <string>

#include "common/result.h"
#include "config/spec.h"

namespace clusterd::master {

struct AppConfig {
  config::AppSpec spec;
  std::string ecosystem_path;  // absolute path of the file the app came from
  std::string env_name;        // the --env it was loaded with ("" = none)
  std::string base_dir;        // the file's directory (default cwd)
  // builtin:worker only: every variable the file refers to, with the value
  // the reading `clusterd` saw (nullopt = unset there).
  std::map<std::string, std::optional<std::string>> vars;
};

// kOmit leaves `vars` out, for `describe`: they may hold a password the
// file refers to, and nothing is shown that the operator did not ask for.
enum class VarValues { kInclude, kOmit };
nlohmann::json appToJson(const AppConfig& app, VarValues values = VarValues::kInclude);
// Field by field, with a message naming the first missing or mistyped field.
Result<AppConfig> appFromJson(const nlohmann::json& j);

}  // namespace clusterd::master
