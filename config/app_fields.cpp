// The per-app keys of an ecosystem file: PM2's names and units, plus
// clusterd's `listen`, `watchdog`, log rotation and built-in worker keys
// (`queues`, `health_listen`, `http`).
//
// Design: a table maps each key to its reader, so the list of known keys
// (for "did you mean") and the readers cannot drift apart. Checks that need
// several keys (listen vs exec_mode, worker keys vs script) run after the
// table, in finishApp.
#include <fmt/format.h>

#include <unistd.h>

#include "config/internal.h"
#include "config/units.h"

namespace clusterd::config {
namespace {

constexpr int64_t kMaxInstances = 4096;

template <typename T, typename Read>
void assign(const std::optional<T>& value, Read&& store) {
  if (value.has_value()) store(value.value());
}

// Reads `env` / `env_<name>`: a mapping of variable names to scalars.
// `interpolate` is false for an env_<name> that --env did not select: its
// shape is checked, but its ${VAR} references are not resolved.
std::map<std::string, std::string> readEnv(Reader& r, const Reader::Entry& e,
                                           const std::string& path, bool interpolate) {
  std::map<std::string, std::string> out;
  std::vector<Reader::Entry> vars;
  if (!r.entries(e.value, Reader::markOf(e.value, e.key_node), path, vars)) return out;
  for (const auto& v : vars) {
    const std::string field = path + "." + v.key;
    if (v.key.empty() || v.key.find('=') != std::string::npos) {
      r.error(v.key_node.Mark(), field,
              "an environment variable name must be non-empty and hold no `=`");
      continue;
    }
    const YAML::Mark at = Reader::markOf(v.value, v.key_node);
    if (!v.value.IsScalar()) {
      r.error(
          at, field,
          fmt::format("expected a string, number or boolean, got {}", Reader::describe(v.value)));
      continue;
    }
    if (!interpolate) {
      out[v.key] = v.value.Scalar();
      continue;
    }
    assign(r.string(v.value, at, field), [&](const std::string& s) { out[v.key] = s; });
  }
  return out;
}

const std::vector<Field<AppDraft>>& appFields() {
  using E = Reader::Entry;
  static const std::vector<Field<AppDraft>> fields = {
      {"name", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         d.has_name = true;
         d.name_at = e.mark();
         assign(r.string(e.value, e.mark(), p), [&](const std::string& s) { d.spec.name = s; });
       }},
      {"script", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         d.has_script = true;
         d.script_at = e.mark();
         assign(r.string(e.value, e.mark(), p), [&](const std::string& s) { d.spec.script = s; });
       }},
      {"args", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         d.process_keys.emplace_back("args", e.key_node.Mark());
         assign(r.words(e.value, e.mark(), p), [&](auto v) { d.spec.args = std::move(v); });
       }},
      {"cwd", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         assign(r.string(e.value, e.mark(), p), [&](const std::string& s) { d.spec.cwd = s; });
       }},
      {"interpreter", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         d.process_keys.emplace_back("interpreter", e.key_node.Mark());
         assign(r.string(e.value, e.mark(), p), [&](const std::string& s) {
           // PM2 writes `interpreter: none` for "run the script directly".
           d.spec.interpreter = s == "none" ? "" : s;
         });
       }},
      {"exec_mode", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         assign(r.choice(e.value, e.mark(), p, {"fork", "cluster", "fork_mode", "cluster_mode"}), [&](const std::string& s) {
           d.exec_mode_set = true;
           d.spec.exec_mode = s.rfind("cluster", 0) == 0 ? ExecMode::kCluster : ExecMode::kFork;
         });
       }},
      {"instances", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         constexpr std::string_view kExpected = "`max`, -1 (one per core but one), or a count from 1 to 4096";
         auto t = r.text(e.value, e.mark(), p, kExpected);
         if (!t) return;
         d.spec.instances_text = *t;
         if (*t == "max") {
           d.instances_max = true;
           return;
         }
         if (*t == "0") {
           r.error(e.mark(), p, "0 instances is not allowed (PM2 read 0 as one per core: write `max`)");
           return;
         }
         char* end = nullptr;
         long long n = std::strtoll(t->c_str(), &end, 10);
         if (t->empty() || *end != '\0' || n < -1 || n > kMaxInstances) {
           r.error(e.mark(), p, fmt::format("expected {}, got `{}`", kExpected, *t));
           return;
         }
         d.instances = n;
       }},
      {"listen", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         d.listen_at = e.mark();
         auto t = r.text(e.value, e.mark(), p, "`host:port` or a Unix socket path");
         if (!t) return;
         std::string why;
         auto addr = parseListen(*t, d.base_dir, why);
         if (!addr) {
           r.error(e.mark(), p, why);
           return;
         }
         d.spec.listen = std::move(*addr);
       }},
      {"max_memory_restart", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         assign(r.memory(e.value, e.mark(), p), [&](uint64_t v) { d.spec.max_memory_restart = v; });
       }},
      {"min_uptime", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         assign(r.duration(e.value, e.mark(), p), [&](Millis v) { d.spec.min_uptime = v; });
       }},
      {"max_restarts", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         assign(r.integer(e.value, e.mark(), p, 0, 1'000'000), [&](int64_t v) { d.spec.max_restarts = static_cast<int>(v); });
       }},
      {"restart_delay", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         assign(r.duration(e.value, e.mark(), p), [&](Millis v) { d.spec.restart_delay = v; });
       }},
      {"exp_backoff_restart_delay", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         assign(r.duration(e.value, e.mark(), p), [&](Millis v) { d.spec.exp_backoff_restart_delay = v; });
       }},
      {"kill_timeout", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         assign(r.duration(e.value, e.mark(), p, Millis(1)), [&](Millis v) { d.spec.kill_timeout = v; });
       }},
      {"listen_timeout", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         assign(r.duration(e.value, e.mark(), p, Millis(1)), [&](Millis v) { d.spec.listen_timeout = v; });
       }},
      {"wait_ready", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         assign(r.boolean(e.value, e.mark(), p), [&](bool v) { d.spec.wait_ready = v; });
       }},
      {"watchdog", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         auto v = r.duration(e.value, e.mark(), p);
         if (v && v->count() != 0 && *v < Millis(100)) {
           r.error(e.mark(), p, "must be 0 (off) or at least 100ms");
           return;
         }
         assign(v, [&](Millis m) { d.spec.watchdog = m; });
       }},
      {"memory_check_interval", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         assign(r.duration(e.value, e.mark(), p, Millis(100)), [&](Millis v) { d.spec.memory_check_interval = v; });
       }},
      {"autorestart", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         assign(r.boolean(e.value, e.mark(), p), [&](bool v) { d.spec.autorestart = v; });
       }},
      {"env", [](Reader& r, const E& e, const std::string& p, AppDraft& d) { d.spec.env = readEnv(r, e, p, true); }},
      {"out_file", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         assign(r.string(e.value, e.mark(), p), [&](const std::string& s) { d.spec.out_file = s; });
       }},
      {"error_file", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         assign(r.string(e.value, e.mark(), p), [&](const std::string& s) { d.spec.error_file = s; });
       }},
      {"merge_logs", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         assign(r.boolean(e.value, e.mark(), p), [&](bool v) { d.spec.merge_logs = v; });
       }},
      {"log_date_format", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         assign(r.string(e.value, e.mark(), p), [&](const std::string& s) { d.spec.log_date_format = momentToStrftime(s); });
       }},
      {"log_max_size", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         auto v = r.memory(e.value, e.mark(), p);
         if (v && *v != 0 && *v < 4096) {
           r.error(e.mark(), p, "must be 0 (never rotate) or at least 4K");
           return;
         }
         assign(v, [&](uint64_t b) { d.spec.log_max_size = b; });
       }},
      {"log_retain", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         assign(r.integer(e.value, e.mark(), p, 0, 1000), [&](int64_t v) { d.spec.log_retain = static_cast<int>(v); });
       }},
      {"uid", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         d.uid_at = e.mark();
         assign(r.string(e.value, e.mark(), p), [&](const std::string& s) { d.spec.uid = s; });
       }},
      {"gid", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         d.gid_at = e.mark();
         assign(r.string(e.value, e.mark(), p), [&](const std::string& s) { d.spec.gid = s; });
       }},
      {"queues", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         d.worker_keys.emplace_back("queues", e.key_node.Mark());
         readWorkerQueues(r, e, p, d.spec.worker);
       }},
      {"health_listen", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         d.worker_keys.emplace_back("health_listen", e.key_node.Mark());
         d.health_listen_at = e.mark();
         readHealthListen(r, e, p, d.base_dir, d.spec.worker);
       }},
      {"http", [](Reader& r, const E& e, const std::string& p, AppDraft& d) {
         d.worker_keys.emplace_back("http", e.key_node.Mark());
         readWorkerHttp(r, e, p, d.spec.worker);
       }},
  };
  return fields;
}

std::string baseName(const std::string& script) {
  std::string s = script.substr(
      script.find_last_of('/') == std::string::npos ? 0 : script.find_last_of('/') + 1);
  size_t dot = s.find('.');
  return dot == std::string::npos || dot == 0 ? s : s.substr(0, dot);
}

bool isValidAppName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  if (!std::isalnum(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
      return false;
  }
  return true;
}

// The checks that involve several keys of one app, and path resolution.
void finishApp(Reader& r, AppDraft& d) {
  AppSpec& s = d.spec;
  if (!d.has_script) {
    r.error(d.at, d.path + ".script",
            "missing; every app needs a `script` (a program path, a command, or builtin:worker)");
  } else if (s.script.empty()) {
    r.error(d.script_at, d.path + ".script", "must not be empty");
  }
  s.builtin_worker = s.script == "builtin:worker";
  if (!d.has_name) {
    if (s.builtin_worker || s.script.empty()) {
      if (d.has_script)
        r.error(d.at, d.path + ".name", "missing; a builtin:worker app needs a `name`");
    } else {
      s.name = baseName(s.script);  // PM2's default: the script's file name
    }
  }
  if (!s.name.empty() && !isValidAppName(s.name)) {
    r.error(d.has_name ? d.name_at : d.script_at, d.path + ".name",
            fmt::format("`{}` is not a valid app name: use 1 to 64 letters, digits, `-`, `_` or "
                        "`.`, starting with a "
                        "letter or digit",
                        s.name));
  }
  if (s.builtin_worker) {
    for (const auto& [key, mark] : d.process_keys) {
      r.error(
          mark, d.path + "." + key,
          fmt::format("`{}` does not apply to script: builtin:worker (clusterd runs itself)", key));
    }
  } else {
    for (const auto& [key, mark] : d.worker_keys) {
      r.error(
          mark, d.path + "." + key,
          fmt::format("`{}` is a setting of the built-in worker; it needs `script: builtin:worker`",
                      key));
    }
  }
  if (s.listen) {
    if (!d.exec_mode_set) {
      s.exec_mode = ExecMode::kCluster;  // a listening app shares the socket
    } else if (s.exec_mode == ExecMode::kFork) {
      r.error(d.listen_at, d.path + ".listen",
              "`listen` needs exec_mode: cluster (the master binds the socket and passes it to "
              "every instance; "
              "instances: 1 is fine); in fork mode the program binds its own port");
    }
  }
  bool has_queues_key = false;
  for (const auto& wk : d.worker_keys) has_queues_key = has_queues_key || wk.first == "queues";
  if (s.builtin_worker && !s.listen && !has_queues_key && d.listen_at.is_null()) {
    r.error(d.at, d.path,
            "a builtin:worker app with neither `listen` nor `queues` would do nothing; add one");
  }
  if (s.builtin_worker) checkJobApi(r, s, d.at, d.path);
  if (s.builtin_worker && s.worker.job_api.enabled && !s.listen && d.listen_at.is_null()) {
    YAML::Mark http_at = d.at;
    for (const auto& [key, mark] : d.worker_keys)
      if (key == "http") http_at = mark;
    // A warning: the same app may run standalone with `clusterd worker
    // --listen`, which gives it the front the file does not.
    r.warning(http_at, d.path + ".http.job_api",
              fmt::format("app `{}` has no `listen`, and the job API is served only there "
                          "(health_listen serves /health and /metrics alone), so under the "
                          "master it is off; add `listen` or remove `job_api`",
                          s.name));
  }
  if (!s.cwd.empty()) s.cwd = absolutePath(s.cwd, d.base_dir);
  const std::string& dir = s.cwd.empty() ? d.base_dir : s.cwd;
  if (!s.out_file.empty()) s.out_file = absolutePath(s.out_file, d.base_dir);
  if (!s.error_file.empty()) s.error_file = absolutePath(s.error_file, d.base_dir);
  if (!s.builtin_worker && !s.script.empty()) {
    if (s.script.find('/') != std::string::npos) {
      s.script = absolutePath(s.script, dir);
      if (::access(s.script.c_str(), F_OK) != 0) {
        r.warning(d.script_at, d.path + ".script",
                  fmt::format("{} does not exist on this machine", s.script));
      }
    } else if (::access(absolutePath(s.script, dir).c_str(), F_OK) == 0) {
      s.script = absolutePath(s.script, dir);  // like PM2: a file in cwd wins over PATH
    }
  }
}

}  // namespace

void readApp(Reader& r, const YAML::Node& node, size_t index, const LoadOptions& options,
             AppDraft& d) {
  d.path = fmt::format("apps[{}]", index);
  d.at = node.Mark();
  std::vector<Reader::Entry> entries;
  if (!r.entries(node, d.at, d.path, entries)) return;
  const auto& fields = appFields();
  const std::string selected = options.env_name.empty() ? "" : "env_" + options.env_name;
  for (const auto& e : entries) {
    const std::string field = d.path + "." + e.key;
    bool found = false;
    for (const auto& f : fields) {
      if (f.key == e.key) {
        f.read(r, e, field, d);
        found = true;
        break;
      }
    }
    if (found) continue;
    if (e.key.rfind("env_", 0) == 0 && e.key.size() > 4) {
      bool is_selected = e.key == selected;
      auto env = readEnv(r, e, field, is_selected);
      if (is_selected) {
        d.defines_selected_env = true;
        d.selected_env = std::move(env);
      }
      continue;
    }
    if (readPm2OnlyKey(r, e, field)) continue;
    r.unknownKey(e, field, "an app", keysOf(fields));
  }
  for (auto& [k, v] : d.selected_env) d.spec.env[k] = v;
  finishApp(r, d);
}

}  // namespace clusterd::config
