// Units of the ecosystem file: sizes, durations, shell-like argument
// splitting, ${VAR} interpolation, key suggestions and date formats.
#include <catch2/catch.hpp>

#include "config/interpolate.h"
#include "config/load.h"
#include "config/suggest.h"
#include "config/units.h"

namespace config_units_test {

using namespace clusterd::config;

namespace {

uint64_t memory(const std::string& text) {
  uint64_t bytes = 0;
  REQUIRE(parseMemory(text, bytes));
  return bytes;
}

int64_t millis(const std::string& text) {
  Millis ms{0};
  REQUIRE(parseDuration(text, ms));
  return ms.count();
}

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  REQUIRE(splitArgs(text, out));
  return out;
}

std::optional<std::string> fromMap(const std::string& name) {
  if (name == "HOME") return "/home/shop";
  if (name == "EMPTY") return "";
  return std::nullopt;
}

}  // namespace

TEST_CASE("memory sizes accept bytes and K M G T suffixes in either case") {
  CHECK(memory("0") == 0);
  CHECK(memory("1048576") == 1048576);
  CHECK(memory("512K") == 512ull << 10);
  CHECK(memory("300M") == 300ull << 20);
  CHECK(memory("1G") == 1ull << 30);
  CHECK(memory("2T") == 2ull << 40);
  CHECK(memory("300m") == 300ull << 20);
  CHECK(memory("64KB") == 64ull << 10);
  CHECK(memory("10B") == 10);
}

TEST_CASE("memory sizes take decimals that come to whole bytes") {
  CHECK(memory("1.5G") == 3ull << 29);
  CHECK(memory("0.5M") == 512ull << 10);
  CHECK(memory("2.25K") == 2304);
}

TEST_CASE("memory sizes reject unknown units, partial bytes, signs and overflow") {
  uint64_t bytes = 0;
  for (const char* bad : {"", "12Q", "0.1K", "1.", ".5G", "1.5.0G", "1.5", "-1", "+1", "G", "1 G",
                          "1GG", "99999999999999999999", "20000000000G"}) {
    INFO(bad);
    CHECK_FALSE(parseMemory(bad, bytes));
  }
}

TEST_CASE("durations accept plain milliseconds and ms s m h d suffixes") {
  CHECK(millis("0") == 0);
  CHECK(millis("1500") == 1500);
  CHECK(millis("500ms") == 500);
  CHECK(millis("2s") == 2000);
  CHECK(millis("1m") == 60'000);
  CHECK(millis("1h") == 3'600'000);
  CHECK(millis("2d") == 172'800'000);
}

TEST_CASE("durations take decimals that come to whole milliseconds") {
  CHECK(millis("1.5s") == 1500);
  CHECK(millis("0.25s") == 250);
  CHECK(millis("1.5m") == 90'000);
  CHECK(millis("2.0h") == 7'200'000);
}

TEST_CASE("durations reject unknown units, sub-millisecond fractions, signs and overflow") {
  Millis ms{0};
  for (const char* bad :
       {"", "soon", "1.5", "1.5ms", "0.0001s", "1.s", ".5s", "1.5.0s", "-5", "5 s", "5S", "5sec", "s", "99999999999999999999d"}) {
    INFO(bad);
    CHECK_FALSE(parseDuration(bad, ms));
  }
}

TEST_CASE("argument strings split like a POSIX shell without expansion") {
  CHECK(split("") == std::vector<std::string>{});
  CHECK(split("  a  b\tc ") == std::vector<std::string>{"a", "b", "c"});
  CHECK(split("--name 'two words' \"three $X words\"") ==
        std::vector<std::string>{"--name", "two words", "three $X words"});
  CHECK(split("a\\ b c") == std::vector<std::string>{"a b", "c"});
  CHECK(split("\"say \\\"hi\\\"\" 'it\\s'") == std::vector<std::string>{"say \"hi\"", "it\\s"});
  CHECK(split("pre'mid'\"post\"") == std::vector<std::string>{"premidpost"});
  CHECK(split("'' x") == std::vector<std::string>{"", "x"});
  CHECK(split("*.js ; rm -rf $HOME") ==
        std::vector<std::string>{"*.js", ";", "rm", "-rf", "$HOME"});
}

TEST_CASE("argument strings with an open quote or a trailing backslash are rejected") {
  std::vector<std::string> out;
  CHECK_FALSE(splitArgs("'open", out));
  CHECK_FALSE(splitArgs("\"open", out));
  CHECK_FALSE(splitArgs("trailing\\", out));
}

TEST_CASE("interpolation replaces set variables and applies defaults when unset or empty") {
  CHECK(interpolate("${HOME}/data", fromMap).value == "/home/shop/data");
  CHECK(interpolate("${NOPE:-/srv}", fromMap).value == "/srv");
  CHECK(interpolate("${EMPTY:-fallback}", fromMap).value == "fallback");
  CHECK(interpolate("${HOME:-unused}", fromMap).value == "/home/shop");
  CHECK(interpolate("${NOPE:-${HOME}/x}", fromMap).value == "/home/shop/x");
  CHECK(interpolate("${NOPE:-}", fromMap).value.empty());
  CHECK(interpolate("$${HOME} $5 $HOME", fromMap).value == "${HOME} $5 $HOME");
  CHECK(interpolate("a}b", fromMap).value == "a}b");
}

TEST_CASE("interpolation errors name the variable and the offset of its reference") {
  auto unset = interpolate("port ${PORT}", fromMap);
  CHECK(unset.error.find("PORT is not set") != std::string::npos);
  CHECK(unset.error_offset == 5);
  auto unclosed = interpolate("x${HOME", fromMap);
  CHECK(unclosed.error.find("not closed") != std::string::npos);
  CHECK(unclosed.error_offset == 1);
  auto nameless = interpolate("${}", fromMap);
  CHECK(nameless.error.find("variable name") != std::string::npos);
  auto bad = interpolate("${A-b}", fromMap);
  CHECK(bad.error.find("${NAME:-default}") != std::string::npos);
  auto nested = interpolate("${NOPE:-${ALSO_NOPE}}", fromMap);
  CHECK(nested.error.find("ALSO_NOPE") != std::string::npos);
  CHECK(nested.error_offset == 8);
}

TEST_CASE("suggestions find the nearest key and stay quiet for unrelated words") {
  std::vector<std::string_view> keys = {"instances", "interpreter", "exec_mode", "env",
                                        "max_restarts"};
  CHECK(closestMatch("instance", keys) == "instances");
  CHECK(closestMatch("instacnes", keys) == "instances");
  CHECK(closestMatch("exec-mode", keys) == "exec_mode");
  CHECK(closestMatch("Exec_Mode", keys) == "exec_mode");
  CHECK(closestMatch("max_restart", keys) == "max_restarts");
  CHECK(closestMatch("completely_unrelated", keys).empty());
  CHECK(closestMatch("xyz", keys).empty());
  CHECK(editDistance("abc", "acb") == 1);
  CHECK(editDistance("", "abc") == 3);
}

TEST_CASE("moment.js date formats become strftime formats and strftime is kept") {
  CHECK(momentToStrftime("YYYY-MM-DD HH:mm:ss Z") == "%Y-%m-%d %H:%M:%S %z");
  CHECK(momentToStrftime("%Y-%m-%dT%H:%M:%S") == "%Y-%m-%dT%H:%M:%S");
  CHECK(momentToStrftime("DD/MM/YY hh:mm A") == "%d/%m/%y %I:%M %p");
}

TEST_CASE("memory is printed in its shortest exact unit") {
  CHECK(formatMemory(300ull << 20) == "300M");
  CHECK(formatMemory(1ull << 30) == "1G");
  CHECK(formatMemory(1536) == "1536");
  CHECK(formatMemory(1500) == "1500");
  CHECK(formatMemory(512ull << 10) == "512K");
}

}  // namespace config_units_test
