// Supervisor, the views: the JSON rows of `status` and `describe`, the app
// configs `save` writes, and the log files `logs` and `flush` act on.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "master/supervisor.h"

namespace clusterd::master {

using nlohmann::json;

namespace {

json workerRow(const App& app, const Slot& slot, const Worker& w, const char* role, Millis now) {
  json stats = nullptr;
  if (!w.stats_json.empty()) {
    stats = json::parse(w.stats_json, nullptr, false);
    if (stats.is_discarded()) stats = nullptr;
  }
  bool up = hasProcess(w.state);
  return {{"id", slot.id},
          {"app", app.cfg.spec.name},
          {"mode", app.cfg.spec.exec_mode == config::ExecMode::kCluster ? "cluster" : "fork"},
          {"instance", slot.instance},
          {"pid", w.pid},
          {"state", stateName(w.state)},
          {"role", role},
          {"uptime_ms", up ? (now - w.started_at).count() : 0},
          {"restarts", slot.restarts},
          {"cpu", up ? static_cast<double>(static_cast<int>(w.cpu * 10)) / 10 : 0.0},
          {"memory", up ? w.rss : 0},
          {"status", w.status_text},
          {"last_exit", w.last_exit},
          {"stats", stats},
          {"reload_pending", std::find(app.reload_queue.begin(), app.reload_queue.end(), slot.id) !=
                                 app.reload_queue.end()}};
}

}  // namespace

json Supervisor::statusJson() const {
  json rows = json::array();
  Millis now = platform_.now();
  std::vector<std::pair<int, json>> all;
  for (auto& [name, app] : apps_) {
    for (auto& slot : app->slots) {
      all.emplace_back(slot->id, workerRow(*app, *slot, *slot->main, "main", now));
      if (slot->incoming)
        all.emplace_back(slot->id, workerRow(*app, *slot, *slot->incoming, "incoming", now));
      for (auto& r : slot->retiring)
        all.emplace_back(slot->id, workerRow(*app, *slot, *r, "retiring", now));
    }
  }
  std::stable_sort(all.begin(), all.end(), [](auto& a, auto& b) { return a.first < b.first; });
  for (auto& [id, row] : all) rows.push_back(std::move(row));
  return rows;
}

Result<json> Supervisor::describeJson(const std::string& name) const {
  auto it = apps_.find(name);
  if (it == apps_.end()) return Error{"no app named \"" + name + "\" (see `clusterd status`)"};
  const App& app = *it->second;
  Millis now = platform_.now();
  json workers = json::array();
  for (auto& slot : app.slots) {
    workers.push_back(workerRow(app, *slot, *slot->main, "main", now));
    if (slot->incoming) workers.push_back(workerRow(app, *slot, *slot->incoming, "incoming", now));
    for (auto& r : slot->retiring) workers.push_back(workerRow(app, *slot, *r, "retiring", now));
  }
  json j = {{"app", appToJson(app.cfg, VarValues::kOmit)},
            {"out_file", app.out ? app.out->path() : ""},
            {"error_file", app.err ? app.err->path() : ""},
            {"workers", workers}};
  if (app.port) j["port"] = app.port;
  return j;
}

json Supervisor::dumpJson() const {
  json apps = json::array();
  for (auto& [name, app] : apps_)
    if (!app->deleting) apps.push_back(appToJson(app->cfg));
  return apps;
}

std::vector<std::shared_ptr<LogFile>> Supervisor::logFiles(const std::string& name) const {
  std::vector<std::shared_ptr<LogFile>> out;
  for (auto& [n, app] : apps_) {
    if (!name.empty() && name != "all" && n != name) continue;
    if (app->out) out.push_back(app->out);
    if (app->err && app->err != app->out) out.push_back(app->err);
  }
  return out;
}

}  // namespace clusterd::master
