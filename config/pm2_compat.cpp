// PM2 keys that clusterd does not implement. A PM2 user's file often holds
// some of them; each is either harmless here (accepted, with a warning that
// it is ignored) or would change behaviour clusterd does not provide
// (rejected, saying so and what to use instead).
//
// Design: a key is only "harmless" when ignoring it cannot surprise the
// operator at run time; `watch: false` is harmless, `watch: true` is not.
#include <fmt/format.h>

#include "config/internal.h"

namespace clusterd::config {
namespace {

enum class Verdict { kIgnore, kReject, kIgnoreWhenFalse, kIgnoreWhenTrue };

struct Pm2Key {
  std::string_view key;
  Verdict verdict;
  std::string_view why;  // for rejections: what to do instead
};

constexpr Pm2Key kPm2Keys[] = {
    {"namespace", Verdict::kIgnore, ""},
    {"vizion", Verdict::kIgnore, ""},
    {"automation", Verdict::kIgnore, ""},
    {"pmx", Verdict::kIgnore, ""},
    {"source_map_support", Verdict::kIgnore, ""},
    {"disable_source_map_support", Verdict::kIgnore, ""},
    {"post_update", Verdict::kIgnore, ""},
    {"ignore_watch", Verdict::kIgnore, ""},
    {"watch_options", Verdict::kIgnore, ""},
    {"kill_retry_time", Verdict::kIgnore, ""},
    {"treekill", Verdict::kIgnoreWhenTrue,
     "clusterd always signals a worker's whole process group"},
    {"watch", Verdict::kIgnoreWhenFalse,
     "clusterd does not watch files; restart with `clusterd reload <app>` after a deploy"},
    {"autostart", Verdict::kIgnoreWhenTrue,
     "every app in the file starts with `clusterd start`; remove the app instead"},
    {"time", Verdict::kIgnoreWhenFalse,
     "use log_date_format (e.g. \"YYYY-MM-DD HH:mm:ss\") for timestamps"},
    {"cron_restart", Verdict::kReject,
     "clusterd does not restart on a schedule; run `clusterd reload <app>` from cron"},
    {"node_args", Verdict::kReject,
     "use a wrapper script as `script` that runs node with its flags"},
    {"interpreter_args", Verdict::kReject,
     "use a wrapper script as `script` that runs the interpreter with its flags"},
    {"exec_interpreter", Verdict::kReject, "use `interpreter`"},
    {"combine_logs", Verdict::kReject, "use `merge_logs`"},
    {"log_file", Verdict::kReject, "use `out_file` and `error_file` (a combined file is not kept)"},
    {"log_type", Verdict::kReject, "log lines are written as the program prints them"},
    {"pid_file", Verdict::kReject, "`clusterd status --json` reports every pid"},
    {"increment_var", Verdict::kReject,
     "use CLUSTERD_INSTANCE or NODE_APP_INSTANCE, which every instance gets (the built-in "
     "worker's `health_listen` adds it to its port)"},
    {"instance_var", Verdict::kReject,
     "every instance gets CLUSTERD_INSTANCE and NODE_APP_INSTANCE (instance_var: NODE_APP_INSTANCE "
     "is accepted)"},
    {"stop_exit_codes", Verdict::kReject, "set `autorestart: false` to never restart"},
    {"shutdown_with_message", Verdict::kReject,
     "workers are stopped with SIGTERM, then SIGKILL after kill_timeout"},
    {"append_env_to_name", Verdict::kReject, "give each app its own `name`"},
    {"filter_env", Verdict::kReject, "list the variables an app needs in `env`"},
    {"force", Verdict::kIgnore, ""},
};

}  // namespace

bool readPm2OnlyKey(Reader& r, const Reader::Entry& e, const std::string& path) {
  // PM2's default name for the instance variable is what clusterd sets anyway.
  if (e.key == "instance_var" && e.value.IsScalar() && e.value.Scalar() == "NODE_APP_INSTANCE") {
    return true;
  }
  for (const auto& k : kPm2Keys) {
    if (k.key != e.key) continue;
    const YAML::Mark at = Reader::markOf(e.value, e.key_node);
    switch (k.verdict) {
      case Verdict::kIgnore:
        r.warning(e.key_node.Mark(), path,
                  fmt::format("PM2's `{}` has no effect in clusterd and is ignored", k.key));
        return true;
      case Verdict::kReject:
        r.error(e.key_node.Mark(), path,
                fmt::format("PM2's `{}` is not supported by clusterd: {}", k.key, k.why));
        return true;
      case Verdict::kIgnoreWhenFalse:
      case Verdict::kIgnoreWhenTrue: {
        const bool harmless = k.verdict == Verdict::kIgnoreWhenTrue;
        auto v = e.value.IsScalar() && (e.value.Scalar() == "true" || e.value.Scalar() == "false")
                     ? std::optional<bool>(e.value.Scalar() == "true")
                     : std::nullopt;
        if (v && *v == harmless) return true;  // what clusterd does anyway
        r.error(
            at, path,
            fmt::format("PM2's `{}: {}` is not supported by clusterd: {}", k.key,
                        e.value.IsScalar() ? e.value.Scalar() : Reader::describe(e.value), k.why));
        return true;
      }
    }
  }
  return false;
}

}  // namespace clusterd::config
