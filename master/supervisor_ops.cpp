// Supervisor, the operator half: starting apps, giving running apps new
// specs, resolving targets, stop, restart, reload, delete and scale. The
// lifecycle itself is in supervisor.cpp, the JSON views in
// supervisor_views.cpp.
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <nlohmann/json.hpp>

#include "common/log.h"
#include "master/listen.h"
#include "master/supervisor.h"

namespace clusterd::master {

using nlohmann::json;

namespace {
constexpr std::string_view kSupervisorOpsLog = "master";

bool allDigits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string joinPath(const std::string& dir, const std::string& p) {
  if (p.empty() || p.front() == '/' || dir.empty()) return p;
  return dir + "/" + p;
}

std::string envValue(const std::vector<std::string>& env, const std::string& key) {
  for (auto& kv : env)
    if (kv.size() > key.size() && kv.compare(0, key.size(), key) == 0 && kv[key.size()] == '=')
      return kv.substr(key.size() + 1);
  return "";
}

// Finds an executable the way execvp would; "" when there is none.
std::string searchPath(const std::string& name, const std::string& path_var) {
  std::string path = path_var.empty() ? "/usr/local/bin:/usr/bin:/bin" : path_var;
  size_t start = 0;
  while (start <= path.size()) {
    size_t colon = path.find(':', start);
    std::string dir = path.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return "";
}

// The program to exec for `script` run from `cwd`, or an error a user can act on.
Result<std::string> resolveProgram(const std::string& app, const std::string& script,
                                   const std::string& cwd, const std::string& path_var,
                                   bool needs_exec) {
  bool has_slash = script.find('/') != std::string::npos;
  std::string local = joinPath(cwd, script);
  struct stat st {};
  if (has_slash || ::stat(local.c_str(), &st) == 0) {
    if (::stat(local.c_str(), &st) != 0)
      return Error{"app " + app + ": script " + local + " does not exist (check `script` and `cwd`)"};
    if (!S_ISREG(st.st_mode))
      return Error{"app " + app + ": script " + local + " is not a regular file"};
    if (needs_exec && ::access(local.c_str(), X_OK) != 0)
      return Error{"app " + app + ": script " + local +
                   " is not executable (chmod +x it, or set `interpreter`)"};
    return local;
  }
  std::string found = searchPath(script, path_var);
  if (found.empty())
    return Error{"app " + app + ": script \"" + script + "\" is neither a file in " + cwd +
                 " nor a program on PATH"};
  return found;
}

struct UserIds {
  int uid = -1;
  int gid = -1;  // the user's primary group, -1 for a numeric uid without an account
};

Result<UserIds> lookupUid(const std::string& app, const std::string& user) {
  struct passwd* pw = allDigits(user) ? ::getpwuid(static_cast<uid_t>(std::stoul(user)))
                                      : ::getpwnam(user.c_str());
  if (pw) return UserIds{static_cast<int>(pw->pw_uid), static_cast<int>(pw->pw_gid)};
  if (allDigits(user)) return UserIds{std::stoi(user), -1};
  return Error{"app " + app + ": uid: no user named \"" + user + "\""};
}

Result<int> lookupGid(const std::string& app, const std::string& group) {
  if (allDigits(group)) return std::stoi(group);
  struct group* gr = ::getgrnam(group.c_str());
  if (!gr) return Error{"app " + app + ": gid: no group named \"" + group + "\""};
  return static_cast<int>(gr->gr_gid);
}

}  // namespace

Result<void> Supervisor::checkRoom(const std::string& name, size_t instances) const {
  size_t others = 0;
  for (auto& [n, a] : apps_)
    if (n != name) others += a->slots.size();
  if (!apps_.count(name) && apps_.size() >= options_.max_apps)
    return Error{"app " + name + ": the daemon already runs " + std::to_string(apps_.size()) +
                 " apps, its limit (CLUSTERD_MAX_APPS); delete some first"};
  if (others + instances > options_.max_workers)
    return Error{"app " + name + ": " + std::to_string(instances) + " instances would make " +
                 std::to_string(others + instances) + " workers, over the daemon's limit of " +
                 std::to_string(options_.max_workers) + " (CLUSTERD_MAX_WORKERS)"};
  return success();
}

Result<void> Supervisor::startApp(AppConfig cfg) {
  auto& spec = cfg.spec;
  const std::string name = spec.name;
  if (name.empty()) return Error{"app without a name"};
  if (spec.instances < 1)
    return Error{"app " + name + ": instances is " + std::to_string(spec.instances) +
                 "; set it to 1 or more (or \"max\" for one per core)"};
  if (auto r = checkRoom(name, static_cast<size_t>(spec.instances)); !r) return r;
  if (auto it = apps_.find(name); it != apps_.end()) {
    App& old = *it->second;
    if (old.deleting) return Error{"app " + name + " is being deleted; try again in a moment"};
    for (auto& s : old.slots)
      if (hasProcess(s->main->state) || s->incoming || !s->retiring.empty() ||
          s->main->state == WorkerState::kWaiting)
        return Error{"app " + name + " is already running; use `clusterd reload " + name +
                     "` or `clusterd restart " + name + "`"};
    for (auto& s : old.slots) dropWorker(s->main);
    forgetApp(it);
  }
  if (auto r = prepare(cfg); !r) return r;
  // The user the workers run as, when it is not the master's: their log
  // directories must be safe from them (master/logs.h).
  std::optional<LogUser> other_user;
  if (!spec.uid.empty()) {
    auto u = lookupUid(name, spec.uid);
    if (!u) return u.error();
    if (static_cast<uid_t>(u->uid) != ::geteuid())
      other_user =
          LogUser{static_cast<uid_t>(u->uid), static_cast<gid_t>(u->gid >= 0 ? u->gid : u->uid)};
  }
  if (!spec.gid.empty()) {
    auto g = lookupGid(name, spec.gid);
    if (!g) return g.error();
    if (other_user) other_user->gid = static_cast<gid_t>(*g);
  }

  auto app = std::make_unique<App>();
  app->cfg = std::move(cfg);
  const auto& s = app->cfg.spec;
  if (s.exec_mode == config::ExecMode::kCluster && s.listen) {
    if (s.listen->kind == config::ListenAddress::Kind::kTcp) {
      auto port = probeTcpPort(s.listen->host, s.listen->port, s.listen->text);
      if (!port) return Error{"app " + name + ": " + port.error().message};
      app->port = *port;
    } else {
      auto fd = bindUnix(joinPath(s.cwd, s.listen->path));
      if (!fd) return Error{"app " + name + ": " + fd.error().message};
      app->shared_fd = std::move(*fd);
    }
  }
  auto [out, err] = logPaths(s);
  app->out =
      std::make_shared<LogFile>(out, s.log_max_size, s.log_retain, s.log_date_format, other_user);
  app->err = s.merge_logs ? app->out
                          : std::make_shared<LogFile>(err, s.log_max_size, s.log_retain,
                                                      s.log_date_format, other_user);
  for (auto* f : {&app->out, &app->err})
    if (!(*f)->refusal().empty()) return Error{"app " + name + ": " + (*f)->refusal()};
  if (other_user) {
    // Its own session (see SpawnRequest) and its own notify socket, which
    // only its user may reach.
    app->other_user = true;
    if (options_.open_app_notify) {
      auto ns = options_.open_app_notify(name, other_user->uid, other_user->gid);
      if (!ns) return Error{"app " + name + ": " + ns.error().message};
      app->notify_tag = name;
      app->notify_socket = *ns;
    }
  }
  App& ref = *app;
  apps_[name] = std::move(app);
  for (int i = 0; i < s.instances; ++i) {
    auto r = addSlot(ref);
    if (!r) {
      ref.deleting = true;
      for (auto& slot : ref.slots) stopWorker(*slot->main, Worker::AfterStop::kRemoveSlot);
      scheduleGc();
      return r;
    }
  }
  for (auto& slot : ref.slots) startWorker(*slot->main);
  scheduleTick(ref);
  log::info(kSupervisorOpsLog, "{}: started {} {} instance(s)", name, s.instances,
            s.exec_mode == config::ExecMode::kCluster ? "cluster" : "fork");
  return success();
}

Result<void> Supervisor::prepare(AppConfig& cfg) const {
  auto& spec = cfg.spec;
  const std::string& name = spec.name;
  if (spec.cwd.empty())
    spec.cwd = cfg.base_dir;
  else
    spec.cwd = joinPath(cfg.base_dir, spec.cwd);
  if (!spec.builtin_worker) {
    std::string path_var =
        spec.env.count("PATH") ? spec.env.at("PATH") : envValue(options_.base_env, "PATH");
    if (!spec.interpreter.empty()) {
      auto interp = resolveProgram(name, spec.interpreter, spec.cwd, path_var, true);
      if (!interp) return Error{interp.error().message + " (interpreter)"};
      auto script = resolveProgram(name, spec.script, spec.cwd, path_var, false);
      if (!script) return script.error();
    } else {
      auto script = resolveProgram(name, spec.script, spec.cwd, path_var, true);
      if (!script) return script.error();
    }
  }
  if ((!spec.uid.empty() || !spec.gid.empty()) && ::geteuid() != 0)
    return Error{"app " + name +
                 ": uid/gid need the daemon to run as root; remove them or run as root"};
  return success();
}

std::pair<std::string, std::string> Supervisor::logPaths(const config::AppSpec& s) const {
  return {s.out_file.empty() ? options_.log_dir + "/" + s.name + "-out.log"
                             : joinPath(s.cwd, s.out_file),
          s.error_file.empty() ? options_.log_dir + "/" + s.name + "-error.log"
                               : joinPath(s.cwd, s.error_file)};
}

namespace {

// How a setting a running app keeps reads in a message; "" = not set.
std::string listenText(const config::AppSpec& s) {
  if (!s.listen) return "";
  if (s.listen->kind == config::ListenAddress::Kind::kUnix) return joinPath(s.cwd, s.listen->path);
  return s.listen->host + ":" + std::to_string(s.listen->port);
}

std::string shown(const std::string& v) {
  return v.empty() ? "unset" : "`" + v + "`";
}

}  // namespace

// A running app's sockets, users and log files are set up once, when it
// starts; a reload or restart replaces processes, not those.
Result<void> Supervisor::checkKept(const App& app, const AppConfig& next) const {
  const config::AppSpec& was = app.cfg.spec;
  const config::AppSpec& now = next.spec;
  auto mode = [](const config::AppSpec& s) {
    return std::string(s.exec_mode == config::ExecMode::kCluster ? "cluster" : "fork");
  };
  auto script = [](const config::AppSpec& s) {
    return std::string(s.builtin_worker ? "builtin:worker" : "a program");
  };
  auto [was_out, was_err] = logPaths(was);
  auto [now_out, now_err] = logPaths(now);
  const std::pair<const char*, std::pair<std::string, std::string>> kept[] = {
      {"exec_mode", {mode(was), mode(now)}},
      {"script", {script(was), script(now)}},
      {"listen", {listenText(was), listenText(now)}},
      {"uid", {was.uid, now.uid}},
      {"gid", {was.gid, now.gid}},
      {"out_file", {was_out, now_out}},
      {"error_file", {was_err, now_err}},
      {"merge_logs", {was.merge_logs ? "true" : "false", now.merge_logs ? "true" : "false"}},
      {"log_date_format", {was.log_date_format, now.log_date_format}},
      {"log_max_size", {std::to_string(was.log_max_size), std::to_string(now.log_max_size)}},
      {"log_retain", {std::to_string(was.log_retain), std::to_string(now.log_retain)}},
  };
  const std::string& name = now.name;
  const std::string source = next.ecosystem_path.empty() ? "the new spec" : next.ecosystem_path;
  for (const auto& [field, values] : kept) {
    if (values.first == values.second) continue;
    std::string todo = next.ecosystem_path.empty()
                           ? "`clusterd delete " + name + "`, then start it again"
                           : "`clusterd delete " + name + "`, then `clusterd start " +
                                 next.ecosystem_path + " --only " + name + "`";
    return Error{"app " + name + ": `" + field + "` is " + shown(values.second) + " in " + source +
                 " but " + shown(values.first) +
                 " in the running app, which keeps it until it is deleted; nothing was changed. "
                 "To apply it: " +
                 todo};
  }
  return success();
}

Result<void> Supervisor::updateSpecs(const std::string& target, std::vector<AppConfig> cfgs) {
  std::string err;
  auto targets = resolve(target, err);
  if (!err.empty()) return Error{err};
  std::vector<std::pair<App*, AppConfig>> updates;
  for (AppConfig& cfg : cfgs) {
    const std::string name = cfg.spec.name;
    auto it = apps_.find(name);
    if (it == apps_.end() || it->second->deleting)
      return Error{"app " + name +
                   ": no such app runs (see `clusterd status`); nothing was changed"};
    App* app = it->second.get();
    bool covered =
        std::any_of(targets.begin(), targets.end(), [&](auto& t) { return t.first == app; });
    if (!covered)
      return Error{"app " + name + " is not part of the target \"" + target +
                   "\"; nothing was changed"};
    if (auto r = prepare(cfg); !r) return Error{r.error().message + "; nothing was changed"};
    if (auto r = checkKept(*app, cfg); !r) return r;
    int instances = 0;
    for (auto& s : app->slots) instances += s->removing ? 0 : 1;
    if (cfg.spec.instances != instances)
      log::info(kSupervisorOpsLog, "{}: keeps {} instance(s) (its file says {}; `clusterd scale` changes it)",
                name, instances, cfg.spec.instances);
    cfg.spec.instances = instances;
    updates.emplace_back(app, std::move(cfg));
  }
  for (auto& [app, cfg] : updates) {
    app->cfg = std::move(cfg);
    log::info(kSupervisorOpsLog, "{}: new spec from {}", app->cfg.spec.name,
              app->cfg.ecosystem_path.empty() ? "the control socket" : app->cfg.ecosystem_path);
  }
  return success();
}

Result<void> Supervisor::addSlot(App& app) {
  auto slot = std::make_unique<Slot>();
  slot->id = next_slot_id_++;
  int instance = 0;
  for (auto& s : app.slots)
    if (!s->removing) ++instance;
  slot->instance = instance;
  slot->main = newWorker(app, *slot);
  auto r = ensureListener(app, *slot);
  if (!r) {
    dropWorker(slot->main);
    return r;
  }
  app.slots.push_back(std::move(slot));
  return success();
}

Result<void> Supervisor::ensureListener(App& app, Slot& slot) {
  const auto& s = app.cfg.spec;
  if (s.exec_mode != config::ExecMode::kCluster || !s.listen) return success();
  if (s.listen->kind != config::ListenAddress::Kind::kTcp || slot.listen_fd) return success();
  auto fd = bindTcpReusePort(s.listen->host, app.port, s.listen->text);
  if (!fd) return Error{"app " + s.name + ": " + fd.error().message};
  slot.listen_fd = std::move(*fd);
  return success();
}

Result<SpawnRequest> Supervisor::buildSpawn(App& app, Slot& slot) {
  const auto& s = app.cfg.spec;
  auto l = ensureListener(app, slot);
  if (!l) return l.error();
  SpawnRequest r;
  r.cwd = s.cwd;
  r.out = app.out;
  r.err = app.err;
  bool cluster = s.exec_mode == config::ExecMode::kCluster && s.listen;
  if (cluster) r.listen_fd = slot.listen_fd ? slot.listen_fd.get() : app.shared_fd.get();
  std::string program;
  std::vector<std::string> args;
  if (s.builtin_worker) {
    program = options_.worker_exe.empty() ? options_.self_exe : options_.worker_exe;
    args = {"worker", "--ecosystem", app.cfg.ecosystem_path, "--app", s.name};
    if (!app.cfg.env_name.empty()) {
      args.push_back("--env");
      args.push_back(app.cfg.env_name);
    }
  } else if (!s.interpreter.empty()) {
    program = s.interpreter;
    args.push_back(s.script);
    args.insert(args.end(), s.args.begin(), s.args.end());
  } else {
    program = s.script.find('/') != std::string::npos ? joinPath(s.cwd, s.script) : s.script;
    if (program == s.script && ::access(joinPath(s.cwd, s.script).c_str(), X_OK) == 0)
      program = joinPath(s.cwd, s.script);
    args = s.args;
  }
  static constexpr std::string_view kOurs[] = {"LISTEN_FDS=", "LISTEN_PID=", "LISTEN_FDNAMES=",
                                               "NOTIFY_SOCKET=", "CLUSTERD_APP=", "CLUSTERD_INSTANCE=",
                                               "NODE_APP_INSTANCE=", "WATCHDOG_USEC=", "WATCHDOG_PID="};
  std::map<std::string, std::string> env;
  for (auto& kv : options_.base_env) {
    bool ours = std::any_of(std::begin(kOurs), std::end(kOurs),
                            [&](std::string_view p) { return kv.starts_with(p); });
    auto eq = kv.find('=');
    if (!ours && eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  // A built-in worker reads its ecosystem file again: it gets the variables
  // the reading `clusterd` resolved the file from (set, or removed when they
  // were unset there), so it sees what that command saw, not the daemon's
  // environment. The app's own `env` still comes after.
  if (s.builtin_worker) {
    for (const auto& [k, v] : app.cfg.vars) {
      if (v)
        env[k] = *v;
      else
        env.erase(k);
    }
  }
  for (auto& [k, v] : s.env) env[k] = v;
  env["CLUSTERD_APP"] = s.name;
  env["CLUSTERD_INSTANCE"] = std::to_string(slot.instance);
  env["NODE_APP_INSTANCE"] = std::to_string(slot.instance);
  if (!app.notify_socket.empty())
    env["NOTIFY_SOCKET"] = app.notify_socket;
  else if (!options_.notify_socket.empty())
    env["NOTIFY_SOCKET"] = options_.notify_socket;
  // The systemd convention: a program that supports a watchdog learns the
  // period from WATCHDOG_USEC and pings at about half of it.
  if (s.watchdog.count() > 0) env["WATCHDOG_USEC"] = std::to_string(s.watchdog.count() * 1000);
  if (cluster) {
    env["LISTEN_FDS"] = "1";
    env["LISTEN_FDNAMES"] = s.name;
  }
  for (auto& [k, v] : env) r.env.push_back(k + "=" + v);
  if (options_.use_trampoline) {
    // <self> __exec <master pid> <set LISTEN_PID 0|1> <program> <args...>
    r.file = options_.self_exe;
    r.args = {"__exec", std::to_string(::getpid()), cluster ? "1" : "0", program};
    r.trampoline_makes_group = !app.other_user;
    r.args.insert(r.args.end(), args.begin(), args.end());
  } else {
    r.file = program;
    r.args = std::move(args);
  }
  if (!s.uid.empty()) {
    auto u = lookupUid(s.name, s.uid);
    if (!u) return u.error();
    r.uid = u->uid;
    // Without an explicit gid the worker takes the user's primary group,
    // never the daemon's (root's) group.
    r.gid = u->gid >= 0 ? u->gid : u->uid;
  }
  if (!s.gid.empty()) {
    auto g = lookupGid(s.name, s.gid);
    if (!g) return g.error();
    r.gid = *g;
  }
  return r;
}

std::vector<std::pair<App*, Slot*>> Supervisor::resolve(const std::string& target, std::string& err) {
  std::vector<std::pair<App*, Slot*>> out;
  for (auto& [name, app] : apps_) {
    if (app->deleting) continue;
    for (auto& slot : app->slots) {
      if (slot->removing) continue;
      if (target == "all" || target == name || (allDigits(target) && std::to_string(slot->id) == target))
        out.emplace_back(app.get(), slot.get());
    }
  }
  if (out.empty() && target != "all")
    err = "no app or worker id \"" + target + "\" (see `clusterd status`)";
  return out;
}

Result<int> Supervisor::startTarget(const std::string& target) {
  std::string err;
  auto targets = resolve(target, err);
  if (!err.empty()) return Error{err};
  int started = 0;
  for (auto& [app, slot] : targets) {
    Worker& m = *slot->main;
    if (m.state == WorkerState::kStopping) {
      m.after_stop = Worker::AfterStop::kStart;
      ++started;
      continue;
    }
    if (hasProcess(m.state)) continue;
    platform_.cancelTimer(m.restart_timer);
    m.restart_timer = 0;
    slot->history = RestartHistory{};
    startWorker(m);
    ++started;
  }
  return started;
}

Result<int> Supervisor::stop(const std::string& target) {
  std::string err;
  auto targets = resolve(target, err);
  if (!err.empty()) return Error{err};
  for (auto& [app, slot] : targets) {
    app->reload_queue.clear();
    if (slot->incoming) stopWorker(*slot->incoming, Worker::AfterStop::kNothing);
    stopWorker(*slot->main, Worker::AfterStop::kNothing);
  }
  scheduleGc();
  return static_cast<int>(targets.size());
}

Result<int> Supervisor::restart(const std::string& target) {
  std::string err;
  auto targets = resolve(target, err);
  if (!err.empty()) return Error{err};
  for (auto& [app, slot] : targets) {
    app->reload_queue.clear();
    slot->history = RestartHistory{};
    if (slot->incoming) stopWorker(*slot->incoming, Worker::AfterStop::kNothing);
    stopWorker(*slot->main, Worker::AfterStop::kStart);
  }
  return static_cast<int>(targets.size());
}

Result<int> Supervisor::reload(const std::string& target, int parallel) {
  std::string err;
  auto targets = resolve(target, err);
  if (!err.empty()) return Error{err};
  std::vector<App*> touched;
  for (auto& [app, slot] : targets) {
    if (std::find(app->reload_queue.begin(), app->reload_queue.end(), slot->id) ==
        app->reload_queue.end())
      app->reload_queue.push_back(slot->id);
    app->reload_parallel = std::max(1, parallel);
    if (std::find(touched.begin(), touched.end(), app) == touched.end()) touched.push_back(app);
  }
  for (App* app : touched) pumpReload(*app);
  return static_cast<int>(targets.size());
}

Result<int> Supervisor::remove(const std::string& target) {
  std::string err;
  auto targets = resolve(target, err);
  if (!err.empty()) return Error{err};
  for (auto& [app, slot] : targets) {
    if (target == "all" || target == app->cfg.spec.name) app->deleting = true;
    app->reload_queue.clear();
    if (slot->incoming) stopWorker(*slot->incoming, Worker::AfterStop::kNothing);
    stopWorker(*slot->main, Worker::AfterStop::kRemoveSlot);
  }
  scheduleGc();
  return static_cast<int>(targets.size());
}

Result<int> Supervisor::scale(const std::string& name, const std::string& count) {
  auto it = apps_.find(name);
  if (it == apps_.end() || it->second->deleting) return Error{"no app named \"" + name + "\""};
  App& app = *it->second;
  int current = 0;
  for (auto& s : app.slots) current += s->removing ? 0 : 1;
  int n = 0;
  std::string digits = (count.starts_with('+') || count.starts_with('-')) ? count.substr(1) : count;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (digits.empty() || ec != std::errc() || p != digits.data() + digits.size())
    return Error{"scale: \"" + count + "\" is not N, +N or -N"};
  int64_t wanted = count.starts_with('+')   ? int64_t{current} + n
                   : count.starts_with('-') ? int64_t{current} - n
                                            : n;
  if (wanted > current) {
    if (auto r = checkRoom(name, static_cast<size_t>(wanted)); !r) return r.error();
  }
  int target = static_cast<int>(std::max<int64_t>(wanted, 0));
  if (target < 1)
    return Error{"scale: " + name + " would have " + std::to_string(target) +
                 " instances; keep at least 1 (use `clusterd stop " + name + "` to stop it)"};
  while (current < target) {
    auto r = addSlot(app);
    if (!r) return r.error();
    startWorker(*app.slots.back()->main);
    ++current;
  }
  for (auto s = app.slots.rbegin(); s != app.slots.rend() && current > target; ++s) {
    if ((*s)->removing) continue;
    (*s)->removing = true;
    if ((*s)->incoming) stopWorker(*(*s)->incoming, Worker::AfterStop::kNothing);
    stopWorker(*(*s)->main, Worker::AfterStop::kRemoveSlot);
    --current;
  }
  scheduleGc();
  return target;
}

void Supervisor::stopAll() {
  for (auto& [name, app] : apps_) {
    app->reload_queue.clear();
    for (auto& slot : app->slots) {
      if (slot->incoming) stopWorker(*slot->incoming, Worker::AfterStop::kNothing);
      stopWorker(*slot->main, Worker::AfterStop::kNothing);
    }
  }
}

}  // namespace clusterd::master
