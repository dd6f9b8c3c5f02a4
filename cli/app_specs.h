// The app objects the CLI sends the master (docs/CONTROL.md, "App object"),
// made from an ecosystem file read in this command's environment: for
// `start FILE`, and again for `restart`, `reload` and `start NAME` of apps
// the daemon runs, so that their variables come from the caller and not
// from the daemon (docs/CONFIG.md, "Variables"). Runs in clusterd-full: it
// needs the ecosystem loader.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "cli/commands.h"
#include "config/load.h"

namespace clusterd::cli {

// The app object for `spec` of `loaded` (read with --env `env_name`); a
// built-in worker's object carries the variables the reading used, since
// the worker reads the file again when it starts.
nlohmann::json appObject(const config::LoadResult& loaded, const config::AppSpec& spec,
                         const std::string& env_name);

// The apps the daemon runs under `target` (an app, a worker id or all), each
// read again from the ecosystem file it was started from, with the --env it
// was started with. An app without a file (started over the control
// socket) is left out; so are the apps of a file that cannot be read, with a
// line on stderr saying so (they keep their settings). A file with errors,
// or one that no longer has the app, is reported and gives nullopt (the exit
// code is set): the verb must then change nothing. `verb` names the command
// in messages.
std::optional<nlohmann::json> freshSpecs(CliContext& ctx, const std::string& verb,
                                         const std::string& target);

}  // namespace clusterd::cli
