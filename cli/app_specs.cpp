// Implementation of cli/app_specs.h.
#include "cli/app_specs.h"

#include <iostream>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "cli/master_verbs.h"
#include "master/app.h"

namespace clusterd::cli {

using nlohmann::json;
using namespace std::chrono;

json appObject(const config::LoadResult& loaded, const config::AppSpec& spec,
               const std::string& env_name) {
  master::AppConfig cfg{spec, loaded.ecosystem.path, env_name, loaded.ecosystem.base_dir, {}};
  if (spec.builtin_worker) cfg.vars = loaded.variables;
  return master::appToJson(cfg);
}

namespace {

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

}  // namespace

std::optional<json> freshSpecs(CliContext& ctx, const std::string& verb,
                               const std::string& target) {
  auto status = verbs::request(ctx, {{"cmd", "status"}}, seconds(10));
  if (!status) return std::nullopt;
  std::set<std::string> names;
  for (const json& row : (*status)["workers"])
    if (verbs::matches(row, target)) names.insert(row.value("app", ""));
  // Apps grouped by the file and --env they came from: each file is read once.
  std::map<std::pair<std::string, std::string>, std::vector<std::string>> files;
  for (const std::string& name : names) {
    auto d = verbs::request(ctx, {{"cmd", "describe"}, {"app", name}}, seconds(10));
    if (!d) return std::nullopt;
    const json& app = (*d)["app"];
    std::string path = app.value("ecosystem_path", "");
    if (path.empty()) continue;
    files[{path, app.value("env_name", "")}].push_back(name);
  }
  json out = json::array();
  for (const auto& [origin, apps] : files) {
    const auto& [path, env] = origin;
    config::LoadOptions lo;
    lo.env_name = env;
    config::LoadResult loaded = config::loadEcosystem(path, lo);
    if (loaded.unreadable) {
      std::cerr << "clusterd: " << loaded.diagnostics.front().toString() << "; " << joined(apps)
                << (apps.size() == 1 ? " keeps the settings it runs with"
                                     : " keep the settings they run with")
                << " (nothing is read again, variables included)\n";
      continue;
    }
    if (!loaded.ok()) {
      for (const auto& d : loaded.diagnostics) std::cerr << d.toString() << "\n";
      verbs::fail(ctx, kExitFailed,
                  path + ": " + verb + " " + target +
                      " not done (fix the errors above); the running apps are unchanged");
      return std::nullopt;
    }
    for (const std::string& name : apps) {
      const config::AppSpec* spec = nullptr;
      for (const auto& a : loaded.ecosystem.apps)
        if (a.name == name) spec = &a;
      if (!spec) {
        verbs::fail(ctx, kExitFailed,
                    path + " no longer has an app named " + name +
                        "; put it back, or `clusterd delete " + name + "`; " + verb + " " + target +
                        " not done");
        return std::nullopt;
      }
      out.push_back(appObject(loaded, *spec, env));
    }
  }
  return out;
}

}  // namespace clusterd::cli
