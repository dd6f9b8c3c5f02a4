// Orphans: a daemon killed with SIGKILL takes its workers with it, and its
// reaper ends what those workers had forked; when the reaper was stopped
// too, the next daemon for the home does. A recorded group whose leader pid
// now belongs to another process is left alone. Also the groups file codec
// and the /proc/<pid>/stat fields it uses.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <fmt/format.h>

#include <chrono>
#include <string>

#include "master/orphans.h"
#include "tests/master/daemon_fixture.h"

namespace master_orphans_test {

using namespace clusterd::master;
using namespace clusterd::master::test;
using namespace std::chrono;
using clusterd::test::readFile;
using clusterd::test::waitFor;
using clusterd::test::writeFile;

namespace {

uint64_t startTimeOf(pid_t pid) {
  auto ids = parseStatIds(readFile("/proc/" + std::to_string(pid) + "/stat"));
  REQUIRE(ids);
  return ids->start_time;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Whether the daemon log says the sweep found `child` in `worker`'s group.
// The worker itself may be listed too: its parent-death signal and the
// sweep race, and either way the whole group is ended.
bool sweptChild(const std::string& log, pid_t worker, pid_t child) {
  std::string w = std::to_string(worker);
  size_t at = log.find("process group " + w + " of worker pid " + w + " of a daemon that is gone still runs ");
  if (at == std::string::npos) return false;
  std::string line = log.substr(at, log.find('\n', at) - at);
  return contains(line, fmt::format(" {} (", child));
}

// A worker that forked a child which ignores SIGTERM; returns {worker, child}
// once the groups file names the worker.
std::pair<pid_t, pid_t> startParent(DaemonUnderTest& d) {
  std::string child_file = d.home() + "/child.pid";
  ::unlink(child_file.c_str());
  REQUIRE(d.start(testApp("parent", 1, 0, {"--fork-child", child_file}))["ok"] == true);
  REQUIRE(d.waitOnline("parent", 1));
  REQUIRE(waitFor([&] { return !readFile(child_file).empty(); }));
  pid_t worker = d.pids("parent").at(0);
  pid_t child = std::stoi(readFile(child_file));
  REQUIRE(waitFor([&] {
    return contains(readFile(groupsPath(d.home())), fmt::format("\n{} ", worker));
  }));
  return {worker, child};
}

// Stops the reaper of a daemon for the test, and kills it at the end.
struct StoppedReaper {
  explicit StoppedReaper(DaemonUnderTest& d) : pid(d.call({{"cmd", "ping"}})["reaper"].get<pid_t>()) {
    REQUIRE(pid > 0);
    REQUIRE(::kill(pid, SIGSTOP) == 0);
  }
  ~StoppedReaper() { ::kill(pid, SIGKILL); }
  pid_t pid;
};

}  // namespace

TEST_CASE("what the workers of a daemon killed with SIGKILL forked is ended by its reaper") {
  DaemonUnderTest d;
  auto [worker, child] = startParent(d);
  d.crash();
  CHECK(waitFor([&] { return !processAlive(worker); }, seconds(5)));
  // The child ignores SIGTERM: the reaper goes on to SIGKILL after its grace.
  CHECK(waitFor([&] { return !processAlive(child); }, seconds(10)));
  std::string log = readFile(d.home() + "/daemon.out");
  INFO(log);
  CHECK(sweptChild(log, worker, child));
  CHECK(contains(log, "SIGKILL"));
}

TEST_CASE("the next daemon ends what the workers of a SIGKILLed daemon forked when its reaper could not") {
  DaemonUnderTest d;
  auto [worker, child] = startParent(d);
  StoppedReaper reaper(d);
  d.crash();
  REQUIRE(waitFor([&] { return !processAlive(worker); }, seconds(5)));
  // Nothing else ends the child: the parent-death signal is not inherited.
  REQUIRE(processAlive(child));
  d.startAgain();
  CHECK(waitFor([&] { return !processAlive(child); }, seconds(10)));
  std::string log = readFile(d.home() + "/daemon.out");
  INFO(log);
  CHECK(sweptChild(log, worker, child));
  CHECK(contains(log, "SIGKILL"));
}

TEST_CASE("the reaper of a dead daemon leaves alone the workers of a newer daemon on the home") {
  DaemonUnderTest d;
  StoppedReaper old_reaper(d);
  d.crash();
  d.startAgain();
  auto [worker, child] = startParent(d);
  // The old reaper wakes up to a groups file that names the new daemon.
  REQUIRE(::kill(old_reaper.pid, SIGCONT) == 0);
  REQUIRE(waitFor([&] { return !processAlive(old_reaper.pid); }, seconds(5)));
  CHECK(processAlive(worker));
  CHECK(processAlive(child));
}

TEST_CASE("the sweep leaves alone a recorded group whose leader pid is another process now") {
  DaemonUnderTest d;
  d.crash();
  // Two process-group leaders (Child puts each in its own group): one
  // recorded as it is, one recorded with another start time, as if its pid
  // had been reused.
  clusterd::test::Child ours({"sleep", "60"});
  clusterd::test::Child reused({"sleep", "60"});
  REQUIRE(waitFor([&] {
    return ::getpgid(ours.pid()) == ours.pid() && ::getpgid(reused.pid()) == reused.pid();
  }));
  GroupsFile file{{1234, 5678},
                  {{ours.pid(), ours.pid(), startTimeOf(ours.pid())},
                   {reused.pid(), reused.pid(), startTimeOf(reused.pid()) + 1}}};
  writeFile(groupsPath(d.home()), formatGroups(currentBootId(), file));
  d.startAgain();
  CHECK(ours.wait(seconds(10)) != -1);
  // The log line comes when the grace period ends, after the only signals sent.
  REQUIRE(waitFor([&] {
    return contains(readFile(d.home() + "/daemon.out"),
                    "process group " + std::to_string(ours.pid()) + " ended after SIGTERM");
  }, seconds(10)));
  CHECK(reused.running());
  CHECK(!contains(readFile(d.home() + "/daemon.out"), "process group " + std::to_string(reused.pid())));
}

TEST_CASE("the groups file keeps its records for the same boot only") {
  GroupsFile file{{42, 77}, {{100, 100, 5}, {2345, 2345, 987654321}}};
  std::string text = formatGroups("boot-a", file);
  auto back = parseGroups(text, "boot-a");
  REQUIRE(back);
  CHECK(back->daemon == file.daemon);
  CHECK(back->groups == file.groups);
  CHECK(!parseGroups(text, "boot-b"));
  CHECK(!parseGroups("something else\nboot boot-a\ndaemon 1 2\n100 100 5\n", "boot-a"));
  CHECK(!parseGroups("clusterd-groups 1\nboot boot-a\n100 100 5\n", "boot-a"));
  // A damaged line is skipped; pid 1 and 0 are never signalled.
  auto damaged = parseGroups("clusterd-groups 1\nboot x\ndaemon 9 9\n12 12\n1 1 3\n0 0 3\n7 7 9\n", "x");
  REQUIRE(damaged);
  CHECK(damaged->groups == std::vector<GroupRecord>{{7, 7, 9}});
}

TEST_CASE("stat fields are read after a command name with spaces and parentheses") {
  std::string stat =
      "4242 (we(ird) name) S 1 4240 4240 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 1 0 123456 1000 "
      "200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
  auto ids = parseStatIds(stat);
  REQUIRE(ids);
  CHECK(ids->comm == "we(ird) name");
  CHECK(ids->state == 'S');
  CHECK(ids->pgrp == 4240);
  CHECK(ids->start_time == 123456);
  CHECK(!parseStatIds("4242 (short) S 1 2"));
}

}  // namespace master_orphans_test
