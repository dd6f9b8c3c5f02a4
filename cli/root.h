// The root of the `clusterd` command line, shared by the two executables
// that parse it: clusterd-full (cli/main.cpp, every verb) and the lean
// `clusterd` front (cli/master_front.cpp, the control-socket verbs), so both
// take the same global options and report parse errors alike.
#pragma once

#include <memory>

#include "cli/commands.h"

namespace clusterd::cli {

// Defaults from the environment: $CLUSTERD_HOME (else ~/.clusterd),
// $CLUSTERD_REDIS_URL, $CLUSTERD_POSTGRES_URL.
CliContext defaultContext(const char* argv0);

// The root app with its description, --version and the global options
// (--home, --redis, --postgres) bound to `ctx`; verbs are added by the caller.
std::unique_ptr<CLI::App> makeRootApp(CliContext& ctx);

// Parses and runs the chosen verb; returns the process exit code.
int runCommandLine(CLI::App& app, CliContext& ctx, int argc, char** argv);

}  // namespace clusterd::cli
