// The loader's bounds: a hostile or broken ecosystem file (nested defaults,
// deep YAML, alias and merge-key bombs, a huge file) gets an error naming
// the limit and its place, never a crash, a hang or unbounded memory.
#include <catch2/catch.hpp>

#include <fstream>
#include <string>

#include "config/interpolate.h"
#include "tests/config/helpers.h"
#include "tests/support/process.h"

namespace config_limits_test {

using namespace clusterd::config;
using namespace clusterd::config::test;

namespace {

std::string repeat(const std::string& s, size_t n) {
  std::string out;
  out.reserve(s.size() * n);
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

Diagnostic onlyError(const LoadResult& r) {
  INFO(allErrors(r));
  REQUIRE(r.diagnostics.size() == 1);
  return r.diagnostics[0];
}

}  // namespace

TEST_CASE("defaults nested past the limit are an error at the reference that passes it") {
  // 100,000 levels overflowed the stack of the recursive scanner.
  const size_t levels = 100'000;
  std::string value = repeat("${A:-", levels) + "x" + std::string(levels, '}');
  auto r = loadText("apps:\n  - name: web\n    script: ./web\n    env:\n      X: \"" + value + "\"\n");
  const Diagnostic d = onlyError(r);
  CHECK(d.field == "apps[0].env.X");
  CHECK(d.line == 5);
  CHECK(d.column == 11 + 5 * static_cast<int>(kMaxInterpolationDepth));  // the 17th `${`
  CHECK_THAT(d.message, Catch::Contains("nest deeper than 16 levels"));
}

TEST_CASE("defaults nested up to the limit still expand") {
  std::string value = repeat("${A:-", kMaxInterpolationDepth) + "x" +
                      std::string(kMaxInterpolationDepth, '}');
  Interpolated i = interpolate(value, [](const std::string&) { return std::nullopt; });
  CHECK(i.error.empty());
  CHECK(i.value == "x");
}

TEST_CASE("a value that expands past the size limit is an error naming it") {
  std::string big(kMaxInterpolatedBytes / 4, 'v');
  Interpolated i = interpolate(repeat("${BIG}", 5), [&](const std::string&) { return big; });
  CHECK(i.value.empty());
  CHECK_THAT(i.error, Catch::Contains("more than 1048576 bytes"));
}

TEST_CASE("YAML nested a megabyte deep is an error naming the depth limit") {
  const size_t levels = 500'000;
  for (const std::string& text : {std::string(levels, '[') + std::string(levels, ']'),
                                  repeat("{a: ", levels) + "1" + std::string(levels, '}')}) {
    auto r = loadText(text);
    const Diagnostic d = onlyError(r);
    CHECK(d.file == "inline.yaml");
    CHECK(d.line == 1);
    CHECK_THAT(d.message, Catch::Contains("nested deeper than the YAML parser allows"));
    CHECK_THAT(d.message, Catch::Contains("clusterd allows 64"));
  }
}

TEST_CASE("YAML nested deeper than max_depth is an error at the node that passes it") {
  std::string text = "x-deep:\n";
  for (int i = 1; i <= 80; ++i) text += std::string(static_cast<size_t>(2 * i), ' ') + "a:\n";
  text += "apps:\n  - script: ./web\n";
  const Diagnostic d = onlyError(loadText(text));
  CHECK(d.line == 65);  // the mapping at depth 65 starts on line 65
  CHECK_THAT(d.message, Catch::Contains("nested deeper than 64 levels"));
}

TEST_CASE("aliases nesting past max_depth are an error though the text is flat") {
  std::string text = "x-0: &a0 [1]\n";
  for (int i = 1; i <= 100; ++i)
    text += "x-" + std::to_string(i) + ": &a" + std::to_string(i) + " [*a" + std::to_string(i - 1) +
            "]\n";
  text += "apps:\n  - script: ./web\n";
  CHECK_THAT(onlyError(loadText(text)).message, Catch::Contains("nested deeper than 64 levels"));
}

TEST_CASE("a merge-key bomb is an error naming the node limit instead of a hang") {
  // Each anchor merges the previous one ten times: 10^9 entries expanded.
  std::string text = "x-0: &m0 {a: 1}\n";
  for (int i = 1; i <= 9; ++i) {
    std::string prev = "*m" + std::to_string(i - 1);
    text += "x-" + std::to_string(i) + ": &m" + std::to_string(i) + " {<<: [" +
            repeat(prev + ", ", 9) + prev + "]}\n";
  }
  text += "apps:\n  - <<: *m9\n    script: ./web\n";
  const Diagnostic d = onlyError(loadText(text));
  CHECK(d.line == 1);
  CHECK_THAT(d.message, Catch::Contains("more than 1000000 YAML nodes"));
}

TEST_CASE("a chain of merge keys past max_depth is an error instead of a crash") {
  // 100,000 anchors, each merging the previous: the recursion of merge keys
  // overflowed the stack.
  std::string text = "x-0: &m0 {a: 1}\n";
  for (int i = 1; i <= 100'000; ++i)
    text += "x-" + std::to_string(i) + ": &m" + std::to_string(i) + " {<<: *m" +
            std::to_string(i - 1) + "}\n";
  text += "apps:\n  - <<: *m100000\n    script: ./web\n";
  CHECK_THAT(onlyError(loadText(text)).message, Catch::Contains("nested deeper than 64 levels"));
}

TEST_CASE("a file past max_file_bytes is refused naming the limit") {
  clusterd::test::TempDir dir("cd-config");
  std::string path = dir.path() + "/big.yaml";
  {
    std::ofstream f(path);
    f << "apps:\n  - script: ./web\n# " << std::string(5 << 20, 'x') << "\n";
  }
  const Diagnostic d = onlyError(loadEcosystem(path));
  CHECK(d.file == path);
  CHECK_THAT(d.message, Catch::Contains("larger than 4194304 bytes"));

  SECTION("and an endless file is not read to its end") {
    const Diagnostic z = onlyError(loadEcosystem("/dev/zero"));
    CHECK_THAT(z.message, Catch::Contains("larger than 4194304 bytes"));
  }
  SECTION("and the limit is a load option") {
    LoadOptions options;
    options.limits.max_file_bytes = 8 << 20;
    options.cores = 2;
    CHECK(loadEcosystem(path, options).ok());
  }
}

}  // namespace config_limits_test
