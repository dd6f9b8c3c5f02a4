// Implementation of queue/scripts.h (the script bodies are generated into
// scripts_embedded.cpp from queue/lua/).
#include "queue/scripts.h"

#include <memory>

namespace clusterd::queue {

const char* scriptName(ScriptId id) {
  switch (id) {
    case ScriptId::kEnqueue: return "enqueue";
    case ScriptId::kReserve: return "reserve";
    case ScriptId::kComplete: return "complete";
    case ScriptId::kFail: return "fail";
    case ScriptId::kExtend: return "extend";
    case ScriptId::kCounts: return "counts";
    case ScriptId::kList: return "list";
    case ScriptId::kJob: return "job";
    case ScriptId::kAdmin: return "admin";
  }
  return "?";
}

std::vector<std::string> queueKeys(const std::string& queue) {
  static const char* kNames[] = {"wait",   "prio",      "delayed", "jobs",      "meta",
                                 "active", "leases",    "lease_jobs", "config", "stats",
                                 "tput",   "completed", "dead",    "wake",      "seq",
                                 "rate",   "unique",    "unique_of", "unique_exp", "results"};
  std::vector<std::string> keys;
  keys.reserve(std::size(kNames));
  std::string prefix = "cq:{" + queue + "}:";
  for (const char* n : kNames) keys.push_back(prefix + n);
  return keys;
}

std::string wakeKey(const std::string& queue) { return "cq:{" + queue + "}:wake"; }

ScriptRunner::ScriptRunner(RedisConnection& conn) : conn_(conn) {
  conn_.onReady([this] { load(); });
}

void ScriptRunner::load() {
  for (size_t i = 0; i < kScriptCount; ++i) {
    conn_.command({"SCRIPT", "LOAD", std::string(scriptBody(static_cast<ScriptId>(i)))},
                  [this, i](const Reply& r) {
                    if (!r.isError()) sha_[i] = r.str();
                  });
  }
}

void ScriptRunner::run(ScriptId id, const std::vector<std::string>& keys,
                       const std::vector<std::string>& args, ReplyCallback cb) {
  size_t i = static_cast<size_t>(id);
  auto evalArgv = [&](const std::string& verb, std::string first) {
    std::vector<std::string> argv;
    argv.reserve(3 + keys.size() + args.size());
    argv.push_back(verb);
    argv.push_back(std::move(first));
    argv.push_back(std::to_string(keys.size()));
    argv.insert(argv.end(), keys.begin(), keys.end());
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  };
  if (sha_[i].empty()) {
    conn_.command(evalArgv("EVAL", std::string(scriptBody(id))), std::move(cb));
    return;
  }
  // The arguments are kept for the NOSCRIPT fallback.
  auto argv = std::make_shared<std::vector<std::string>>(evalArgv("EVALSHA", sha_[i]));
  conn_.command(*argv, [this, i, id, argv, cb = std::move(cb)](const Reply& r) mutable {
    if (r.isError() && r.error().rfind("NOSCRIPT", 0) == 0) {
      sha_[i].clear();
      (*argv)[0] = "EVAL";
      (*argv)[1] = std::string(scriptBody(id));
      conn_.command(std::move(*argv), std::move(cb));
      return;
    }
    cb(r);
  });
}

}  // namespace clusterd::queue
