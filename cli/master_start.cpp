// `clusterd start FILE|NAME|ID|all`: loads an ecosystem file, starts the
// daemon if none runs and sends the apps; or, for a name the daemon knows,
// starts its stopped workers again. `restart` and `reload` live here too:
// like `start NAME`, they read the apps' ecosystem files again in this
// command's environment and send the specs with the request
// (cli/app_specs.h). They need the ecosystem loader, so they run in
// clusterd-full; addMasterCommands registers them first and then the
// control-socket verbs (cli/master_commands.cpp), in the order `--help` shows.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <set>

#include "cli/app_specs.h"
#include "cli/control_client.h"
#include "cli/master_verbs.h"
#include "config/load.h"

namespace clusterd::cli {

using nlohmann::json;
using namespace std::chrono;
using namespace verbs;
using Millis = std::chrono::milliseconds;

namespace {

Millis maxListenTimeout(const json& apps) {
  int64_t m = 0;
  for (const json& a : apps) m = std::max<int64_t>(m, a.value("listen_timeout", int64_t{3000}) +
                                                        a.value("kill_timeout", int64_t{1600}));
  return Millis{m};
}

// `start NAME|ID|all` for apps the daemon knows: starts their stopped workers.
void cmdStartTarget(CliContext& ctx, const std::string& target) {
  auto c = ControlClient::connect(ctx.home);
  if (!c) {
    fail(ctx, kExitFailed, target + ": no such ecosystem file, and no daemon runs for " + ctx.home);
    return;
  }
  auto specs = freshSpecs(ctx, "start", target);
  if (!specs) return;
  json req = {{"cmd", "start"}, {"target", target}};
  if (!specs->empty()) req["apps"] = *specs;
  auto r = c->call(req);
  if (!r) {
    fail(ctx, kExitSystem, r.error().message);
    return;
  }
  if (!r->value("ok", false)) {
    fail(ctx, kExitFailed, target + ": no such ecosystem file, and " + r->value("error", std::string("?")));
    return;
  }
  std::set<std::string> apps;
  bool reached = false;
  auto rows = waitStatus(ctx, seconds(60), [&](const json& w) {
    apps.clear();
    for (const json& row : w)
      if (matches(row, target)) apps.insert(row.value("app", ""));
    return appsSettled(w, apps);
  }, reached);
  if (!rows) return;
  printTable(*rows);
  reportFailures(ctx, *rows, apps, reached);
}

void cmdStart(CliContext& ctx, const std::string& file, const std::string& env, const std::string& only) {
  if (::access(file.c_str(), F_OK) != 0 && file.find('/') == std::string::npos &&
      probeDaemon(ctx.home) == DaemonState::kRunning) {
    cmdStartTarget(ctx, file);
    return;
  }
  config::LoadOptions lo;
  lo.env_name = env;
  auto loaded = config::loadEcosystem(file, lo);
  if (!loaded.ok()) {
    for (auto& d : loaded.diagnostics) std::cerr << d.toString() << "\n";
    fail(ctx, kExitFailed, file + ": not started (fix the errors above)");
    return;
  }
  std::set<std::string> wanted;
  for (size_t start = 0; !only.empty() && start <= only.size();) {
    size_t comma = only.find(',', start);
    wanted.insert(only.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  json apps = json::array();
  std::set<std::string> names;
  for (auto& spec : loaded.ecosystem.apps) {
    if (!wanted.empty() && !wanted.count(spec.name)) continue;
    apps.push_back(appObject(loaded, spec, env));
    names.insert(spec.name);
  }
  if (apps.empty()) {
    fail(ctx, kExitUsage, only.empty() ? file + " has no apps" : "--only " + only + ": no such app in " + file);
    return;
  }
  if (!ensureDaemon(ctx)) return;
  auto c = ControlClient::connect(ctx.home);
  if (!c) {
    fail(ctx, kExitSystem, c.error().message);
    return;
  }
  auto r = c->call({{"cmd", "start"}, {"apps", apps}});
  if (!r) {
    fail(ctx, kExitSystem, r.error().message);
    return;
  }
  int code = kExitOk;
  for (const json& res : (*r)["results"]) {
    if (res.value("ok", false)) continue;
    std::cerr << "clusterd: " << res.value("error", std::string("failed")) << "\n";
    names.erase(res.value("app", ""));
    code = kExitFailed;
  }
  bool reached = false;
  std::optional<json> rows;
  if (!names.empty())
    rows = waitStatus(ctx, std::min<Millis>(maxListenTimeout(apps) + seconds(3), seconds(60)),
                      [&](const json& w) { return appsSettled(w, names); }, reached);
  else
    rows = waitStatus(ctx, Millis{0}, [](const json&) { return true; }, reached);
  if (!rows) return;
  printTable(*rows);
  if (!names.empty() && reportFailures(ctx, *rows, names, reached) != kExitOk) return;
  ctx.exit_code = code;
}

}  // namespace

void addMasterCommands(CLI::App& app, CliContext& ctx) {
  {
    auto* sub = app.add_subcommand("start", "Start the apps of an ecosystem file (and the daemon if needed),\n"
                                            "or start again the stopped workers of a known app, id or all\n"
                                            "  clusterd start ecosystem.yaml --env production --only web\n"
                                            "  clusterd start web");
    auto file = std::make_shared<std::string>();
    auto env = std::make_shared<std::string>();
    auto only = std::make_shared<std::string>();
    sub->add_option("file", *file, "Ecosystem file (YAML or JSON), or an app name, worker id or all")->required();
    sub->add_option("--env", *env, "Merge env_<NAME> into each app's env");
    sub->add_option("--only", *only, "Start only these apps (comma-separated)");
    sub->callback([&ctx, file, env, only] { cmdStart(ctx, *file, *env, *only); });
  }
  for (const std::string verb : {"restart", "reload"}) {
    std::string what = verb == "restart" ? "Stop, then start workers again"
                                         : "Replace workers one by one, each new one ready before "
                                           "the old one stops (zero downtime)";
    std::string help =
        what + ".\nEach app's ecosystem file is read again, in this command's environment\n";
    help += "  clusterd " + verb + " web|3|all\n";
    help += "  SHOP_CHECKOUT_LIMIT=5000 clusterd " + verb + " shop-api";
    auto* sub = app.add_subcommand(verb, help);
    auto target = std::make_shared<std::string>();
    auto parallel = std::make_shared<int>(1);
    sub->add_option("target", *target, "App name, worker id, or all")->required();
    if (verb == "reload")
      sub->add_option("--parallel", *parallel, "Workers replaced at a time")
          ->check(CLI::PositiveNumber);
    sub->callback([&ctx, verb, target, parallel] {
      auto specs = freshSpecs(ctx, verb, *target);
      if (specs) actOnTarget(ctx, verb, *target, *parallel, *specs);
    });
  }
  addMasterControlCommands(app, ctx);
}

}  // namespace clusterd::cli
