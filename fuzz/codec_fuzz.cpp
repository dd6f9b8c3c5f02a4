// Fuzz target: the job record codec (queue/codec.h). Arbitrary bytes, as a
// record, a meta entry or a payload read back from Redis, must decode to a
// value or to an error, never crash; and what decodes must survive the round
// trip: a decoded record re-encodes to a record that decodes to the same job,
// and a payload converted to JSON and back converts to the same JSON.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "queue/codec.h"
#include "queue/job.h"

namespace {

using clusterd::queue::Job;

// As the CLI and the job API print them: invalid UTF-8 replaced, not thrown.
std::string show(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void check(bool ok) {
  if (!ok) std::abort();  // a broken round trip is a finding, like a crash
}

void recordRoundTrip(std::string_view bytes) {
  Job job;
  if (!clusterd::queue::decodeRecord(bytes, job)) return;
  (void)show(job.toJson());
  Job again;
  auto r = clusterd::queue::decodeRecord(clusterd::queue::encodeRecord(job), again);
  check(bool(r));
  check(again.name == job.name && again.payload == job.payload && again.attempts == job.attempts &&
        again.backoff_ms == job.backoff_ms && again.backoff_type == job.backoff_type &&
        again.timeout_ms == job.timeout_ms && again.priority == job.priority &&
        again.created_ms == job.created_ms && again.unique_key == job.unique_key);
}

void metaDecode(std::string_view bytes) {
  Job job;
  if (clusterd::queue::decodeMeta(bytes, job)) (void)show(job.toJson());
}

// Equal as JSON values, where numbers compare by value (msgpack-c packs a
// double without a fraction as an integer, which JSON does not tell apart)
// and NaN equals NaN.
bool same(const nlohmann::json& a, const nlohmann::json& b) {
  if (a.is_number() && b.is_number()) {
    double x = a.get<double>(), y = b.get<double>();
    return x == y || (x != x && y != y);
  }
  if (a.type() != b.type() || a.size() != b.size()) return false;
  if (a.is_array()) {
    for (size_t i = 0; i < a.size(); ++i)
      if (!same(a[i], b[i])) return false;
    return true;
  }
  if (a.is_object()) {
    for (auto it = a.begin(); it != a.end(); ++it)
      if (!b.contains(it.key()) || !same(it.value(), b[it.key()])) return false;
    return true;
  }
  return a == b;
}

void payloadRoundTrip(std::string_view bytes) {
  auto json = clusterd::queue::payloadToJson(bytes);
  if (!json) return;
  (void)show(*json);
  auto back = clusterd::queue::payloadToJson(clusterd::queue::payloadFromJson(*json));
  check(bool(back));
  check(same(*back, *json));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  recordRoundTrip(bytes);
  metaDecode(bytes);
  payloadRoundTrip(bytes);
  return 0;
}
