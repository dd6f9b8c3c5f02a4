// Nesting limits for structured input: one depth limit for every JSON and
// msgpack value clusterd reads from outside (HTTP bodies, `clusterd
// enqueue`, job records in Redis, command handlers' output), and a JSON
// parser that enforces it.
//
// Design: the code that walks these values (JSON -> msgpack, msgpack ->
// JSON, nlohmann's dump) recurses once per level, so a body of a megabyte of
// `[` would overflow the stack long after parsing succeeded. Refusing deep
// input at the parse boundary keeps every walk after it shallow. The JSON
// depth is measured by one linear scan before parsing (strings skipped), so
// the common, shallow case costs a pass over bytes and no allocation; msgpack
// is bounded by msgpack-c's own `unpack_limit` (queue/codec.cpp).
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string_view>

#include "common/result.h"

namespace clusterd {

// Arrays and objects nested more deeply than this are refused. A value that
// is not a container has depth 0; `[]` and `{}` have depth 1.
inline constexpr size_t kMaxNestingDepth = 64;

// The nesting depth of the JSON text `text`, counting stops once it exceeds
// `limit` (the result is then limit + 1). Brackets inside strings do not
// count; for text that is not JSON the result is meaningless but bounded.
size_t jsonNestingDepth(std::string_view text, size_t limit);

// Parses `text` as one JSON value. An error reads "not valid JSON: <where
// and why>" or "nested deeper than the limit of N levels …", to follow "the
// body is " or a file and line.
Result<nlohmann::json> parseJsonLimited(std::string_view text, size_t max_depth = kMaxNestingDepth);

}  // namespace clusterd
