// Worker log files: whole lines, timestamps, size rotation, truncation.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "master/logs.h"
#include "tests/support/process.h"

namespace master_logs_test {

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

TEST_CASE("a log file that is a symbolic link is refused and its target is left untouched") {
  TempDir dir;
  clusterd::test::writeFile(dir.file("secret"), "keep\n");
  REQUIRE(::symlink(dir.file("secret").c_str(), dir.file("out.log").c_str()) == 0);
  LogFile f(dir.file("out.log"), 0, 3, "");
  CHECK(f.refusal() == "log file " + dir.file("out.log") +
                           " is a symbolic link; clusterd does not follow links for log files: "
                           "name the file itself");
  f.writeLines("pwned\n");
  CHECK(readFile(dir.file("secret")) == "keep\n");
}

TEST_CASE("a log directory the app's user may write is refused") {
  TempDir dir;
  std::string logs = dir.file("logs");
  REQUIRE(::mkdir(logs.c_str(), 0700) == 0);
  REQUIRE(::chmod(logs.c_str(), 0777) == 0);  // anyone, the app's user too, may write
  LogFile f(logs + "/out.log", 0, 3, "", LogUser{65534, 65534});
  CHECK(f.refusal().find("log directory " + logs + " is writable by ") == 0);
  CHECK_FALSE(std::filesystem::exists(logs + "/out.log"));
  // The master's own apps may log there.
  LogFile own(logs + "/out.log", 0, 3, "");
  CHECK(own.refusal().empty());
}

TEST_CASE("a parent the app's user may write without the sticky bit is refused too") {
  TempDir dir;
  std::string parent = dir.file("open"), logs = dir.file("open/logs");
  REQUIRE(::mkdir(parent.c_str(), 0700) == 0);
  REQUIRE(::mkdir(logs.c_str(), 0755) == 0);
  REQUIRE(::chmod(parent.c_str(), 0777) == 0);  // anyone may rename logs/ and put a link there
  LogFile f(logs + "/out.log", 0, 3, "", LogUser{65534, 65534});
  CHECK(f.refusal().find("log directory " + parent + " is writable by ") == 0);
  REQUIRE(::chmod(parent.c_str(), 01777) == 0);  // like /tmp: logs/ is not theirs to move
  LogFile sticky(logs + "/out.log", 0, 3, "", LogUser{65534, 65534});
  CHECK(sticky.refusal().empty());
}

TEST_CASE("rotation renames links it finds instead of writing through them") {
  TempDir dir;
  clusterd::test::writeFile(dir.file("secret"), "keep\n");
  LogFile f(dir.file("a.log"), 100, 3, "");
  REQUIRE(::symlink(dir.file("secret").c_str(), dir.file("a.log.1").c_str()) == 0);
  std::string line(60, 'x');
  line += '\n';
  for (int i = 0; i < 3; ++i) f.writeLines(line);
  CHECK(readFile(dir.file("secret")) == "keep\n");
  CHECK(std::filesystem::is_symlink(dir.file("a.log.3")));  // moved up, still a link
  CHECK(readFile(dir.file("a.log")) == line);
}

TEST_CASE("/dev/null is a valid log file and is never rotated") {
  LogFile f("/dev/null", 10, 3, "");
  CHECK(f.refusal().empty());
  f.writeLines("more than ten bytes\n");
  f.writeLines("more than ten bytes\n");
  CHECK_FALSE(std::filesystem::exists("/dev/null.1"));
}

}  // namespace master_logs_test
