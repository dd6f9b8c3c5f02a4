// The guarantees around handlers against a real Redis: a timeout never frees
// a slot while the work still runs, a command's whole process group is
// stopped, a command inherits only its stdio, and persistent commands.
#include <fmt/format.h>

#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <set>
#include <sstream>

#include "queue/handlers.h"
#include "queue/persistent.h"
#include "tests/queue/queue_fixture.h"

namespace queue_handlers_test {

using namespace clusterd;
using namespace clusterd::queue;
using namespace std::chrono_literals;
using test::newJob;

namespace {

// True while `pid` is a live process (a zombie counts as gone).
bool processAlive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  size_t paren = text.rfind(')');
  return paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] != 'Z';
}

pid_t pidFrom(const std::string& path) {
  std::ifstream in(path);
  pid_t pid = 0;
  in >> pid;
  return pid;
}

config::HandlerSpec command(std::string name, std::string script,
                            std::chrono::milliseconds timeout = 10s) {
  config::HandlerSpec spec;
  spec.job_name = std::move(name);
  spec.command = {"/bin/sh", "-c", std::move(script)};
  spec.timeout = timeout;
  spec.kill_grace = 2s;
  return spec;
}

// The job's result as JSON (null when none).
nlohmann::json resultOf(const Job& j) {
  return j.resultJson();
}

}  // namespace

TEST_CASE_METHOD(
    test::QueueFixture,
    "a timed-out job keeps its slot until its handler answers, and the answer is discarded") {
  std::string a = enqueue("t", newJob("hold", {{"n", 1}}, {.attempts = 1, .timeout = 100ms}));
  std::string b = enqueue("t", newJob("hold", {{"n", 2}}, {.attempts = 1, .timeout = 10s}));
  auto c = consumer("t", 1);
  std::vector<std::pair<int, Done>> started;
  c->handle("hold", [&](const Job& j, Done done) {
    started.emplace_back(j.payloadJson()["n"].get<int>(), done);
  });
  start(*c);
  REQUIRE(loop.runUntil([&] { return counts("t").dead == 1; }));
  CHECK(show("t", a)->reason == "timed out after 100 ms");
  // The first handler still runs: the one slot stays taken, so job 2 waits.
  loop.runFor(300ms);
  REQUIRE(started.size() == 1);
  auto s = c->stats();
  CHECK(s.in_flight == 1);
  CHECK(s.overrunning == 1);
  CHECK(s.timed_out == 1);
  // Its late answer frees the slot and is discarded: job 1 stays dead.
  started[0].second(success());
  REQUIRE(loop.runUntil([&] { return started.size() == 2; }));
  CHECK(started[1].first == 2);
  CHECK(c->stats().overrunning == 0);
  started[1].second(success());
  REQUIRE(loop.runUntil([&] { return c->stats().completed == 1; }));
  CHECK(show("t", a)->state == JobState::kDead);
  CHECK(show("t", b)->state == JobState::kCompleted);
}

TEST_CASE_METHOD(
    test::QueueFixture,
    "a command's whole process group is killed at its timeout, then the run completes") {
  test::TempDir dir;
  // The shell's background child keeps stdout and stderr open: killing the
  // shell alone would leave the run waiting for EOF.
  auto spec =
      command("cmd.stuck", fmt::format("sleep 30 & echo $! > {}; wait", dir.file("pid")), 1000ms);
  std::string id = enqueue("g", newJob("cmd.stuck", nullptr, {.attempts = 1}));
  auto c = consumer("g", 2);
  registerCommandHandlers(*c, loop.get(), {spec});
  start(*c);
  REQUIRE(loop.runUntil([&] { return counts("g").dead == 1; }));
  CHECK(show("g", id)->reason == "timed out after 1000 ms (killed)");
  pid_t grandchild = pidFrom(dir.file("pid"));
  REQUIRE(grandchild > 0);
  CHECK_FALSE(processAlive(grandchild));
  CHECK(c->stats().in_flight == 0);
}

TEST_CASE_METHOD(
    test::QueueFixture,
    "a command that ignores SIGTERM is SIGKILLed after the grace, and only then frees its slot") {
  test::TempDir dir;
  // The job's own timeout (not the handler's) stops it; the one slot stays
  // taken until the group is gone, so the second job starts only then.
  auto spec = command(
      "cmd.deaf",
      fmt::format("trap '' TERM; echo $$ > {}; sleep 30 & wait; sleep 30", dir.file("pid")));
  spec.kill_grace = 300ms;
  auto next = command("cmd.next", fmt::format("echo started > {}", dir.file("next")));
  std::string id = enqueue("k", newJob("cmd.deaf", nullptr, {.attempts = 1, .timeout = 1000ms}));
  enqueue("k", newJob("cmd.next"));
  auto c = consumer("k", 1);
  registerCommandHandlers(*c, loop.get(), {spec, next});
  start(*c);
  REQUIRE(loop.runUntil([&] { return counts("k").dead == 1; }));
  CHECK(show("k", id)->reason == "timed out after 1000 ms");
  pid_t shell = pidFrom(dir.file("pid"));
  REQUIRE(shell > 0);
  REQUIRE(loop.runUntil([&] { return c->stats().completed == 1; }));
  CHECK_FALSE(processAlive(shell));
  CHECK(c->stats().timed_out == 1);
  CHECK(c->stats().overrunning == 0);
}

TEST_CASE_METHOD(test::QueueFixture, "a command inherits only stdin, stdout and stderr") {
  // A socket without close-on-exec, as the listening socket the master
  // passes a worker as fd 3.
  int sock = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(sock >= 0);
  int high = ::dup2(sock, 57);
  ::close(sock);
  REQUIRE(high == 57);
  auto spec = command("cmd.fds", "ls -l /proc/self/fd");
  std::string id = enqueue("f", newJob("cmd.fds"));
  auto c = consumer("f", 1);
  registerCommandHandlers(*c, loop.get(), {spec});
  start(*c);
  REQUIRE(loop.runUntil([&] { return c->stats().completed == 1; }));
  ::close(high);
  std::string listing = resultOf(*show("f", id)).get<std::string>();
  INFO(listing);
  CHECK(listing.find("socket:") == std::string::npos);
  CHECK(listing.find(" 57 ->") == std::string::npos);
  std::set<std::string> fds;
  std::istringstream lines(listing);
  for (std::string line; std::getline(lines, line);) {
    auto arrow = line.find(" -> ");
    if (arrow == std::string::npos) continue;
    auto space = line.rfind(' ', arrow - 1);
    fds.insert(line.substr(space + 1, arrow - space - 1));
  }
  // 0-2, and the directory ls itself is reading.
  CHECK(fds.size() <= 4);
  CHECK(fds.count("0") == 1);
  CHECK(fds.count("1") == 1);
  CHECK(fds.count("2") == 1);
}

namespace {

// A persistent handler in shell: answers each line with its own pid, and
// dies on a request whose payload says so on its first attempt.
config::HandlerSpec persistent(std::string name, std::chrono::milliseconds timeout = 10s) {
  auto spec =
      command(std::move(name),
              "while IFS= read -r line; do\n"
              "  case \"$line\" in\n"
              "    *'\"attempt\":1,'*'\"die\"'*) echo 'dying' >&2; exit 3;;\n"
              "    *'\"hang\"'*) sleep 30;;\n"
              "    *'\"noise\"'*) echo 'not an answer';;\n"
              "    *'\"bad\"'*) echo '{\"error\": \"no such sku\", \"permanent\": true}';;\n"
              "    *) echo \"{\\\"result\\\": $$}\";;\n"
              "  esac\n"
              "done\n",
              timeout);
  spec.mode = config::HandlerMode::kPersistent;
  return spec;
}

}  // namespace

TEST_CASE_METHOD(test::QueueFixture,
                 "a persistent command serves many jobs, one line each, from one process") {
  ::signal(SIGPIPE, SIG_IGN);  // as the worker does
  std::vector<NewJob> jobs;
  for (int i = 0; i < 30; ++i) jobs.push_back(newJob("p.echo", {{"i", i}}));
  enqueueMany("p", std::move(jobs));
  std::string bad = enqueue("p", newJob("p.echo", "bad", {.attempts = 3}));
  auto c = consumer("p", 1);
  registerCommandHandlers(*c, loop.get(), {persistent("p.echo")});
  start(*c);
  REQUIRE(loop.runUntil([&] { return c->stats().completed == 30 && counts("p").dead == 1; }));
  CHECK(show("p", bad)->reason == "permanent failure: no such sku");
  CHECK(show("p", bad)->attempt == 1);
  auto listed = await<std::vector<Job>>(
      loop, [&](auto cb) { client->listJobs("p", JobState::kCompleted, 0, 100, cb); });
  REQUIRE(listed);
  std::set<int64_t> pids;
  for (const Job& j : *listed) pids.insert(resultOf(*show("p", j.id)).get<int64_t>());
  CHECK(pids.size() == 1);
}

TEST_CASE_METHOD(
    test::QueueFixture,
    "a persistent process that dies mid-job fails that job, which a new process retries") {
  ::signal(SIGPIPE, SIG_IGN);
  std::string id = enqueue("d", newJob("p.die", "die", {.attempts = 2, .backoff = 1ms}));
  auto c = consumer("d", 1);
  registerCommandHandlers(*c, loop.get(), {persistent("p.die")});
  start(*c);
  REQUIRE(loop.runUntil([&] { return c->stats().completed == 1; }));
  auto j = show("d", id);
  REQUIRE(j);
  CHECK(j->attempt == 1);
  REQUIRE_FALSE(j->errors.empty());
  CHECK(j->errors[0].error.find("the handler process exited with status 3 mid-job: dying") !=
        std::string::npos);
}

TEST_CASE_METHOD(test::QueueFixture,
                 "a persistent job past its timeout or writing a stray line kills its process, the "
                 "next job gets a new one") {
  ::signal(SIGPIPE, SIG_IGN);
  std::string hang = enqueue("h", newJob("p.hang", "hang", {.attempts = 1}));
  std::string noise = enqueue("h", newJob("p.hang", "noise", {.attempts = 1}));
  std::string ok = enqueue("h", newJob("p.hang", "fine"));
  auto c = consumer("h", 1);
  registerCommandHandlers(*c, loop.get(), {persistent("p.hang", 300ms)});
  start(*c);
  REQUIRE(loop.runUntil([&] { return c->stats().completed == 1 && counts("h").dead == 2; }));
  CHECK(show("h", hang)->reason.find("timed out after 300 ms (killed") == 0);
  CHECK(show("h", noise)->reason.find("wrote an answer that is not") != std::string::npos);
  CHECK(resultOf(*show("h", ok)).is_number());
}

}  // namespace queue_handlers_test
