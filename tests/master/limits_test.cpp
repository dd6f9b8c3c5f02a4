// The daemon's limits on what control clients may ask for: apps and worker
// slots in the supervisor (fake processes), and the limits read from the
// daemon's environment.
#include <catch2/catch.hpp>

#include <cstdlib>

#include "master/limits.h"
#include "master/supervisor.h"
#include "tests/master/fake_platform.h"
#include "tests/support/process.h"

namespace master_limits_test {

using namespace clusterd::master;
using clusterd::master::test::FakePlatform;

namespace {

struct Fixture {
  clusterd::test::TempDir dir;
  FakePlatform platform;
  Supervisor sup{platform, [&] {
                   auto o = clusterd::master::test::fakeSupervisorOptions(dir.path());
                   o.max_apps = 2;
                   o.max_workers = 4;
                   return o;
                 }()};

  AppConfig app(const std::string& name, int instances) {
    AppConfig a;
    a.spec.name = name;
    a.spec.script = "/bin/sleep";
    a.spec.args = {"1000"};
    a.spec.instances = instances;
    a.base_dir = dir.path();
    return a;
  }
  size_t spawned() const { return platform.spawned.size(); }
};

}  // namespace

TEST_CASE("an app with more instances than max_workers is refused before any worker starts") {
  Fixture f;
  auto r = f.sup.startApp(f.app("huge", 1'000'000'000));
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().message, Catch::Contains("app huge: 1000000000 instances") &&
                                    Catch::Contains("limit of 4 (CLUSTERD_MAX_WORKERS)"));
  CHECK(f.spawned() == 0);
  CHECK(f.sup.apps().empty());
}

TEST_CASE("max_workers counts the workers of every app, and scale keeps to it") {
  Fixture f;
  REQUIRE(f.sup.startApp(f.app("a", 3)).ok());
  CHECK_FALSE(f.sup.startApp(f.app("b", 2)).ok());
  REQUIRE(f.sup.startApp(f.app("b", 1)).ok());
  auto r = f.sup.scale("b", "+2147483647");
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().message, Catch::Contains("CLUSTERD_MAX_WORKERS"));
  CHECK(f.sup.apps().at("b")->slots.size() == 1);
  CHECK(*f.sup.scale("a", "-1") == 2);
}

TEST_CASE("more apps than max_apps are refused naming the limit") {
  Fixture f;
  REQUIRE(f.sup.startApp(f.app("a", 1)).ok());
  REQUIRE(f.sup.startApp(f.app("b", 1)).ok());
  auto r = f.sup.startApp(f.app("c", 1));
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().message, Catch::Contains("CLUSTERD_MAX_APPS"));
}

TEST_CASE("the daemon's limits come from its environment and a bad value names the variable") {
  ::setenv("CLUSTERD_CONTROL_MAX_CLIENTS", "8", 1);
  ::setenv("CLUSTERD_CONTROL_IDLE_TIMEOUT", "2s", 1);
  ::setenv("CLUSTERD_DAEMON_LOG_MAX_SIZE", "1M", 1);
  auto l = limitsFromEnvironment();
  REQUIRE(l.ok());
  CHECK(l->control.max_clients == 8);
  CHECK(l->control.idle_timeout == std::chrono::seconds(2));
  CHECK(l->log_max_size == 1 << 20);
  CHECK(l->max_workers == DaemonLimits{}.max_workers);
  ::setenv("CLUSTERD_MAX_WORKERS", "lots", 1);
  auto bad = limitsFromEnvironment();
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.error().message, Catch::Contains("CLUSTERD_MAX_WORKERS=lots is not valid"));
}

}  // namespace master_limits_test
