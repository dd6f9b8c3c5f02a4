// The queue's Lua scripts and the keys they work on (internal to the queue
// module; docs/QUEUE.md is the public description of both).
//
// Design: every state change that touches more than one key is one script, so
// it is atomic. Scripts are sent with EVALSHA; a NOSCRIPT reply (Redis was
// restarted or flushed its script cache) falls back to EVAL with the body,
// which also caches it again. The SHA1 is learned from SCRIPT LOAD on every
// (re)connection, so no hashing is done here.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "queue/redis.h"

namespace clusterd::queue {

enum class ScriptId { kEnqueue, kReserve, kComplete, kFail, kExtend, kCounts, kList, kJob, kAdmin };
constexpr size_t kScriptCount = 9;

std::string_view scriptBody(ScriptId id);  // generated from queue/lua/*.lua
const char* scriptName(ScriptId id);

// Every key of a queue, in the order the scripts expect them as KEYS. The
// prefix is "cq:{<queue>}:" so a queue's keys share one hash slot.
std::vector<std::string> queueKeys(const std::string& queue);
// The global set of queue names (outside any queue's slot).
inline const char* kQueuesKey = "cq:queues";
// The wake-up key a consumer blocks on (BZPOPMIN) for this queue.
std::string wakeKey(const std::string& queue);

// Runs scripts on one connection, EVALSHA first.
class ScriptRunner {
 public:
  explicit ScriptRunner(RedisConnection& conn);
  void run(ScriptId id, const std::vector<std::string>& keys, const std::vector<std::string>& args,
           ReplyCallback cb);

 private:
  void load();
  RedisConnection& conn_;
  std::array<std::string, kScriptCount> sha_;
};

}  // namespace clusterd::queue
