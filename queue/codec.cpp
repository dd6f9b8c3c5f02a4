// Implementation of queue/codec.h and the payload helpers of queue/job.h,
// with msgpack-c.
#include "queue/codec.h"

#include <msgpack.hpp>

#include <algorithm>
#include <cstdint>

#include <fmt/format.h>

#include "common/nesting.h"

namespace clusterd::queue {
namespace {

using Packer = msgpack::packer<msgpack::sbuffer>;

void packJson(Packer& pk, const nlohmann::json& v) {
  switch (v.type()) {
    case nlohmann::json::value_t::null: pk.pack_nil(); break;
    case nlohmann::json::value_t::boolean: pk.pack(v.get<bool>()); break;
    case nlohmann::json::value_t::number_integer: pk.pack(v.get<int64_t>()); break;
    case nlohmann::json::value_t::number_unsigned: pk.pack(v.get<uint64_t>()); break;
    case nlohmann::json::value_t::number_float: pk.pack(v.get<double>()); break;
    case nlohmann::json::value_t::string: pk.pack(v.get_ref<const std::string&>()); break;
    case nlohmann::json::value_t::binary: {
      const auto& b = v.get_binary();
      pk.pack_bin(static_cast<uint32_t>(b.size()));
      pk.pack_bin_body(reinterpret_cast<const char*>(b.data()), static_cast<uint32_t>(b.size()));
      break;
    }
    case nlohmann::json::value_t::array:
      pk.pack_array(static_cast<uint32_t>(v.size()));
      for (const auto& e : v) packJson(pk, e);
      break;
    case nlohmann::json::value_t::object:
      pk.pack_map(static_cast<uint32_t>(v.size()));
      for (const auto& [k, e] : v.items()) {
        pk.pack(k);
        packJson(pk, e);
      }
      break;
    case nlohmann::json::value_t::discarded: pk.pack_nil(); break;
  }
}

nlohmann::json toJson(const msgpack::object& o) {
  switch (o.type) {
    case msgpack::type::NIL: return nullptr;
    case msgpack::type::BOOLEAN: return o.via.boolean;
    case msgpack::type::POSITIVE_INTEGER: return o.via.u64;
    case msgpack::type::NEGATIVE_INTEGER: return o.via.i64;
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: return o.via.f64;
    case msgpack::type::STR: return std::string(o.via.str.ptr, o.via.str.size);
    case msgpack::type::BIN: return std::string(o.via.bin.ptr, o.via.bin.size);
    case msgpack::type::ARRAY: {
      auto a = nlohmann::json::array();
      for (uint32_t i = 0; i < o.via.array.size; ++i) a.push_back(toJson(o.via.array.ptr[i]));
      return a;
    }
    case msgpack::type::MAP: {
      auto m = nlohmann::json::object();
      for (uint32_t i = 0; i < o.via.map.size; ++i) {
        const auto& kv = o.via.map.ptr[i];
        // A scalar key that is not a string is named by its JSON text; its
        // bytes may be any, so invalid UTF-8 is replaced rather than thrown
        // on. An array or map key is named by its place, not its text: a map
        // key holding a map key holding ... would be escaped once more at
        // each level, and a record of 200 bytes would turn into gigabytes.
        std::string key;
        if (kv.key.type == msgpack::type::STR) {
          key.assign(kv.key.via.str.ptr, kv.key.via.str.size);
        } else if (kv.key.type == msgpack::type::ARRAY || kv.key.type == msgpack::type::MAP) {
          key = fmt::format("<{} key {}>", kv.key.type == msgpack::type::MAP ? "map" : "array", i + 1);
        } else {
          key = toJson(kv.key).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        }
        m[key] = toJson(kv.val);
      }
      return m;
    }
    case msgpack::type::EXT: return nullptr;
  }
  return nullptr;
}

// Unpacks exactly one msgpack value nested at most `max_depth` levels; an
// error when the bytes are not that. The bound keeps the recursive walks
// that follow (toJson, re-packing a payload) off the end of the stack.
Result<msgpack::object_handle> unpackOne(std::string_view bytes, size_t max_depth) {
  try {
    size_t off = 0;
    // No array, map, string or binary can hold more elements or bytes than
    // the input has bytes. msgpack-c allocates a container's elements before
    // reading them, so without this bound a 5-byte header claiming 2^32
    // elements asks for 64 GiB.
    const size_t most = bytes.size();
    msgpack::unpack_limit limit(most, most, most, most, most, max_depth);
    msgpack::object_handle oh =
        msgpack::unpack(bytes.data(), bytes.size(), off, nullptr, nullptr, limit);
    if (off != bytes.size())
      return Error{fmt::format("not msgpack ({} bytes left over after the first value)", bytes.size() - off)};
    return oh;
  } catch (const msgpack::depth_size_overflow&) {
    return Error{
        fmt::format("nested deeper than the limit of {} levels of arrays and maps", max_depth)};
  } catch (const std::exception& e) {
    return Error{fmt::format("not msgpack ({})", e.what())};
  }
}

std::string_view keyOf(const msgpack::object_kv& kv) {
  if (kv.key.type != msgpack::type::STR) return {};
  return {kv.key.via.str.ptr, kv.key.via.str.size};
}

std::string asString(const msgpack::object& o) {
  if (o.type == msgpack::type::STR) return {o.via.str.ptr, o.via.str.size};
  if (o.type == msgpack::type::BIN) return {o.via.bin.ptr, o.via.bin.size};
  return {};
}

// An integer, or a float holding one (some languages' msgpack writers send
// every number as a float); false for anything else, including a number
// int64 cannot hold (converting it would be undefined).
bool asInt(const msgpack::object& o, int64_t& out) {
  if (o.type == msgpack::type::POSITIVE_INTEGER) {
    if (o.via.u64 > static_cast<uint64_t>(INT64_MAX)) return false;
    return out = static_cast<int64_t>(o.via.u64), true;
  }
  if (o.type == msgpack::type::NEGATIVE_INTEGER) return out = o.via.i64, true;
  if (o.type == msgpack::type::FLOAT64 || o.type == msgpack::type::FLOAT32) {
    double d = o.via.f64;
    if (!(d >= -9.0e18 && d <= 9.0e18) || d != static_cast<double>(static_cast<int64_t>(d)))
      return false;
    return out = static_cast<int64_t>(d), true;
  }
  return false;
}

// Limits on a record's fields (docs/QUEUE.md, Records): a record is written
// by any client, so each field is checked for its type and range before the
// consumer sizes a timer or a backoff by it.
constexpr int64_t kMaxAttempts = 1'000'000;
constexpr int64_t kMaxRecordMs = int64_t{1} << 40;  // ~35 years; backoff·2^20 still fits int64
constexpr size_t kMaxNameBytes = 1024;
constexpr size_t kMaxUidBytes = 128;

// Reads an integer field in [lo, hi] or says what is wrong with it.
Result<int64_t> intField(const msgpack::object& v, std::string_view field, int64_t lo, int64_t hi) {
  int64_t n = 0;
  if (!asInt(v, n)) return Error{fmt::format("job record field '{}' is not an integer", field)};
  if (n < lo || n > hi)
    return Error{fmt::format("job record field '{}' is {}, outside {}..{}", field, n, lo, hi)};
  return n;
}

Result<std::string> strField(const msgpack::object& v, std::string_view field, size_t max) {
  if (v.type != msgpack::type::STR && v.type != msgpack::type::BIN)
    return Error{fmt::format("job record field '{}' is not a string", field)};
  std::string s = asString(v);
  if (s.size() > max)
    return Error{fmt::format("job record field '{}' is {} bytes, over the limit of {}", field,
                             s.size(), max)};
  return s;
}

}  // namespace

std::string payloadFromJson(const nlohmann::json& value) {
  msgpack::sbuffer sb;
  Packer pk(&sb);
  packJson(pk, value);
  return std::string(sb.data(), sb.size());
}

Result<nlohmann::json> payloadToJson(std::string_view bytes) {
  if (bytes.empty()) return nlohmann::json(nullptr);
  auto oh = unpackOne(bytes, kMaxNestingDepth);
  if (!oh) return oh.error();
  return toJson(oh->get());
}

std::string encodeRecord(const Job& job) {
  msgpack::sbuffer sb;
  Packer pk(&sb);
  pk.pack_map(8 + (job.unique_key.empty() ? 0 : 1) + (job.uid.empty() ? 0 : 1));
  pk.pack(std::string_view("name"));
  pk.pack(job.name);
  pk.pack(std::string_view("payload"));
  if (job.payload.empty())
    pk.pack_nil();
  else
    sb.write(job.payload.data(), job.payload.size());
  pk.pack(std::string_view("attempts"));
  pk.pack(job.attempts);
  pk.pack(std::string_view("backoff"));
  pk.pack(job.backoff_ms);
  pk.pack(std::string_view("backoff_type"));
  pk.pack(std::string_view(job.backoff_type == BackoffType::kFixed ? "fixed" : "exponential"));
  pk.pack(std::string_view("timeout"));
  pk.pack(job.timeout_ms);
  pk.pack(std::string_view("priority"));
  pk.pack(job.priority);
  pk.pack(std::string_view("created"));
  pk.pack(job.created_ms);
  if (!job.unique_key.empty()) {
    pk.pack(std::string_view("unique"));
    pk.pack(job.unique_key);
  }
  if (!job.uid.empty()) {
    pk.pack(std::string_view("uid"));
    pk.pack(job.uid);
  }
  return std::string(sb.data(), sb.size());
}

Result<void> decodeRecord(std::string_view bytes, Job& job) {
  // The record is a map around the payload: one level more than a payload
  // may have.
  auto oh = unpackOne(bytes, kMaxNestingDepth + 1);
  if (!oh) {
    if (oh.error().message.rfind("nested", 0) == 0)
      return Error{fmt::format("job record's payload is nested deeper than the limit of {} levels",
                               kMaxNestingDepth)};
    return Error{"job record is " + oh.error().message};
  }
  const msgpack::object& o = oh->get();
  if (o.type != msgpack::type::MAP) return Error{"job record is not a msgpack map"};
  bool has_name = false;
  for (uint32_t i = 0; i < o.via.map.size; ++i) {
    const auto& kv = o.via.map.ptr[i];
    std::string_view k = keyOf(kv);
    const msgpack::object& v = kv.val;
    if (k == "name") {
      if (v.type != msgpack::type::STR) return Error{"job record field 'name' is not a string"};
      auto s = strField(v, k, kMaxNameBytes);
      if (!s) return s.error();
      job.name = std::move(*s);
      has_name = !job.name.empty();
    } else if (k == "payload") {
      if (v.type == msgpack::type::NIL) {
        job.payload.clear();
      } else {
        msgpack::sbuffer sb;
        msgpack::pack(sb, v);
        job.payload.assign(sb.data(), sb.size());
      }
    } else if (k == "attempts") {
      auto n = intField(v, k, 1, kMaxAttempts);
      if (!n) return n.error();
      job.attempts = static_cast<int>(*n);
    } else if (k == "backoff") {
      auto n = intField(v, k, 0, kMaxRecordMs);
      if (!n) return n.error();
      job.backoff_ms = *n;
    } else if (k == "backoff_type") {
      std::string t = asString(v);
      if (t != "fixed" && t != "exponential")
        return Error{"job record field 'backoff_type' is not 'exponential' or 'fixed'"};
      job.backoff_type = t == "fixed" ? BackoffType::kFixed : BackoffType::kExponential;
    } else if (k == "timeout") {
      auto n = intField(v, k, 0, kMaxRecordMs);
      if (!n) return n.error();
      job.timeout_ms = *n;
    } else if (k == "priority") {
      auto n = intField(v, k, -1000, 1000);
      if (!n) return n.error();
      job.priority = static_cast<int>(*n);
    } else if (k == "created") {
      auto n = intField(v, k, 0, INT64_MAX);
      if (!n) return n.error();
      job.created_ms = *n;
    } else if (k == "unique") {
      auto s = strField(v, k, SIZE_MAX);
      if (!s) return s.error();
      job.unique_key = std::move(*s);
    } else if (k == "uid") {
      auto s = strField(v, k, kMaxUidBytes);
      if (!s) return s.error();
      job.uid = std::move(*s);
    }
  }
  if (!has_name) return Error{"job record has no 'name'"};
  return success();
}

Result<void> decodeMeta(std::string_view bytes, Job& job) {
  if (bytes.empty()) return success();
  auto oh = unpackOne(bytes, kMaxNestingDepth);
  if (!oh) return Error{"job meta is " + oh.error().message};
  const msgpack::object& o = oh->get();
  if (o.type != msgpack::type::MAP) return Error{"job meta is not a msgpack map"};
  for (uint32_t i = 0; i < o.via.map.size; ++i) {
    const auto& kv = o.via.map.ptr[i];
    std::string_view k = keyOf(kv);
    int64_t n = 0;
    // Clamped: the consumer adds one to them.
    if (k == "attempt" && asInt(kv.val, n)) {
      job.attempt = static_cast<int>(std::clamp<int64_t>(n, 0, kMaxAttempts));
    } else if (k == "stalls" && asInt(kv.val, n)) {
      job.stalls = static_cast<int>(std::clamp<int64_t>(n, 0, kMaxAttempts));
    } else if (k == "reason") {
      job.reason = asString(kv.val);
    } else if (k == "permanent") {
      job.permanent = kv.val.type == msgpack::type::BOOLEAN && kv.val.via.boolean;
    } else if (k == "errors" && kv.val.type == msgpack::type::ARRAY) {
      for (uint32_t j = 0; j < kv.val.via.array.size; ++j) {
        const auto& e = kv.val.via.array.ptr[j];
        if (e.type != msgpack::type::MAP) continue;
        AttemptError ae;
        for (uint32_t m = 0; m < e.via.map.size; ++m) {
          std::string_view ek = keyOf(e.via.map.ptr[m]);
          const auto& ev = e.via.map.ptr[m].val;
          int64_t x = 0;
          if (ek == "at" && asInt(ev, x)) ae.at_ms = x;
          else if (ek == "attempt" && asInt(ev, x)) ae.attempt = static_cast<int>(x);
          else if (ek == "error") ae.error = asString(ev);
        }
        job.errors.push_back(std::move(ae));
      }
    }
  }
  return success();
}

// ---- Job (declared in queue/job.h) ----

const char* jobStateName(JobState s) {
  switch (s) {
    case JobState::kWaiting: return "waiting";
    case JobState::kActive: return "active";
    case JobState::kDelayed: return "delayed";
    case JobState::kCompleted: return "completed";
    case JobState::kDead: return "dead";
  }
  return "?";
}

bool parseJobState(std::string_view text, JobState& out) {
  for (JobState s : {JobState::kWaiting, JobState::kActive, JobState::kDelayed, JobState::kCompleted,
                     JobState::kDead}) {
    if (text == jobStateName(s)) return out = s, true;
  }
  return false;
}

nlohmann::json Job::payloadJson() const {
  auto j = payloadToJson(payload);
  return j ? *j : nlohmann::json(nullptr);
}

nlohmann::json Job::resultJson() const {
  if (result.empty()) return nullptr;
  auto j = payloadToJson(result);
  return j ? *j : nlohmann::json(nullptr);
}

nlohmann::json Job::toJson() const {
  nlohmann::json errs = nlohmann::json::array();
  for (const auto& e : errors) errs.push_back({{"at_ms", e.at_ms}, {"attempt", e.attempt}, {"error", e.error}});
  nlohmann::json j = {{"queue", queue},
                      {"id", id},
                      {"name", name},
                      {"state", jobStateName(state)},
                      {"payload", payloadJson()},
                      {"attempts", attempts},
                      {"attempts_made", attempt},
                      {"stalls", stalls},
                      {"priority", priority},
                      {"backoff_ms", backoff_ms},
                      {"backoff_type", backoff_type == BackoffType::kFixed ? "fixed" : "exponential"},
                      {"timeout_ms", timeout_ms},
                      {"created_ms", created_ms},
                      {"when_ms", when_ms},
                      {"errors", errs}};
  if (!unique_key.empty()) j["unique"] = unique_key;
  if (!reason.empty()) j["reason"] = reason;
  if (permanent) j["permanent"] = true;
  if (!result.empty()) j["result"] = resultJson();
  return j;
}

}  // namespace clusterd::queue
