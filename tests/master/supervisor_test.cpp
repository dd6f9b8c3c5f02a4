// The supervisor's policy with a fake clock and fake processes: crash
// restarts and backoff, errored, stop with SIGKILL after kill_timeout,
// rolling reload order, memory limit and watchdog replacement, notify
// routing, scale and bad input.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "master/supervisor.h"
#include "tests/master/fake_platform.h"
#include "tests/support/process.h"

namespace master_supervisor_test {

using namespace clusterd::master;
using clusterd::master::test::FakePlatform;
using nlohmann::json;

namespace {

struct Fixture {
  clusterd::test::TempDir dir;
  FakePlatform platform;
  Supervisor sup{platform, [&] {
                   auto o = clusterd::master::test::fakeSupervisorOptions(dir.path());
                   o.start_grace = Millis{100};
                   return o;
                 }()};

  AppConfig app(const std::string& name, int instances = 1) {
    AppConfig a;
    a.spec.name = name;
    a.spec.script = "/bin/sleep";
    a.spec.args = {"1000"};
    a.spec.instances = instances;
    a.base_dir = dir.path();
    return a;
  }
  AppConfig clusterApp(const std::string& name, int instances) {
    AppConfig a = app(name, instances);
    a.spec.exec_mode = clusterd::config::ExecMode::kCluster;
    clusterd::config::ListenAddress l;
    l.host = "127.0.0.1";
    l.port = 0;
    l.text = "127.0.0.1:0";
    a.spec.listen = l;
    a.spec.wait_ready = true;
    return a;
  }
  Worker& main(const std::string& app, int slot = 0) {
    return *sup.apps().at(app)->slots.at(static_cast<size_t>(slot))->main;
  }
  Slot& slot(const std::string& app, int i = 0) { return *sup.apps().at(app)->slots.at(static_cast<size_t>(i)); }
};

}  // namespace

TEST_CASE("a worker is online after the start grace without wait_ready") {
  Fixture f;
  REQUIRE(f.sup.startApp(f.app("a")).ok());
  CHECK(f.main("a").state == WorkerState::kLaunching);
  f.platform.advance(Millis{99});
  CHECK(f.main("a").state == WorkerState::kLaunching);
  f.platform.advance(Millis{1});
  CHECK(f.main("a").state == WorkerState::kOnline);
}

TEST_CASE("with wait_ready a worker is online at READY=1 from its pid") {
  Fixture f;
  auto a = f.app("a");
  a.spec.wait_ready = true;
  REQUIRE(f.sup.startApp(a).ok());
  pid_t pid = f.main("a").pid;
  f.platform.advance(Millis{1000});
  CHECK(f.main("a").state == WorkerState::kLaunching);
  f.sup.onNotify(pid, "STATUS=warming up\nREADY=1\n");
  CHECK(f.main("a").state == WorkerState::kOnline);
  CHECK(f.main("a").status_text == "warming up");
}

TEST_CASE("a notification from a child in the worker's process group counts for the worker") {
  Fixture f;
  auto a = f.app("a");
  a.spec.wait_ready = true;
  REQUIRE(f.sup.startApp(a).ok());
  pid_t pid = f.main("a").pid;
  f.platform.group_of[4242] = pid;
  f.platform.parent_of[4242] = 4241;  // a grandchild
  f.platform.parent_of[4241] = pid;
  f.sup.onNotify(4242, "READY=1");
  CHECK(f.main("a").state == WorkerState::kOnline);
  f.sup.onNotify(9999, "READY=1");  // unknown: ignored
}

TEST_CASE(
    "a process that joined a worker's group without descending from it does not speak for it") {
  Fixture f;
  auto a = f.app("a");
  a.spec.wait_ready = true;
  REQUIRE(f.sup.startApp(a).ok());
  auto b = f.app("b");
  REQUIRE(f.sup.startApp(b).ok());
  pid_t victim = f.main("a").pid, other = f.main("b").pid;
  // A child of b's worker moved itself into a's group (setpgid).
  f.platform.group_of[4242] = victim;
  f.platform.parent_of[4242] = other;
  f.platform.parent_of[other] = 1;
  f.sup.onNotify(4242, "READY=1\nSTATUS=impersonated");
  CHECK(f.main("a").state == WorkerState::kLaunching);
  CHECK(f.main("a").status_text.empty());
}

TEST_CASE("a notification counts only on the socket of the worker's app") {
  Fixture f;
  auto a = f.app("a");
  a.spec.wait_ready = true;
  REQUIRE(f.sup.startApp(a).ok());
  pid_t pid = f.main("a").pid;
  f.sup.onNotify(pid, "other-app", "READY=1");  // a's workers use the main socket
  CHECK(f.main("a").state == WorkerState::kLaunching);
  f.sup.onNotify(pid, "", "READY=1");
  CHECK(f.main("a").state == WorkerState::kOnline);
}

TEST_CASE("a crashed worker is restarted after restart_delay with a new pid") {
  Fixture f;
  auto a = f.app("a");
  a.spec.restart_delay = Millis{500};
  REQUIRE(f.sup.startApp(a).ok());
  f.platform.advance(Millis{2000});
  pid_t first = f.main("a").pid;
  f.platform.exit(first, 1);
  CHECK(f.main("a").state == WorkerState::kWaiting);
  CHECK(f.main("a").last_exit == "exit 1");
  f.platform.advance(Millis{499});
  CHECK(f.main("a").state == WorkerState::kWaiting);
  f.platform.advance(Millis{1});
  CHECK(f.main("a").state == WorkerState::kLaunching);
  CHECK(f.main("a").pid != first);
  CHECK(f.slot("a").restarts == 1);
}

TEST_CASE("a crash loop ends errored after max_restarts and restart revives it") {
  Fixture f;
  auto a = f.app("a");
  a.spec.max_restarts = 2;
  REQUIRE(f.sup.startApp(a).ok());
  for (int i = 0; i < 3; ++i) {
    f.platform.exit(f.main("a").pid, 1);
    f.platform.advance(Millis{1});
  }
  CHECK(f.main("a").state == WorkerState::kErrored);
  CHECK(f.main("a").status_text.find("min_uptime") != std::string::npos);
  REQUIRE(f.sup.restart("a").ok());
  CHECK(f.main("a").state == WorkerState::kLaunching);
}

TEST_CASE("exp_backoff_restart_delay spaces restarts out") {
  Fixture f;
  auto a = f.app("a");
  a.spec.exp_backoff_restart_delay = Millis{100};
  REQUIRE(f.sup.startApp(a).ok());
  f.platform.exit(f.main("a").pid, 1);
  f.platform.advance(Millis{99});
  CHECK(f.main("a").state == WorkerState::kWaiting);
  f.platform.advance(Millis{1});
  CHECK(f.main("a").state == WorkerState::kLaunching);
  f.platform.exit(f.main("a").pid, 1);
  f.platform.advance(Millis{149});
  CHECK(f.main("a").state == WorkerState::kWaiting);
  f.platform.advance(Millis{1});
  CHECK(f.main("a").state == WorkerState::kLaunching);
}

TEST_CASE("autorestart false leaves an exited worker stopped") {
  Fixture f;
  auto a = f.app("a");
  a.spec.autorestart = false;
  REQUIRE(f.sup.startApp(a).ok());
  f.platform.exit(f.main("a").pid, 0);
  f.platform.advance(Millis{5000});
  CHECK(f.main("a").state == WorkerState::kStopped);
}

TEST_CASE("stop sends SIGTERM to the group and SIGKILL after kill_timeout") {
  Fixture f;
  f.platform.exit_on_term = false;
  auto a = f.app("a");
  a.spec.kill_timeout = Millis{800};
  REQUIRE(f.sup.startApp(a).ok());
  pid_t pid = f.main("a").pid;
  REQUIRE(*f.sup.stop("a") == 1);
  CHECK(f.main("a").state == WorkerState::kStopping);
  CHECK(f.platform.hasSignal(pid, SIGTERM));
  f.platform.advance(Millis{799});
  CHECK_FALSE(f.platform.hasSignal(pid, SIGKILL));
  f.platform.advance(Millis{1});
  CHECK(f.platform.hasSignal(pid, SIGKILL));
  CHECK(f.main("a").state == WorkerState::kStopped);
  f.platform.advance(Millis{10'000});
  CHECK(f.main("a").state == WorkerState::kStopped);  // not restarted
}

TEST_CASE("no signal goes to the pid of a worker whose exit was reported") {
  Fixture f;
  f.platform.exit_on_term = false;
  auto a = f.clusterApp("web", 2);
  a.spec.kill_timeout = Millis{500};
  REQUIRE(f.sup.startApp(a).ok());
  pid_t crashed = f.main("web", 0).pid, stopped = f.main("web", 1).pid;
  f.sup.onNotify(crashed, "READY=1");
  f.sup.onNotify(stopped, "READY=1");
  // A crash, a stop whose SIGTERM is answered by an exit before kill_timeout,
  // and a reload whose old worker exits on its own.
  f.platform.exit(crashed, 1);
  REQUIRE(*f.sup.stop("1") == 1);
  f.platform.exit(stopped, 0);
  f.platform.advance(Millis{5'000});
  pid_t restarted = f.main("web", 0).pid;
  REQUIRE(restarted != crashed);
  f.sup.onNotify(restarted, "READY=1");
  REQUIRE(f.sup.reload("web", 1).ok());
  f.sup.onNotify(f.platform.spawned.back(), "READY=1");
  f.platform.exit(restarted, 0);
  f.platform.advance(Millis{5'000});
  CHECK(f.platform.signals_to_reaped.empty());
  // What the exited workers left in their groups was still killed, by group.
  CHECK(f.platform.exited_group_kills == std::vector<pid_t>{crashed, stopped, restarted});
}

TEST_CASE("reload starts each replacement before stopping the old worker, one slot at a time") {
  Fixture f;
  REQUIRE(f.sup.startApp(f.clusterApp("web", 2)).ok());
  pid_t old0 = f.main("web", 0).pid, old1 = f.main("web", 1).pid;
  f.sup.onNotify(old0, "READY=1");
  f.sup.onNotify(old1, "READY=1");
  size_t spawned = f.platform.spawned.size();
  REQUIRE(*f.sup.reload("web", 1) == 2);
  REQUIRE(f.platform.spawned.size() == spawned + 1);  // one at a time
  pid_t new0 = f.platform.spawned.back();
  CHECK(f.platform.procs.at(new0).request.listen_fd == f.slot("web", 0).listen_fd.get());
  CHECK_FALSE(f.platform.hasSignal(old0, SIGTERM));  // old keeps serving until the new one is ready
  f.sup.onNotify(new0, "READY=1");
  CHECK(f.platform.hasSignal(old0, SIGTERM));
  CHECK(f.main("web", 0).pid == new0);
  REQUIRE(f.platform.spawned.size() == spawned + 2);  // then the next slot
  pid_t new1 = f.platform.spawned.back();
  CHECK_FALSE(f.platform.hasSignal(old1, SIGTERM));
  f.sup.onNotify(new1, "READY=1");
  CHECK(f.platform.hasSignal(old1, SIGTERM));
  CHECK(f.slot("web", 0).restarts == 1);
}

TEST_CASE("reload --parallel 2 replaces two slots at once") {
  Fixture f;
  REQUIRE(f.sup.startApp(f.clusterApp("web", 3)).ok());
  for (int i = 0; i < 3; ++i) f.sup.onNotify(f.main("web", i).pid, "READY=1");
  size_t spawned = f.platform.spawned.size();
  REQUIRE(f.sup.reload("web", 2).ok());
  CHECK(f.platform.spawned.size() == spawned + 2);
}

TEST_CASE("a replacement that dies before ready leaves the old worker serving") {
  Fixture f;
  REQUIRE(f.sup.startApp(f.clusterApp("web", 1)).ok());
  pid_t old = f.main("web").pid;
  f.sup.onNotify(old, "READY=1");
  REQUIRE(f.sup.reload("web", 1).ok());
  pid_t repl = f.platform.spawned.back();
  f.platform.exit(repl, 1);
  CHECK(f.main("web").pid == old);
  CHECK(f.main("web").state == WorkerState::kOnline);
  CHECK_FALSE(f.platform.hasSignal(old, SIGTERM));
  CHECK(f.slot("web").incoming == nullptr);
}

TEST_CASE("a worker over max_memory_restart is replaced within one check interval") {
  Fixture f;
  auto a = f.clusterApp("web", 1);
  a.spec.max_memory_restart = 100 << 20;
  a.spec.memory_check_interval = Millis{200};
  REQUIRE(f.sup.startApp(a).ok());
  pid_t old = f.main("web").pid;
  f.sup.onNotify(old, "READY=1");
  f.platform.advance(Millis{400});
  CHECK(f.platform.spawned.size() == 1);
  f.platform.procs.at(old).rss = 200 << 20;
  f.platform.advance(Millis{200});
  REQUIRE(f.platform.spawned.size() == 2);
  CHECK_FALSE(f.platform.hasSignal(old, SIGTERM));
  f.sup.onNotify(f.platform.spawned.back(), "READY=1");
  CHECK(f.platform.hasSignal(old, SIGTERM));
  f.platform.advance(Millis{1000});
  CHECK(f.platform.spawned.size() == 2);  // the replacement is under the limit
}

TEST_CASE("a fork-mode worker over the memory limit is restarted") {
  Fixture f;
  auto a = f.app("a");
  a.spec.max_memory_restart = 100 << 20;
  a.spec.memory_check_interval = Millis{100};
  REQUIRE(f.sup.startApp(a).ok());
  f.platform.advance(Millis{150});
  pid_t old = f.main("a").pid;
  f.platform.procs.at(old).rss = 300 << 20;
  f.platform.advance(Millis{100});
  CHECK(f.platform.hasSignal(old, SIGTERM));
  CHECK(f.main("a").pid != old);
  CHECK(f.main("a").state == WorkerState::kLaunching);
}

TEST_CASE("a worker that stops sending WATCHDOG=1 is replaced") {
  Fixture f;
  auto a = f.clusterApp("web", 1);
  a.spec.watchdog = Millis{1000};
  REQUIRE(f.sup.startApp(a).ok());
  pid_t old = f.main("web").pid;
  f.sup.onNotify(old, "READY=1");
  for (int i = 0; i < 5; ++i) {
    f.platform.advance(Millis{500});
    f.sup.onNotify(old, "WATCHDOG=1");
  }
  CHECK(f.platform.spawned.size() == 1);
  f.platform.advance(Millis{1600});
  REQUIRE(f.platform.spawned.size() == 2);
  f.sup.onNotify(f.platform.spawned.back(), "READY=1");
  CHECK(f.platform.hasSignal(old, SIGTERM));
}

TEST_CASE("CLUSTERD_STATS is kept per worker and shown in status") {
  Fixture f;
  REQUIRE(f.sup.startApp(f.app("a")).ok());
  f.sup.onNotify(f.main("a").pid, "CLUSTERD_STATS={\"requests\":7}");
  json rows = f.sup.statusJson();
  REQUIRE(rows.size() == 1);
  CHECK(rows[0]["stats"]["requests"] == 7);
  for (const char* key : {"id", "app", "mode", "instance", "pid", "state", "uptime_ms", "restarts",
                          "cpu", "memory"})
    CHECK(rows[0].contains(key));
}

TEST_CASE("scale adds and removes slots") {
  Fixture f;
  REQUIRE(f.sup.startApp(f.app("a", 2)).ok());
  REQUIRE(*f.sup.scale("a", "+2") == 4);
  CHECK(f.sup.apps().at("a")->slots.size() == 4);
  CHECK(f.slot("a", 3).instance == 3);
  REQUIRE(*f.sup.scale("a", "1") == 1);
  f.platform.advance(Millis{1});
  CHECK(f.sup.apps().at("a")->slots.size() == 1);
  CHECK_FALSE(f.sup.scale("a", "-1").ok());
  CHECK_FALSE(f.sup.scale("a", "x").ok());
}

TEST_CASE("delete stops the workers and forgets the app") {
  Fixture f;
  REQUIRE(f.sup.startApp(f.app("a", 2)).ok());
  REQUIRE(*f.sup.remove("a") == 2);
  f.platform.advance(Millis{1});
  CHECK(f.sup.apps().count("a") == 0);
  CHECK_FALSE(f.sup.stop("a").ok());
}

TEST_CASE("bad apps are refused with a message naming the problem") {
  Fixture f;
  auto zero = f.app("z", 0);
  auto r = f.sup.startApp(zero);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("instances") != std::string::npos);
  auto missing = f.app("m");
  missing.spec.script = "./no-such-program";
  r = f.sup.startApp(missing);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("does not exist") != std::string::npos);
  auto noexec = f.app("n");
  clusterd::test::writeFile(f.dir.file("plain.txt"), "hello");
  noexec.spec.script = "./plain.txt";
  r = f.sup.startApp(noexec);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("not executable") != std::string::npos);
  REQUIRE(f.sup.startApp(f.app("a")).ok());
  r = f.sup.startApp(f.app("a"));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("already running") != std::string::npos);
}

TEST_CASE("an unknown target is an error") {
  Fixture f;
  auto r = f.sup.stop("nope");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("nope") != std::string::npos);
}

TEST_CASE("workers get the socket-activation and instance environment") {
  Fixture f;
  REQUIRE(f.sup.startApp(f.clusterApp("web", 2)).ok());
  auto& env = f.platform.procs.at(f.main("web", 1).pid).request.env;
  auto has = [&](const std::string& kv) { return std::find(env.begin(), env.end(), kv) != env.end(); };
  CHECK(has("LISTEN_FDS=1"));
  CHECK(has("LISTEN_FDNAMES=web"));
  CHECK(has("CLUSTERD_APP=web"));
  CHECK(has("CLUSTERD_INSTANCE=1"));
  CHECK(has("NODE_APP_INSTANCE=1"));
}

}  // namespace master_supervisor_test
