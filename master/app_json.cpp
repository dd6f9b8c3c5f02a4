// JSON codec of AppConfig (see master/app.h). Only the fields the master acts
// on travel; a built-in worker re-reads its own section from the file, with
// the variables in `vars`.
#include <nlohmann/json.hpp>

#include "master/app.h"

namespace clusterd::master {

using nlohmann::json;

json appToJson(const AppConfig& a, VarValues values) {
  const config::AppSpec& s = a.spec;
  json j = {
      {"name", s.name},
      {"script", s.script},
      {"args", s.args},
      {"cwd", s.cwd},
      {"interpreter", s.interpreter},
      {"exec_mode", s.exec_mode == config::ExecMode::kCluster ? "cluster" : "fork"},
      {"instances", s.instances},
      {"max_memory_restart", s.max_memory_restart},
      {"min_uptime", s.min_uptime.count()},
      {"max_restarts", s.max_restarts},
      {"restart_delay", s.restart_delay.count()},
      {"exp_backoff_restart_delay", s.exp_backoff_restart_delay.count()},
      {"kill_timeout", s.kill_timeout.count()},
      {"listen_timeout", s.listen_timeout.count()},
      {"wait_ready", s.wait_ready},
      {"watchdog", s.watchdog.count()},
      {"memory_check_interval", s.memory_check_interval.count()},
      {"autorestart", s.autorestart},
      {"env", s.env},
      {"out_file", s.out_file},
      {"error_file", s.error_file},
      {"merge_logs", s.merge_logs},
      {"log_date_format", s.log_date_format},
      {"log_max_size", s.log_max_size},
      {"log_retain", s.log_retain},
      {"uid", s.uid},
      {"gid", s.gid},
      {"builtin_worker", s.builtin_worker},
      {"ecosystem_path", a.ecosystem_path},
      {"env_name", a.env_name},
      {"base_dir", a.base_dir},
  };
  if (!a.vars.empty() && values == VarValues::kInclude) {
    json vars = json::object();
    for (const auto& [name, value] : a.vars) vars[name] = value ? json(*value) : json(nullptr);
    j["vars"] = std::move(vars);
  }
  if (s.listen) {
    j["listen"] = {{"kind", s.listen->kind == config::ListenAddress::Kind::kUnix ? "unix" : "tcp"},
                   {"host", s.listen->host},
                   {"port", s.listen->port},
                   {"path", s.listen->path},
                   {"text", s.listen->text}};
  }
  return j;
}

namespace {

// Reads j[key] into out when present; a present value of the wrong type is an error.
template <typename T>
bool field(const json& j, const char* key, T& out, std::string& err) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return true;
  try {
    out = it->get<T>();
    return true;
  } catch (const json::exception& e) {
    err = std::string("field \"") + key + "\": " + e.what();
    return false;
  }
}

bool millis(const json& j, const char* key, config::Millis& out, std::string& err) {
  int64_t v = out.count();
  if (!field(j, key, v, err)) return false;
  out = config::Millis{v};
  return true;
}

bool isVariableName(const std::string& name) {
  auto start = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; };
  auto rest = [&](char c) { return start(c) || (c >= '0' && c <= '9'); };
  if (name.empty() || !start(name[0])) return false;
  for (char c : name)
    if (!rest(c)) return false;
  return true;
}

// `vars`: an object of variable name -> string or null. They become
// environment entries of a worker, so a name must be one ${…} can refer to
// and a value must not hold a NUL byte.
bool vars(const json& j, std::map<std::string, std::optional<std::string>>& out, std::string& err) {
  auto it = j.find("vars");
  if (it == j.end() || it->is_null()) return true;
  if (!it->is_object()) {
    err = "field \"vars\": expected an object of variable name -> string or null";
    return false;
  }
  for (const auto& [name, value] : it->items()) {
    if (!isVariableName(name)) {
      err = "field \"vars\": `" + name + "` is not a variable name ([A-Za-z_][A-Za-z0-9_]*)";
      return false;
    }
    if (value.is_null()) {
      out[name] = std::nullopt;
    } else if (value.is_string() &&
               value.get_ref<const std::string&>().find('\0') == std::string::npos) {
      out[name] = value.get<std::string>();
    } else {
      err = "field \"vars\": the value of " + name + " must be a string without NUL bytes, or null";
      return false;
    }
  }
  return true;
}

}  // namespace

Result<AppConfig> appFromJson(const json& j) {
  if (!j.is_object()) return Error{"app: expected a JSON object"};
  AppConfig a;
  config::AppSpec& s = a.spec;
  std::string err, mode = "fork";
  bool ok =
      field(j, "name", s.name, err) && field(j, "script", s.script, err) &&
      field(j, "args", s.args, err) && field(j, "cwd", s.cwd, err) &&
      field(j, "interpreter", s.interpreter, err) && field(j, "exec_mode", mode, err) &&
      field(j, "instances", s.instances, err) &&
      field(j, "max_memory_restart", s.max_memory_restart, err) &&
      millis(j, "min_uptime", s.min_uptime, err) && field(j, "max_restarts", s.max_restarts, err) &&
      millis(j, "restart_delay", s.restart_delay, err) &&
      millis(j, "exp_backoff_restart_delay", s.exp_backoff_restart_delay, err) &&
      millis(j, "kill_timeout", s.kill_timeout, err) &&
      millis(j, "listen_timeout", s.listen_timeout, err) &&
      field(j, "wait_ready", s.wait_ready, err) && millis(j, "watchdog", s.watchdog, err) &&
      millis(j, "memory_check_interval", s.memory_check_interval, err) &&
      field(j, "autorestart", s.autorestart, err) && field(j, "env", s.env, err) &&
      field(j, "out_file", s.out_file, err) && field(j, "error_file", s.error_file, err) &&
      field(j, "merge_logs", s.merge_logs, err) &&
      field(j, "log_date_format", s.log_date_format, err) &&
      field(j, "log_max_size", s.log_max_size, err) && field(j, "log_retain", s.log_retain, err) &&
      field(j, "uid", s.uid, err) && field(j, "gid", s.gid, err) &&
      field(j, "builtin_worker", s.builtin_worker, err) &&
      field(j, "ecosystem_path", a.ecosystem_path, err) && field(j, "env_name", a.env_name, err) &&
      field(j, "base_dir", a.base_dir, err) && vars(j, a.vars, err);
  if (!ok) return Error{"app " + s.name + ": " + err};
  if (s.name.empty()) return Error{"app: field \"name\" is required"};
  if (mode != "fork" && mode != "cluster")
    return Error{"app " + s.name + ": exec_mode must be \"fork\" or \"cluster\""};
  s.exec_mode = mode == "cluster" ? config::ExecMode::kCluster : config::ExecMode::kFork;
  if (auto it = j.find("listen"); it != j.end() && it->is_object()) {
    config::ListenAddress l;
    std::string kind = "tcp";
    if (!field(*it, "kind", kind, err) || !field(*it, "host", l.host, err) ||
        !field(*it, "port", l.port, err) || !field(*it, "path", l.path, err) ||
        !field(*it, "text", l.text, err))
      return Error{"app " + s.name + ": listen: " + err};
    l.kind = kind == "unix" ? config::ListenAddress::Kind::kUnix : config::ListenAddress::Kind::kTcp;
    s.listen = l;
  }
  if (s.builtin_worker) s.script = "builtin:worker";
  return a;
}

}  // namespace clusterd::master
