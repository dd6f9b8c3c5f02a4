// Byte sizes, durations and argument splitting, as written in ecosystem files.
//
// Design: every parser is strict (no partial matches, no silent clamping)
// and checks for overflow, because a typo here becomes a restart policy.
#include "config/units.h"

#include <cctype>
#include <limits>

#include "config/load.h"

namespace clusterd::config {
namespace {

// Reads the leading decimal digits of `text` into `value`; returns how many
// characters were used (0 when none or on overflow).
size_t readNumber(const std::string& text, uint64_t& value) {
  value = 0;
  size_t i = 0;
  for (; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); ++i) {
    uint64_t digit = static_cast<uint64_t>(text[i] - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10) return 0;
    value = value * 10 + digit;
  }
  return i;
}

bool multiply(uint64_t value, uint64_t factor, uint64_t& out) {
  if (factor != 0 && value > std::numeric_limits<uint64_t>::max() / factor) return false;
  out = value * factor;
  return true;
}

// Reads `digits[.digits]` and scales it by `factor`, demanding a whole
// result: "1.5s" is 1500 ms, "1.5G" is 1610612736 bytes, but "0.0001s" and
// "0.1K" are refused rather than rounded, because a rounded limit is not the
// limit the operator wrote. Returns the characters used, 0 on failure.
struct Decimal {
  uint64_t whole = 0;
  uint64_t fraction = 0;   // the digits after the point, as an integer
  uint64_t scale = 1;      // 10^(number of fraction digits)
};

size_t readDecimal(const std::string& text, Decimal& d) {
  d = Decimal{};
  size_t used = readNumber(text, d.whole);
  if (used == 0) return 0;
  if (used < text.size() && text[used] == '.') {
    size_t start = used + 1;
    size_t i = start;
    for (; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); ++i) {
      if (i - start >= 9) return 0;  // more precision than any unit here needs
      d.fraction = d.fraction * 10 + static_cast<uint64_t>(text[i] - '0');
      d.scale *= 10;
    }
    if (i == start) return 0;  // "1." is a typo, not a number
    used = i;
  }
  return used;
}

bool scale(const Decimal& d, uint64_t factor, uint64_t& out) {
  uint64_t whole = 0;
  if (!multiply(d.whole, factor, whole)) return false;
  uint64_t part = 0;
  if (!multiply(d.fraction, factor, part)) return false;
  if (part % d.scale != 0) return false;
  part /= d.scale;
  if (whole > std::numeric_limits<uint64_t>::max() - part) return false;
  out = whole + part;
  return true;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

bool parseMemory(const std::string& text, uint64_t& bytes) {
  Decimal value;
  size_t used = readDecimal(text, value);
  if (used == 0) return false;
  std::string unit = lower(text.substr(used));
  if (unit.size() == 2 && unit[1] == 'b') unit.pop_back();  // "512KB" reads as "512K"
  uint64_t factor = 1;
  if (unit.empty() || unit == "b") {
    factor = 1;
  } else if (unit == "k") {
    factor = 1ull << 10;
  } else if (unit == "m") {
    factor = 1ull << 20;
  } else if (unit == "g") {
    factor = 1ull << 30;
  } else if (unit == "t") {
    factor = 1ull << 40;
  } else {
    return false;
  }
  return scale(value, factor, bytes);
}

bool parseDuration(const std::string& text, Millis& out) {
  Decimal value;
  size_t used = readDecimal(text, value);
  if (used == 0) return false;
  const std::string unit = text.substr(used);
  uint64_t factor = 0;
  if (unit.empty() || unit == "ms") {
    factor = 1;
  } else if (unit == "s") {
    factor = 1000;
  } else if (unit == "m") {
    factor = 60'000;
  } else if (unit == "h") {
    factor = 3'600'000;
  } else if (unit == "d") {
    factor = 86'400'000;
  } else {
    return false;
  }
  uint64_t ms = 0;
  if (!scale(value, factor, ms)) return false;
  if (ms > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
  out = Millis(static_cast<int64_t>(ms));
  return true;
}

bool splitArgs(const std::string& text, std::vector<std::string>& out) {
  out.clear();
  std::string word;
  bool in_word = false;
  size_t i = 0;
  while (i < text.size()) {
    char c = text[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      if (in_word) out.push_back(std::move(word));
      word.clear();
      in_word = false;
      ++i;
    } else if (c == '\'') {
      // Single quotes: everything literal up to the next single quote.
      size_t end = text.find('\'', i + 1);
      if (end == std::string::npos) return false;
      word.append(text, i + 1, end - i - 1);
      in_word = true;
      i = end + 1;
    } else if (c == '"') {
      // Double quotes: a backslash escapes only \ " $ ` and newline, as in sh.
      ++i;
      bool closed = false;
      while (i < text.size()) {
        char d = text[i];
        if (d == '"') {
          closed = true;
          ++i;
          break;
        }
        if (d == '\\' && i + 1 < text.size()) {
          char e = text[i + 1];
          if (e == '\\' || e == '"' || e == '$' || e == '`') {
            word.push_back(e);
            i += 2;
            continue;
          }
          if (e == '\n') {
            i += 2;
            continue;
          }
        }
        word.push_back(d);
        ++i;
      }
      if (!closed) return false;
      in_word = true;
    } else if (c == '\\') {
      if (i + 1 >= text.size()) return false;  // a trailing backslash escapes nothing
      if (text[i + 1] != '\n') word.push_back(text[i + 1]);
      in_word = true;
      i += 2;
    } else {
      word.push_back(c);
      in_word = true;
      ++i;
    }
  }
  if (in_word) out.push_back(std::move(word));
  return true;
}

std::string formatMemory(uint64_t bytes) {
  static constexpr struct {
    uint64_t factor;
    char suffix;
  } kUnits[] = {{1ull << 40, 'T'}, {1ull << 30, 'G'}, {1ull << 20, 'M'}, {1ull << 10, 'K'}};
  for (const auto& u : kUnits) {
    if (bytes != 0 && bytes % u.factor == 0) return std::to_string(bytes / u.factor) + u.suffix;
  }
  return std::to_string(bytes);
}

std::string momentToStrftime(const std::string& format) {
  if (format.find('%') != std::string::npos) return format;
  // Longest tokens first so "YYYY" wins over "YY" and "SSS" over "ss".
  static constexpr struct {
    const char* moment;
    const char* strftime;
  } kTokens[] = {{"YYYY", "%Y"}, {"YY", "%y"},   {"MMMM", "%B"}, {"MMM", "%b"}, {"MM", "%m"},
                 {"DD", "%d"},   {"dddd", "%A"}, {"ddd", "%a"},  {"HH", "%H"},  {"hh", "%I"},
                 {"mm", "%M"},   {"ss", "%S"},   {"A", "%p"},    {"ZZ", "%z"},  {"Z", "%z"}};
  std::string out;
  size_t i = 0;
  while (i < format.size()) {
    bool matched = false;
    for (const auto& t : kTokens) {
      std::string_view tok(t.moment);
      if (format.compare(i, tok.size(), tok) == 0) {
        out += t.strftime;
        i += tok.size();
        matched = true;
        break;
      }
    }
    if (!matched) out.push_back(format[i++]);
  }
  return out;
}

}  // namespace clusterd::config
