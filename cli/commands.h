// The `clusterd` command line: one CLI11 app, with each module's verbs added
// by its own add*Commands function (in cli/<module>_commands.cpp). A verb's
// callback stores its exit code in CliContext; exit codes are stable:
// 0 ok, 1 the request failed (validation errors, job failed, …),
// 100 usage error, 111 system error (cannot reach the daemon, Redis, …).
#pragma once

#include <CLI/CLI.hpp>

#include <string>

namespace clusterd::cli {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 100;
constexpr int kExitSystem = 111;

// Options every verb may use, filled before a verb's callback runs.
struct CliContext {
  std::string home;          // --home, else $CLUSTERD_HOME, else ~/.clusterd
  std::string redis_url;     // --redis, else $CLUSTERD_REDIS_URL (the file may add one)
  std::string postgres_url;  // --postgres, else $CLUSTERD_POSTGRES_URL
  bool json = false;         // per-verb --json lands here
  int exit_code = kExitOk;
  std::string argv0;         // path of this executable, for spawning the daemon
};

void addConfigCommands(CLI::App& app, CliContext& ctx);
void addMasterCommands(CLI::App& app, CliContext& ctx);
void addQueueCommands(CLI::App& app, CliContext& ctx);
void addWorkerCommands(CLI::App& app, CliContext& ctx);
void addDbCommands(CLI::App& app, CliContext& ctx);

}  // namespace clusterd::cli
