// Helpers shared by the master's verbs: cli/master_commands.cpp (the verbs
// that only talk to the daemon over its control socket, which the lean
// `clusterd` front runs itself) and cli/master_start.cpp (`start`,
// `restart` and `reload`, which load ecosystem files and so run in
// clusterd-full). Each prints its error as "clusterd: <message>" and sets
// the exit code in CliContext.
#pragma once

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>

#include "cli/commands.h"

namespace clusterd::cli {

// The verbs that need nothing but the control socket (and the daemon's
// start-up): daemon, stop, delete, status (list, ls), describe, scale,
// ping, kill, save, resurrect, logs, flush.
void addMasterControlCommands(CLI::App& app, CliContext& ctx);

namespace verbs {

using nlohmann::json;

int fail(CliContext& ctx, int code, const std::string& message);
// One request; prints the error and sets the exit code on failure.
std::optional<json> request(CliContext& ctx, const json& req,
                            std::chrono::milliseconds timeout = std::chrono::seconds(30));
// True when a status row belongs to `target` (an app, a worker id or all).
bool matches(const json& row, const std::string& target);
// Polls `status` until `done(workers)` or the deadline; returns the last rows.
std::optional<json> waitStatus(CliContext& ctx, std::chrono::milliseconds limit,
                               const std::function<bool(const json&)>& done, bool& reached);
bool settledState(const std::string& state);
// True when every worker of `apps` is settled (online, errored or stopped)
// and no replacement is under way.
bool appsSettled(const json& rows, const std::set<std::string>& apps);
void printTable(const json& rows);
// Reports the workers of `apps` that did not come online; returns the exit code.
int reportFailures(CliContext& ctx, const json& rows, const std::set<std::string>& apps, bool reached);
// Starts a daemon for the home unless one runs; false (reported) on failure.
bool ensureDaemon(CliContext& ctx);
// stop, restart, reload or delete of `target` (with `apps`, the new specs
// for restart and reload, when not empty), then waits for the effect and
// prints the table.
void actOnTarget(CliContext& ctx, const std::string& cmd, const std::string& target, int parallel,
                 const json& apps);

}  // namespace verbs
}  // namespace clusterd::cli
