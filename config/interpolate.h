// ${VAR} and ${VAR:-default} substitution in ecosystem string values.
//
// `${VAR}` is replaced by the variable's value and is an error when VAR is
// unset; `${VAR:-default}` uses `default` when VAR is unset or empty (as in
// sh), and the default may itself hold references. `$${` writes a literal
// `${`; any other `$` is kept as written.
//
// Bounds: defaults nest at most kMaxInterpolationDepth deep (the scanner
// recurses once per level), and one value expands to at most
// kMaxInterpolatedBytes; past either the result is an error naming the limit.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace clusterd::config {

inline constexpr size_t kMaxInterpolationDepth = 16;
inline constexpr size_t kMaxInterpolatedBytes = 1 << 20;

using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;

struct Interpolated {
  std::string value;        // the result, meaningful when error is empty
  std::string error;        // what went wrong, e.g. "environment variable PORT is not set"
  size_t error_offset = 0;  // offset of the offending "${" in the input
};

Interpolated interpolate(std::string_view text, const EnvLookup& lookup);

}  // namespace clusterd::config
