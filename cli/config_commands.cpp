// Verbs of the config module: `clusterd validate FILE [--env NAME]`.
//
// Exit codes: 0 the file is valid (a table of its apps on stdout, warnings on
// stderr); 1 it has errors (each on stderr as file:line:column: field:
// message); 111 it cannot be read at all (missing, unreadable, a directory).
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <iostream>

#include "cli/commands.h"
#include "config/load.h"
#include "config/units.h"

namespace clusterd::cli {
namespace {

struct ValidateArgs {
  std::string file;
  std::string env;
};

std::string modeText(config::ExecMode m) {
  return m == config::ExecMode::kCluster ? "cluster" : "fork";
}

std::string instancesText(const config::AppSpec& a) {
  if (a.instances_text == "max" || a.instances_text == "-1") {
    return fmt::format("{} ({})", a.instances, a.instances_text);
  }
  return std::to_string(a.instances);
}

// The LISTEN column: the app's `listen`, and its instances' health ports
// (`127.0.0.1:8081-8082 (health)` for two instances).
std::string listenText(const config::AppSpec& a) {
  std::string text = a.listen ? a.listen->text : "";
  if (a.worker.health_listen) {
    const config::ListenAddress& h = *a.worker.health_listen;
    int last = h.port + std::max(1, a.instances) - 1;
    std::string ports =
        last == h.port ? std::to_string(h.port) : fmt::format("{}-{}", h.port, last);
    if (!text.empty()) text += ", ";
    text += fmt::format("{}:{} (health)", h.text.substr(0, h.text.rfind(':')), ports);
  }
  return text.empty() ? "-" : text;
}

void printEcosystem(const config::Ecosystem& eco) {
  std::vector<std::array<std::string, 5>> rows;
  rows.push_back({"NAME", "MODE", "INSTANCES", "LISTEN", "MEMORY LIMIT"});
  for (const auto& a : eco.apps) {
    rows.push_back({a.name, modeText(a.exec_mode), instancesText(a), listenText(a),
                    a.max_memory_restart ? config::formatMemory(a.max_memory_restart) : "-"});
  }
  std::array<size_t, 5> width{};
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += i + 1 < r.size() ? fmt::format("{:<{}}  ", r[i], width[i]) : r[i];
    }
    std::cout << line << "\n";
  }
}

nlohmann::json diagnosticJson(const config::Diagnostic& d) {
  return {{"file", d.file},
          {"line", d.line},
          {"column", d.column},
          {"field", d.field},
          {"message", d.message}};
}

int runValidate(const ValidateArgs& args, const CliContext& ctx) {
  config::LoadOptions options;
  options.env_name = args.env;
  config::LoadResult result = config::loadEcosystem(args.file, options);
  if (ctx.json) {
    nlohmann::json out = {{"file", args.file}, {"ok", result.ok()}};
    out["errors"] = nlohmann::json::array();
    out["warnings"] = nlohmann::json::array();
    for (const auto& d : result.diagnostics) out["errors"].push_back(diagnosticJson(d));
    for (const auto& d : result.warnings) out["warnings"].push_back(diagnosticJson(d));
    if (result.ok()) {
      out["apps"] = nlohmann::json::array();
      for (const auto& a : result.ecosystem.apps) {
        out["apps"].push_back(
            {{"name", a.name},
             {"exec_mode", modeText(a.exec_mode)},
             {"instances", a.instances},
             {"listen", a.listen ? nlohmann::json(a.listen->text) : nlohmann::json()},
             {"health_listen", a.worker.health_listen ? nlohmann::json(a.worker.health_listen->text)
                                                      : nlohmann::json()},
             {"max_memory_restart", a.max_memory_restart}});
      }
    }
    std::cout << out.dump(2) << "\n";
  } else {
    for (const auto& d : result.diagnostics) std::cerr << d.toString() << "\n";
    for (const auto& d : result.warnings) std::cerr << "warning: " << d.toString() << "\n";
  }
  if (result.unreadable) return kExitSystem;
  if (!result.ok()) {
    if (!ctx.json) {
      std::cerr << fmt::format("{}: {} error{}; nothing was started\n", args.file,
                               result.diagnostics.size(),
                               result.diagnostics.size() == 1 ? "" : "s");
    }
    return kExitFailed;
  }
  if (!ctx.json) {
    printEcosystem(result.ecosystem);
    std::cout << fmt::format("{}: valid ({} app{})\n", args.file, result.ecosystem.apps.size(),
                             result.ecosystem.apps.size() == 1 ? "" : "s");
  }
  return kExitOk;
}

}  // namespace

void addConfigCommands(CLI::App& app, CliContext& ctx) {
  auto args = std::make_shared<ValidateArgs>();
  CLI::App* validate = app.add_subcommand(
      "validate",
      "Check an ecosystem file (YAML or JSON) and show its apps.\n"
      "\n"
      "Every error is printed to stderr as FILE:LINE:COLUMN: FIELD: MESSAGE, then the\n"
      "command exits 1. A valid file prints a table of its apps (instances resolved\n"
      "for this machine) and exits 0. A file that cannot be read exits 111.\n"
      "\n"
      "Examples:\n"
      "  clusterd validate ecosystem/shop.yaml\n"
      "  clusterd validate ecosystem.config.json --env production\n"
      "  clusterd validate shop.yaml --json | jq .errors\n");
  validate->add_option("file", args->file, "The ecosystem file (.yaml, .yml or .json)")->required();
  validate->add_option("--env", args->env,
                       "Merge each app's env_NAME over its env (like pm2 --env NAME)");
  validate->add_flag("--json", ctx.json, "Print the result as JSON on stdout");
  validate->callback([args, &ctx] { ctx.exit_code = runValidate(*args, ctx); });
}

}  // namespace clusterd::cli
