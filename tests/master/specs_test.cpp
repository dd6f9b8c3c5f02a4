// New specs for running apps (Supervisor::updateSpecs), with a fake clock
// and fake processes: what a restart or reload then starts, what a running
// app keeps, all-or-nothing refusals; the variables a built-in worker gets;
// and the `vars` field of the app object.
#include <catch2/catch.hpp>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "master/supervisor.h"
#include "tests/master/fake_platform.h"
#include "tests/support/process.h"

namespace master_specs_test {

using namespace clusterd::master;
using clusterd::master::test::FakePlatform;
using nlohmann::json;

namespace {

struct Fixture {
  clusterd::test::TempDir dir;
  FakePlatform platform;
  Supervisor sup{platform, [&] {
                   auto o = clusterd::master::test::fakeSupervisorOptions(dir.path());
                   o.worker_exe = "/bin/true";
                   o.base_env = {"PATH=/usr/bin:/bin", "FROM_DAEMON=daemon", "SHARED=daemon"};
                   return o;
                 }()};

  AppConfig web(const std::string& mode, int instances = 2) {
    AppConfig a;
    a.spec.name = "web";
    a.spec.script = "/bin/sleep";
    a.spec.args = {"1000"};
    a.spec.instances = instances;
    a.spec.exec_mode = clusterd::config::ExecMode::kCluster;
    clusterd::config::ListenAddress l;
    l.host = "127.0.0.1";
    l.text = "127.0.0.1:0";
    a.spec.listen = l;
    a.spec.env = {{"APP_MODE", mode}};
    a.base_dir = dir.path();
    a.ecosystem_path = dir.file("eco.yaml");
    return a;
  }
  AppConfig other() {
    AppConfig a = web("x", 1);
    a.spec.name = "other";
    a.spec.exec_mode = clusterd::config::ExecMode::kFork;
    a.spec.listen.reset();
    return a;
  }
  const std::vector<std::string>& envOf(pid_t pid) { return platform.procs.at(pid).request.env; }
  bool hasEnv(pid_t pid, const std::string& kv) {
    auto& env = envOf(pid);
    return std::find(env.begin(), env.end(), kv) != env.end();
  }
  bool hasVar(pid_t pid, const std::string& name) {
    auto& env = envOf(pid);
    return std::any_of(env.begin(), env.end(),
                       [&](auto& kv) { return kv.starts_with(name + "="); });
  }
  void readyAll(const std::string& app) {
    for (auto& s : sup.apps().at(app)->slots) sup.onNotify(s->main->pid, "READY=1");
  }
};

}  // namespace

TEST_CASE(
    "after a new spec, a reload starts every replacement with it and keeps the instance count") {
  Fixture f;
  REQUIRE(f.sup.startApp(f.web("one")).ok());
  f.platform.advance(Millis{200});
  auto next = f.web("two", 5);
  next.spec.kill_timeout = Millis{9000};
  REQUIRE(f.sup.updateSpecs("web", {next}).ok());
  CHECK(f.sup.apps().at("web")->cfg.spec.instances == 2);
  CHECK(f.sup.apps().at("web")->cfg.spec.kill_timeout == Millis{9000});
  size_t before = f.platform.spawned.size();
  REQUIRE(*f.sup.reload("web", 2) == 2);
  f.platform.advance(Millis{200});
  REQUIRE(f.platform.spawned.size() == before + 2);
  for (size_t i = before; i < f.platform.spawned.size(); ++i)
    CHECK(f.hasEnv(f.platform.spawned[i], "APP_MODE=two"));
  CHECK(f.sup.apps().at("web")->slots.size() == 2);
}

TEST_CASE(
    "a new spec changing what a running app keeps is refused, naming the field, and changes "
    "nothing") {
  Fixture f;
  REQUIRE(f.sup.startApp(f.web("one")).ok());
  REQUIRE(f.sup.startApp(f.other()).ok());
  auto moved = f.web("two");
  moved.spec.listen->port = 9;
  moved.spec.listen->text = "127.0.0.1:9";
  auto fork = f.web("two");
  fork.spec.exec_mode = clusterd::config::ExecMode::kFork;
  fork.spec.listen.reset();
  auto logs = f.web("two");
  logs.spec.out_file = "elsewhere.log";
  auto retain = f.web("two");
  retain.spec.log_retain = 9;
  struct Case {
    AppConfig cfg;
    std::string field;
  };
  for (auto& c : {Case{moved, "`listen`"}, Case{fork, "`exec_mode`"}, Case{logs, "`out_file`"},
                  Case{retain, "`log_retain`"}}) {
    // `other` would be fine on its own: nothing is applied unless all are.
    auto other = f.other();
    other.spec.env["APP_MODE"] = "changed";
    auto r = f.sup.updateSpecs("all", {other, c.cfg});
    INFO(c.field);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find(c.field) != std::string::npos);
    CHECK(r.error().message.find("nothing was changed") != std::string::npos);
    CHECK(r.error().message.find("clusterd delete web") != std::string::npos);
    CHECK(f.sup.apps().at("web")->cfg.spec.env.at("APP_MODE") == "one");
    CHECK(f.sup.apps().at("other")->cfg.spec.env.at("APP_MODE") == "x");
  }
}

TEST_CASE(
    "a new spec for an app outside the target, an unknown app or a missing program is refused") {
  Fixture f;
  REQUIRE(f.sup.startApp(f.web("one")).ok());
  REQUIRE(f.sup.startApp(f.other()).ok());
  auto r = f.sup.updateSpecs("web", {f.other()});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("not part of the target") != std::string::npos);
  auto ghost = f.other();
  ghost.spec.name = "ghost";
  r = f.sup.updateSpecs("all", {ghost});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("ghost") != std::string::npos);
  auto missing = f.web("two");
  missing.spec.script = "./no-such-program";
  r = f.sup.updateSpecs("web", {missing});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("does not exist") != std::string::npos);
  CHECK(f.sup.apps().at("web")->cfg.spec.script == "/bin/sleep");
  r = f.sup.updateSpecs("nope", {});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("nope") != std::string::npos);
}

TEST_CASE("a built-in worker gets the caller's variables, set or removed, under the app's env") {
  Fixture f;
  AppConfig w;
  w.spec.name = "api";
  w.spec.script = "builtin:worker";
  w.spec.builtin_worker = true;
  w.spec.env = {{"SHARED", "app"}};
  w.base_dir = f.dir.path();
  w.ecosystem_path = f.dir.file("eco.yaml");
  w.vars = {{"LIMIT", "5000"}, {"FROM_DAEMON", std::nullopt}, {"SHARED", "caller"}};
  REQUIRE(f.sup.startApp(w).ok());
  pid_t pid = f.platform.spawned.back();
  CHECK(f.hasEnv(pid, "LIMIT=5000"));
  CHECK_FALSE(f.hasVar(pid, "FROM_DAEMON"));  // unset where the file was read
  CHECK(f.hasEnv(pid, "SHARED=app"));
  CHECK(f.hasEnv(pid, "PATH=/usr/bin:/bin"));  // not referred to: the daemon's
  // A program app's spec is resolved already: variables do not touch its environment.
  auto plain = f.other();
  plain.vars = {{"FROM_DAEMON", std::nullopt}};
  REQUIRE(f.sup.startApp(plain).ok());
  CHECK(f.hasEnv(f.platform.spawned.back(), "FROM_DAEMON=daemon"));
}

TEST_CASE("the app object carries vars, describe's copy leaves them out, bad ones are refused") {
  AppConfig a;
  a.spec.name = "api";
  a.vars = {{"SET", "value"}, {"UNSET", std::nullopt}};
  json j = appToJson(a);
  CHECK(j["vars"] == json{{"SET", "value"}, {"UNSET", nullptr}});
  CHECK_FALSE(appToJson(a, VarValues::kOmit).contains("vars"));
  auto back = appFromJson(j);
  REQUIRE(back.ok());
  CHECK(back->vars == a.vars);
  for (const json& bad : {json{{"A=B", "x"}}, json{{"1X", "x"}}, json{{"X", 3}},
                          json{{"X", std::string("a\0b", 3)}}, json::array()}) {
    json copy = j;
    copy["vars"] = bad;
    auto r = appFromJson(copy);
    INFO(bad.dump());
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("vars") != std::string::npos);
  }
}

}  // namespace master_specs_test
