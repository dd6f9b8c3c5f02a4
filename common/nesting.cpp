// Implementation of common/nesting.h.
#include "common/nesting.h"

#include <fmt/format.h>

namespace clusterd {

size_t jsonNestingDepth(std::string_view text, size_t limit) {
  size_t depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character, `"` included, cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        if (++depth > deepest) {
          deepest = depth;
          if (deepest > limit) return limit + 1;
        }
        break;
      case ']':
      case '}':
        if (depth > 0) --depth;
        break;
      default:
        break;
    }
  }
  return deepest;
}

Result<nlohmann::json> parseJsonLimited(std::string_view text, size_t max_depth) {
  if (jsonNestingDepth(text, max_depth) > max_depth) {
    return Error{
        fmt::format("nested deeper than the limit of {} levels of arrays and objects", max_depth)};
  }
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    // e.what() reads "[json.exception.parse_error.101] parse error at line 1,
    // column 3: ..."; the part after the bracketed id is what a user needs.
    std::string_view what = e.what();
    size_t end = what.find("] ");
    if (end != std::string_view::npos) what.remove_prefix(end + 2);
    return Error{fmt::format("not valid JSON: {}", what)};
  }
}

}  // namespace clusterd
