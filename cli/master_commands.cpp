// Verbs of the master module that talk to the daemon over the control
// socket (cli/control_client.h): daemon, stop, delete, status (list, ls),
// describe, scale, ping, kill, save, resurrect; `logs` and `flush` are in
// cli/master_logs.cpp; `start`, `restart` and `reload`, which read
// ecosystem files, in cli/master_start.cpp. None of these loads an
// ecosystem file, so the lean `clusterd` front (cli/master_front.cpp) links
// them without the other modules.
#include <unistd.h>

#include <chrono>
#include <functional>
#include <iostream>
#include <set>
#include <thread>

#include "cli/control_client.h"
#include "cli/master_verbs.h"
#include "cli/status_table.h"
#include "master/daemon.h"

namespace clusterd::cli {

using nlohmann::json;
using namespace std::chrono;
using namespace verbs;

void addMasterLogCommands(CLI::App& app, CliContext& ctx);

namespace verbs {

int fail(CliContext& ctx, int code, const std::string& message) {
  std::cerr << "clusterd: " << message << "\n";
  ctx.exit_code = code;
  return code;
}

std::optional<json> request(CliContext& ctx, const json& req, milliseconds timeout) {
  auto c = ControlClient::connect(ctx.home);
  if (!c) {
    fail(ctx, kExitSystem, c.error().message);
    return std::nullopt;
  }
  auto r = c->call(req, timeout);
  if (!r) {
    fail(ctx, kExitSystem, r.error().message);
    return std::nullopt;
  }
  if (!r->value("ok", false)) {
    fail(ctx, kExitFailed, r->value("error", std::string("request failed")));
    return std::nullopt;
  }
  return *r;
}

bool matches(const json& row, const std::string& target) {
  return target == "all" || row.value("app", "") == target ||
         std::to_string(row.value("id", -1)) == target;
}

std::optional<json> waitStatus(CliContext& ctx, milliseconds limit,
                               const std::function<bool(const json&)>& done, bool& reached) {
  auto deadline = steady_clock::now() + limit;
  reached = false;
  auto c = ControlClient::connect(ctx.home);
  if (!c) {
    fail(ctx, kExitSystem, c.error().message);
    return std::nullopt;
  }
  for (;;) {
    auto r = c->call({{"cmd", "status"}}, seconds(10));
    if (!r) {
      fail(ctx, kExitSystem, r.error().message);
      return std::nullopt;
    }
    json rows = (*r)["workers"];
    if (done(rows)) {
      reached = true;
      return rows;
    }
    if (steady_clock::now() >= deadline) return rows;
    std::this_thread::sleep_for(milliseconds(10));
  }
}

bool settledState(const std::string& s) { return s == "online" || s == "errored" || s == "stopped"; }

bool appsSettled(const json& rows, const std::set<std::string>& apps) {
  for (const json& w : rows) {
    if (!apps.count(w.value("app", "")) && !apps.count("all")) continue;
    if (w.value("role", "main") != "main" || w.value("reload_pending", false)) return false;
    if (!settledState(w.value("state", ""))) return false;
  }
  return true;
}

void printTable(const json& rows) { std::cout << renderStatusTable(rows, ::isatty(1) == 1); }

int reportFailures(CliContext& ctx, const json& rows, const std::set<std::string>& apps, bool reached) {
  int code = kExitOk;
  for (const json& w : rows) {
    if (!apps.count(w.value("app", "")) && !apps.count("all")) continue;
    std::string state = w.value("state", "");
    if (state == "online" || w.value("role", "main") != "main") continue;
    std::string why = w.value("status", "");
    if (why.empty()) why = w.value("last_exit", "");
    std::cerr << "clusterd: " << w.value("app", "") << " #" << w.value("id", 0) << " is " << state
              << (why.empty() ? "" : ": " + why) << "\n";
    code = kExitFailed;
  }
  if (!reached) {
    std::cerr << "clusterd: gave up waiting for the workers to settle; see `clusterd status`\n";
    code = kExitFailed;
  }
  ctx.exit_code = code;
  return code;
}

bool ensureDaemon(CliContext& ctx) {
  if (probeDaemon(ctx.home) == DaemonState::kRunning) return true;
  std::string note;
  auto r = startDaemon(ctx.home, selfExe(ctx.argv0), note);
  if (!note.empty()) std::cerr << "clusterd: " << note << "\n";
  if (!r) {
    fail(ctx, kExitSystem, r.error().message);
    return false;
  }
  return true;
}

}  // namespace verbs

namespace verbs {

void actOnTarget(CliContext& ctx, const std::string& cmd, const std::string& target, int parallel,
                 const json& apps) {
  json req = {{"cmd", cmd}, {"target", target}};
  if (cmd == "reload") req["parallel"] = parallel;
  if (!apps.empty()) req["apps"] = apps;
  auto before = request(ctx, {{"cmd", "status"}}, seconds(10));
  if (!before) return;
  std::set<std::string> apps_hit;
  for (const json& w : (*before)["workers"])
    if (matches(w, target)) apps_hit.insert(w.value("app", ""));
  auto r = request(ctx, req);
  if (!r) return;
  bool reached = false;
  auto done = [&](const json& rows) {
    for (const json& w : rows) {
      if (!matches(w, target)) continue;
      if (cmd == "delete") return false;
      if (w.value("role", "main") != "main" || w.value("reload_pending", false)) return false;
      std::string s = w.value("state", "");
      if (cmd == "stop" ? (s != "stopped" && s != "errored") : !settledState(s)) return false;
    }
    return true;
  };
  auto rows = waitStatus(ctx, seconds(cmd == "reload" ? 300 : 60), done, reached);
  if (!rows) return;
  printTable(*rows);
  if (cmd == "restart" || cmd == "reload") {
    reportFailures(ctx, *rows, apps_hit, reached);
  } else if (!reached) {
    fail(ctx, kExitFailed, cmd + " " + target + ": gave up waiting; see `clusterd status`");
  }
}

}  // namespace verbs

void addMasterControlCommands(CLI::App& app, CliContext& ctx) {
  {
    auto* sub = app.add_subcommand("daemon", "Run the master daemon for this home\n"
                                             "  clusterd daemon --foreground   (for systemd or containers)");
    auto fg = std::make_shared<bool>(false);
    sub->add_flag("--foreground", *fg, "Stay in the foreground, logging to stderr");
    sub->callback([&ctx, fg] {
      if (*fg) {
        ctx.exit_code = execDaemon(ctx.home, selfExe(ctx.argv0));
        return;
      }
      if (probeDaemon(ctx.home) == DaemonState::kRunning) {
        fail(ctx, kExitFailed, "a daemon already runs for " + ctx.home);
        return;
      }
      if (!ensureDaemon(ctx)) return;
      std::cout << "clusterd daemon started for " << ctx.home << "\n";
    });
  }
  for (const char* verb : {"stop", "delete"}) {
    std::string help = std::string(verb) == "stop"
                           ? "Stop workers: SIGTERM, kill_timeout, then SIGKILL"
                           : "Stop workers and forget their app";
    auto* sub = app.add_subcommand(verb, help + "\n  clusterd " + verb + " web|3|all");
    auto target = std::make_shared<std::string>();
    sub->add_option("target", *target, "App name, worker id, or all")->required();
    sub->callback([&ctx, verb = std::string(verb), target] {
      actOnTarget(ctx, verb, *target, 1, json::array());
    });
  }
  {
    auto* sub = app.add_subcommand("status", "Show the workers (aliases: list, ls)\n  clusterd status --json");
    sub->alias("list");
    sub->alias("ls");
    sub->add_flag("--json", ctx.json, "A JSON array, one object per worker");
    sub->callback([&ctx] {
      auto r = request(ctx, {{"cmd", "status"}}, seconds(10));
      if (!r) return;
      if (ctx.json) std::cout << (*r)["workers"].dump() << "\n";
      else printTable((*r)["workers"]);
    });
  }
  {
    auto* sub = app.add_subcommand("describe", "Show one app's settings and workers\n  clusterd describe web");
    auto name = std::make_shared<std::string>();
    sub->add_option("app", *name, "App name")->required();
    sub->add_flag("--json", ctx.json, "Print the raw JSON reply");
    sub->callback([&ctx, name] {
      auto r = request(ctx, {{"cmd", "describe"}, {"app", *name}}, seconds(10));
      if (!r) return;
      if (ctx.json) {
        r->erase("ok");
        std::cout << r->dump(2) << "\n";
        return;
      }
      const json& a = (*r)["app"];
      std::cout << "app        " << a.value("name", "") << "\n"
                << "script     " << a.value("script", "") << "\n"
                << "cwd        " << a.value("cwd", "") << "\n"
                << "mode       " << a.value("exec_mode", "") << " × " << a.value("instances", 0) << "\n";
      if (r->contains("port")) std::cout << "port       " << (*r)["port"] << "\n";
      std::cout << "out log    " << r->value("out_file", "") << "\n"
                << "error log  " << r->value("error_file", "") << "\n\n";
      printTable((*r)["workers"]);
      for (const json& w : (*r)["workers"]) {
        std::cout << "#" << w.value("id", 0) << " pid " << w.value("pid", 0) << ": " << w.value("state", "");
        if (!w.value("status", "").empty()) std::cout << "  STATUS=" << w.value("status", "");
        if (!w.value("last_exit", "").empty()) std::cout << "  last exit: " << w.value("last_exit", "");
        if (!w["stats"].is_null()) std::cout << "  stats: " << w["stats"].dump();
        std::cout << "\n";
      }
    });
  }
  {
    auto* sub = app.add_subcommand("scale", "Set the number of workers of an app\n  clusterd scale web 4 | +1 | -1");
    auto name = std::make_shared<std::string>();
    auto count = std::make_shared<std::string>();
    sub->add_option("app", *name, "App name")->required();
    sub->add_option("count", *count, "N, +N or -N")->required()->allow_extra_args(false);
    sub->callback([&ctx, name, count] {
      auto r = request(ctx, {{"cmd", "scale"}, {"app", *name}, {"count", *count}});
      if (!r) return;
      bool reached = false;
      auto rows = waitStatus(ctx, seconds(30), [&](const json& w) { return appsSettled(w, {*name}); }, reached);
      if (rows) printTable(*rows);
    });
  }
  {
    auto* sub = app.add_subcommand("ping", "Check that the daemon answers");
    sub->callback([&ctx] {
      auto r = request(ctx, {{"cmd", "ping"}}, seconds(5));
      if (r) std::cout << "pong: daemon pid " << (*r)["pid"] << " for " << r->value("home", "") << "\n";
    });
  }
  {
    auto* sub = app.add_subcommand("kill", "Stop every worker, then the daemon");
    sub->callback([&ctx] {
      if (probeDaemon(ctx.home) != DaemonState::kRunning) {
        std::cout << "no daemon runs for " << ctx.home << "\n";
        return;
      }
      auto r = request(ctx, {{"cmd", "kill"}}, seconds(10));
      if (!r) return;
      auto deadline = steady_clock::now() + seconds(60);
      while (probeDaemon(ctx.home) == DaemonState::kRunning && steady_clock::now() < deadline)
        std::this_thread::sleep_for(milliseconds(10));
      if (probeDaemon(ctx.home) == DaemonState::kRunning) {
        fail(ctx, kExitFailed, "the daemon is still running after 60 s");
        return;
      }
      std::cout << "daemon pid " << (*r)["pid"] << " stopped\n";
    });
  }
  {
    auto* sub = app.add_subcommand("save", "Save the app list for `clusterd resurrect`");
    sub->callback([&ctx] {
      auto r = request(ctx, {{"cmd", "save"}});
      if (r) std::cout << "saved " << (*r)["apps"] << " app(s) to " << r->value("path", "") << "\n";
    });
  }
  {
    auto* sub = app.add_subcommand("resurrect", "Start the daemon if needed and the saved apps");
    sub->callback([&ctx] {
      if (!ensureDaemon(ctx)) return;
      auto r = request(ctx, {{"cmd", "resurrect"}});
      if (!r) return;
      std::set<std::string> names;
      for (const json& res : (*r)["results"]) names.insert(res.value("app", ""));
      bool reached = false;
      auto rows = waitStatus(ctx, seconds(30), [&](const json& w) { return appsSettled(w, names); }, reached);
      if (!rows) return;
      printTable(*rows);
      reportFailures(ctx, *rows, names, reached);
    });
  }
  addMasterLogCommands(app, ctx);
}

}  // namespace clusterd::cli
