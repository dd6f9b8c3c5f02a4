// Implementation of config/interpolate.h: a small recursive scanner.
#include "config/interpolate.h"

#include <cctype>
#include <string>

namespace clusterd::config {
namespace {

bool isNameStart(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_';
}
bool isNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}

std::string tooLong() {
  return "the value expands to more than " + std::to_string(kMaxInterpolatedBytes) +
         " bytes; shorten it or the variables it uses";
}

class Scanner {
 public:
  Scanner(std::string_view text, const EnvLookup& lookup) : text_(text), lookup_(lookup) {}

  // Expands text_[pos_..] until the end, or until an unmatched '}' when
  // `nested` (the end of a default). Returns false after setting the error.
  bool expand(std::string& out, bool nested) {
    while (pos_ < text_.size()) {
      if (out.size() > kMaxInterpolatedBytes) return fail(pos_, tooLong());
      char c = text_[pos_];
      if (nested && c == '}') return true;
      if (c == '$' && text_.substr(pos_, 3) == "$${") {
        out += "${";
        pos_ += 3;
        continue;
      }
      if (c == '$' && text_.substr(pos_, 2) == "${") {
        if (!reference(out)) return false;
        continue;
      }
      out.push_back(c);
      ++pos_;
    }
    return true;
  }

  Interpolated result;

 private:
  bool fail(size_t at, std::string message) {
    result.error = std::move(message);
    result.error_offset = at;
    return false;
  }

  bool reference(std::string& out) {
    const size_t start = pos_;
    pos_ += 2;
    size_t name_begin = pos_;
    if (pos_ < text_.size() && isNameStart(text_[pos_])) {
      while (pos_ < text_.size() && isNameChar(text_[pos_])) ++pos_;
    }
    std::string name(text_.substr(name_begin, pos_ - name_begin));
    if (name.empty()) {
      return fail(start,
                  "`${` must be followed by a variable name ([A-Za-z_][A-Za-z0-9_]*); write `$${` "
                  "for a literal `${`");
    }
    if (pos_ < text_.size() && text_[pos_] == '}') {
      ++pos_;
      std::optional<std::string> value = lookup_(name);
      if (!value) {
        return fail(start, "environment variable " + name +
                               " is not set (export it, or give a default: ${" + name +
                               ":-value})");
      }
      out += *value;
      return true;
    }
    if (text_.substr(pos_, 2) == ":-") {
      pos_ += 2;
      // Each nested default is one level of recursion: bound it before the
      // stack is.
      if (depth_ >= kMaxInterpolationDepth) {
        return fail(start, "`${" + name + ":-…}` defaults nest deeper than " +
                               std::to_string(kMaxInterpolationDepth) + " levels");
      }
      std::string fallback;
      ++depth_;
      bool ok = expand(fallback, true);
      --depth_;
      if (!ok) return false;
      if (pos_ >= text_.size()) return fail(start, "`${" + name + ":-` is not closed by `}`");
      ++pos_;  // the closing brace
      std::optional<std::string> value = lookup_(name);
      out += (value && !value->empty()) ? *value : fallback;
      return true;
    }
    if (pos_ >= text_.size()) return fail(start, "`${" + name + "` is not closed by `}`");
    return fail(start, "unexpected `" + std::string(1, text_[pos_]) + "` in ${" + name +
                           "...}; write ${NAME} or ${NAME:-default}");
  }

  std::string_view text_;
  const EnvLookup& lookup_;
  size_t pos_ = 0;
  size_t depth_ = 0;  // nested defaults open around pos_
};

}  // namespace

Interpolated interpolate(std::string_view text, const EnvLookup& lookup) {
  Scanner scanner(text, lookup);
  std::string out;
  if (scanner.expand(out, false)) {
    if (out.size() > kMaxInterpolatedBytes) scanner.result.error = tooLong();
    else scanner.result.value = std::move(out);
  }
  return std::move(scanner.result);
}

}  // namespace clusterd::config
