// Worker log files: whole lines, timestamps, size rotation, truncation.
#include <catch2/catch.hpp>

#include <filesystem>

#include "master/logs.h"
#include "tests/support/process.h"

using namespace clusterd::master;
using clusterd::test::readFile;
using clusterd::test::TempDir;

TEST_CASE("partial lines are held until their newline") {
  TempDir dir;
  auto file = std::make_shared<LogFile>(dir.file("a.log"), 0, 3, "");
  LineSplitter s(file);
  s.feed("hel");
  CHECK(readFile(dir.file("a.log")).empty());
  s.feed("lo\nwor");
  CHECK(readFile(dir.file("a.log")) == "hello\n");
  s.finish();
  CHECK(readFile(dir.file("a.log")) == "hello\nwor\n");
}

TEST_CASE("log_date_format prefixes every line") {
  TempDir dir;
  LogFile f(dir.file("a.log"), 0, 3, "%Y");
  f.writeLines("one\ntwo\n");
  std::string text = readFile(dir.file("a.log"));
  CHECK(text.size() == std::string("2026: one\n2026: two\n").size());
  CHECK(text.find(": one\n") == 4);
}

TEST_CASE("files rotate past log_max_size and keep log_retain old ones") {
  TempDir dir;
  LogFile f(dir.file("a.log"), 100, 2, "");
  std::string line(60, 'x');
  line += '\n';
  for (int i = 0; i < 5; ++i) f.writeLines(line);
  CHECK(std::filesystem::exists(dir.file("a.log.1")));
  CHECK(std::filesystem::exists(dir.file("a.log.2")));
  CHECK_FALSE(std::filesystem::exists(dir.file("a.log.3")));
  CHECK(readFile(dir.file("a.log")).size() <= 100);
  f.truncate();
  CHECK(readFile(dir.file("a.log")).empty());
  CHECK_FALSE(std::filesystem::exists(dir.file("a.log.1")));
}
