// Jobs as the queue's users see them: what an enqueue asks for (NewJob and
// JobOptions) and what a handler or an admin gets back (Job).
//
// Payloads are msgpack bytes (the wire format in Redis); payloadFromJson and
// payloadToJson convert for callers that speak JSON. docs/QUEUE.md describes
// the record layout for clients in other languages.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"

namespace clusterd::queue {

using Millis = std::chrono::milliseconds;

enum class BackoffType { kExponential, kFixed };

// Per-job options; zero/empty fields take the queue's defaults.
struct JobOptions {
  Millis delay{0};           // run no earlier than now + delay
  int64_t run_at_ms = 0;     // or at this Unix time in ms (wins over delay)
  int priority = 0;          // -1000..1000; higher runs first; 0 = FIFO
  int attempts = 0;          // total runs allowed (default 3)
  Millis backoff{0};         // base delay between attempts (default 1 s)
  BackoffType backoff_type = BackoffType::kExponential;
  bool backoff_set = false;  // backoff_type given explicitly
  Millis timeout{0};         // per attempt (default 60 s)
  std::string unique_key;    // a second enqueue with this key returns the first id
  Millis unique_ttl{0};      // how long the key stays taken after the job finished
};

struct NewJob {
  std::string name;     // selects the handler
  std::string payload;  // msgpack; empty = nil
  JobOptions options;
};

// One failed attempt, kept with the job.
struct AttemptError {
  int64_t at_ms = 0;
  int attempt = 0;
  std::string error;
};

enum class JobState { kWaiting, kActive, kDelayed, kCompleted, kDead };
const char* jobStateName(JobState s);
bool parseJobState(std::string_view text, JobState& out);

struct Job {
  std::string queue;
  std::string id;
  std::string name;
  std::string payload;  // msgpack
  int attempts = 3;     // allowed
  int64_t backoff_ms = 1000;
  BackoffType backoff_type = BackoffType::kExponential;
  int64_t timeout_ms = 60'000;
  int priority = 0;
  int64_t created_ms = 0;
  std::string unique_key;
  // Random, made by the client at enqueue (the record's `uid`): with the id it
  // names this job alone, even when Redis lost its id counter and handed the
  // same id out again (a crash between fsyncs, a failover to a lagging
  // replica, a restore). Empty in records of clients that do not write one.
  std::string uid;
  // Mutable history (from the job's meta entry).
  int attempt = 0;  // failed attempts so far
  int stalls = 0;   // leases lost so far
  std::vector<AttemptError> errors;
  std::string reason;  // why it is dead
  bool permanent = false;  // dead by a permanent failure (attempts left unused)
  // Filled by inspection calls only.
  JobState state = JobState::kWaiting;
  int64_t when_ms = 0;  // run_at (delayed), finished (completed/dead), lease deadline (active)
  // The handler's result (msgpack), kept with a completed job; empty when it
  // returned none. Only Client::job loads it (listings leave it empty).
  std::string result;

  nlohmann::json payloadJson() const;
  nlohmann::json resultJson() const;  // null when there is no result
  // For `clusterd job show` and --json listings; has "result" only when the
  // job has one.
  nlohmann::json toJson() const;
};

// msgpack <-> JSON for payloads. payloadFromJson never fails; payloadToJson
// fails on bytes that are not one msgpack value.
std::string payloadFromJson(const nlohmann::json& value);
Result<nlohmann::json> payloadToJson(std::string_view msgpack);

}  // namespace clusterd::queue
