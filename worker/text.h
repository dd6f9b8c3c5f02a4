// Small ASCII helpers for HTTP header text: RFC 9110 header names and tokens
// compare case-insensitively, and values carry optional blanks around them.
// Locale-independent on purpose: a header is bytes, not text in the
// process's language.
#pragma once

#include <string_view>

namespace clusterd::worker {

inline char asciiLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

inline bool equalsIgnoringCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (asciiLower(a[i]) != asciiLower(b[i])) return false;
  return true;
}

// `s` without the spaces and tabs (HTTP's optional whitespace) at its ends.
inline std::string_view trimBlanks(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace clusterd::worker
