// Implementation of config/reader.h: typed, positioned reads of YAML nodes.
#include "config/reader.h"

#include <fmt/format.h>

#include <limits>
#include <set>

#include "config/suggest.h"

namespace clusterd::config {

Reader::Reader(std::string file, std::string source, EnvLookup lookup)
    : file_(std::move(file)), source_(std::move(source)), lookup_(std::move(lookup)) {}

void Reader::add(std::vector<Diagnostic>& into, const YAML::Mark& at, const std::string& field,
                 std::string message) {
  Diagnostic d;
  d.file = file_;
  if (!at.is_null()) {
    d.line = at.line + 1;
    d.column = at.column + 1;
  }
  d.field = field;
  d.message = std::move(message);
  into.push_back(std::move(d));
}

void Reader::error(const YAML::Mark& at, const std::string& field, std::string message) {
  add(errors_, at, field, std::move(message));
}

void Reader::warning(const YAML::Mark& at, const std::string& field, std::string message) {
  add(warnings_, at, field, std::move(message));
}

YAML::Mark Reader::markOf(const YAML::Node& value, const YAML::Node& key) {
  // yaml-cpp places an implicit null (`key:` and nothing) where the next
  // token starts, often on the next line; the key is the better place.
  YAML::Mark m = value.Mark();
  if (value.IsNull() && (m.is_null() || m.line != key.Mark().line)) return key.Mark();
  return m.is_null() ? key.Mark() : m;
}

std::string Reader::describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return "nothing (null)";
    case YAML::NodeType::Scalar:
      break;
  }
  return "`" + node.Scalar() + "`";
}

YAML::Mark Reader::markOfReference(const YAML::Mark& at, const std::string& raw,
                                   size_t offset) const {
  // Count the "${" before the offending one, then find as many in the file
  // from the scalar's start: quoting and escapes rarely touch "${".
  size_t nth = 0;
  for (size_t i = raw.find("${"); i != std::string::npos && i < offset; i = raw.find("${", i + 1))
    ++nth;
  if (at.is_null() || at.pos < 0) return at;
  size_t pos = static_cast<size_t>(at.pos);
  for (size_t k = 0;; ++k) {
    pos = source_.find("${", pos);
    if (pos == std::string::npos) return at;
    if (k == nth) break;
    ++pos;
  }
  YAML::Mark m = at;
  m.pos = static_cast<int>(pos);
  m.line = at.line;
  size_t line_start = source_.rfind('\n', at.pos > 0 ? static_cast<size_t>(at.pos) - 1 : 0);
  line_start = (line_start == std::string::npos || at.pos == 0) ? 0 : line_start + 1;
  for (size_t i = static_cast<size_t>(at.pos); i < pos; ++i) {
    if (source_[i] == '\n') {
      ++m.line;
      line_start = i + 1;
    }
  }
  m.column = static_cast<int>(pos - line_start);
  return m;
}

std::optional<std::string> Reader::text(const YAML::Node& node, const YAML::Mark& at,
                                        const std::string& field, std::string_view expected) {
  if (!node.IsScalar()) {
    error(at, field, fmt::format("expected {}, got {}", expected, describe(node)));
    return std::nullopt;
  }
  const std::string& raw = node.Scalar();
  Interpolated result = interpolate(raw, lookup_);
  if (!result.error.empty()) {
    error(markOfReference(at, raw, result.error_offset), field, result.error);
    return std::nullopt;
  }
  return std::move(result.value);
}

std::optional<std::string> Reader::string(const YAML::Node& node, const YAML::Mark& at,
                                          const std::string& field) {
  return text(node, at, field, "a string");
}

std::optional<bool> Reader::boolean(const YAML::Node& node, const YAML::Mark& at,
                                    const std::string& field) {
  auto t = text(node, at, field, "true or false");
  if (!t) return std::nullopt;
  if (*t == "true" || *t == "True" || *t == "TRUE") return true;
  if (*t == "false" || *t == "False" || *t == "FALSE") return false;
  error(at, field, fmt::format("expected true or false, got `{}`", *t));
  return std::nullopt;
}

std::optional<int64_t> Reader::integer(const YAML::Node& node, const YAML::Mark& at,
                                       const std::string& field, int64_t min, int64_t max) {
  std::string expected = max == std::numeric_limits<int64_t>::max()
                             ? fmt::format("an integer >= {}", min)
                             : fmt::format("an integer from {} to {}", min, max);
  auto t = text(node, at, field, expected);
  if (!t) return std::nullopt;
  const std::string& s = *t;
  size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  bool digits = i < s.size();
  for (size_t k = i; k < s.size(); ++k)
    digits = digits && std::isdigit(static_cast<unsigned char>(s[k]));
  int64_t value = 0;
  bool in_range = false;
  if (digits && s.size() - i <= 18) {
    value = std::stoll(s);
    in_range = value >= min && value <= max;
  }
  if (!in_range) {
    error(at, field, fmt::format("expected {}, got `{}`", expected, s));
    return std::nullopt;
  }
  return value;
}

std::optional<Millis> Reader::duration(const YAML::Node& node, const YAML::Mark& at,
                                       const std::string& field, Millis min) {
  constexpr std::string_view kExpected =
      "a duration: milliseconds (1500) or a number with ms, s, m, h or d (500ms, 2s, 1m)";
  auto t = text(node, at, field, kExpected);
  if (!t) return std::nullopt;
  Millis value{0};
  if (!parseDuration(*t, value)) {
    error(at, field, fmt::format("expected {}, got `{}`", kExpected, *t));
    return std::nullopt;
  }
  if (value < min) {
    error(at, field, fmt::format("must be at least {}ms, got `{}`", min.count(), *t));
    return std::nullopt;
  }
  return value;
}

std::optional<uint64_t> Reader::memory(const YAML::Node& node, const YAML::Mark& at,
                                       const std::string& field, uint64_t min) {
  constexpr std::string_view kExpected =
      "a size: bytes (1048576) or a number with K, M or G (512K, 300M, 1G)";
  auto t = text(node, at, field, kExpected);
  if (!t) return std::nullopt;
  uint64_t value = 0;
  if (!parseMemory(*t, value)) {
    error(at, field, fmt::format("expected {}, got `{}`", kExpected, *t));
    return std::nullopt;
  }
  if (value < min) {
    error(at, field, fmt::format("must be at least {} bytes, got `{}`", min, *t));
    return std::nullopt;
  }
  return value;
}

std::optional<std::vector<std::string>> Reader::words(const YAML::Node& node, const YAML::Mark& at,
                                                      const std::string& field) {
  constexpr std::string_view kExpected = "a list of strings or one command-line string";
  std::vector<std::string> out;
  if (node.IsSequence()) {
    bool ok = true;
    for (size_t i = 0; i < node.size(); ++i) {
      const YAML::Node item = node[i];
      auto t = text(item, item.Mark(), fmt::format("{}[{}]", field, i), "a string");
      if (t) {
        out.push_back(std::move(*t));
      } else {
        ok = false;
      }
    }
    if (!ok) return std::nullopt;
    return out;
  }
  auto t = text(node, at, field, kExpected);
  if (!t) return std::nullopt;
  if (!splitArgs(*t, out)) {
    error(
        at, field,
        "unterminated quote or trailing backslash in the command line (quote like a POSIX shell)");
    return std::nullopt;
  }
  return out;
}

std::optional<std::string> Reader::choice(const YAML::Node& node, const YAML::Mark& at,
                                          const std::string& field,
                                          const std::vector<std::string_view>& choices) {
  std::string expected;
  for (size_t i = 0; i < choices.size(); ++i) {
    if (i > 0) expected += i + 1 == choices.size() ? " or " : ", ";
    expected += fmt::format("`{}`", choices[i]);
  }
  auto t = text(node, at, field, expected);
  if (!t) return std::nullopt;
  for (auto c : choices) {
    if (*t == c) return t;
  }
  error(at, field, fmt::format("expected {}, got `{}`", expected, *t));
  return std::nullopt;
}

bool Reader::entries(const YAML::Node& node, const YAML::Mark& at, const std::string& field,
                     std::vector<Entry>& out) {
  if (!node.IsMap()) {
    error(at, field.empty() ? "(top level)" : field,
          fmt::format("expected a mapping, got {}", describe(node)));
    return false;
  }
  std::vector<Entry> merged;  // from `<<`, overridden by explicit keys
  std::set<std::string> seen;
  for (auto it = node.begin(); it != node.end(); ++it) {
    const YAML::Node key = it->first;
    const YAML::Node value = it->second;
    if (!key.IsScalar()) {
      error(key.Mark(), field, "keys must be plain strings, got " + describe(key));
      continue;
    }
    const std::string& k = key.Scalar();
    if (k == "<<" && key.Tag() == "?") {
      std::vector<YAML::Node> sources;
      if (value.IsSequence()) {
        for (const auto& v : value) sources.push_back(v);
      } else {
        sources.push_back(value);
      }
      for (const auto& src : sources) {
        std::vector<Entry> inner;
        if (!entries(src, markOf(src, key), field, inner)) continue;
        for (auto& e : inner) merged.push_back(std::move(e));
      }
      continue;
    }
    if (!seen.insert(k).second) {
      error(key.Mark(), joinPath(field, k),
            fmt::format("duplicate key `{}`; each key may appear once", k));
      continue;
    }
    out.push_back({k, key, value});
  }
  std::set<std::string> merged_seen;
  for (auto& e : merged) {
    if (seen.count(e.key) || !merged_seen.insert(e.key).second) continue;
    out.push_back(std::move(e));
  }
  return true;
}

void Reader::unknownKey(const Entry& entry, const std::string& field, std::string_view where,
                        const std::vector<std::string_view>& known) {
  std::string suggestion = closestMatch(entry.key, known);
  std::string message = fmt::format("unknown key `{}` in {}", entry.key, where);
  if (!suggestion.empty()) message += fmt::format("; did you mean `{}`?", suggestion);
  error(entry.key_node.Mark(), field, std::move(message));
}

}  // namespace clusterd::config
