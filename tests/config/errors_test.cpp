// Every kind of error in an ecosystem file is reported with its file, line,
// column, field path and what is expected, and all of a file's errors come
// out in one load.
#include <catch2/catch.hpp>

#include "tests/config/helpers.h"

namespace config_errors_test {

using namespace clusterd::config;
using namespace clusterd::config::test;

namespace {

struct Expected {
  const char* field;
  int line;
  int column;
  const char* message_part;
};

void checkError(const LoadResult& r, const Expected& e) {
  Diagnostic d = errorFor(r, e.field);
  INFO(d.toString());
  CHECK(d.line == e.line);
  CHECK(d.column == e.column);
  CHECK_THAT(d.message, Catch::Contains(e.message_part));
}

}  // namespace

TEST_CASE("every error in a file is reported with its line and column and field and expectation") {
  auto r = loadFixture("errors.yaml");
  const Expected expected[] = {
      {"apps[0].instance", 4, 5, "unknown key `instance` in an app; did you mean `instances`?"},
      {"apps[0].instances", 5, 16, "0 instances is not allowed"},
      {"apps[0].max_memory_restart", 6, 25,
       "expected a size: bytes (1048576) or a number with K, M or G"},
      {"apps[0].listen", 8, 13, "`listen` needs exec_mode: cluster"},
      {"apps[0].cron_restart", 9, 5, "PM2's `cron_restart` is not supported by clusterd"},
      {"apps[0].watch", 10, 12, "PM2's `watch: true` is not supported"},
      {"apps[0].min_uptime", 11, 17, "got `soon`"},
      {"apps[0].max_restarts", 12, 19, "expected an integer from 0 to 1000000, got `-2`"},
      {"apps[0].autorestart", 13, 18, "expected true or false, got `maybe`"},
      {"apps[0].env", 14, 10, "expected a mapping, got a list"},
      {"apps[1].name", 15, 11, "duplicate app name `web` (also apps[0] at line 2)"},
      {"apps[1].listen", 17, 13, "`127.0.0.1:8080` is already taken by app `web`"},
      {"apps[1].queues.orders", 19, 15, "expected an integer from 1 to 10000, got `0`"},
      {"apps[1].http.max_bdy", 21, 7, "did you mean `max_body`?"},
      {"apps[1].args", 22, 5, "`args` does not apply to script: builtin:worker"},
      {"apps[2].instances", 25, 16, "got `-2`"},
      {"apps[2].exec_mod", 26, 5, "did you mean `exec_mode`?"},
      {"apps[2].listen", 27, 13, "`0.0.0.0:8080` is already taken by app `web`"},
      {"apps[3].name", 28, 11, "`bad name!` is not a valid app name"},
      {"apps[3].listen", 30, 13, "expected `host:port` (e.g. 127.0.0.1:8080"},
      {"queue.redis_url", 32, 14, "got `http://x`"},
      {"queue.queues.orders.attempts", 34, 24, "expected an integer from 1 to 1000, got `0`"},
      {"queue.queues.orders.backof", 34, 27, "did you mean `backoff`?"},
      {"queue.queues.orders.rate_window", 34, 13, "`rate_limit` needs `rate_window`"},
      {"postgres.pool_size", 35, 23, "expected an integer from 1 to 1000, got `0`"},
      {"postgres.slow_query", 35, 38, "got `1.5x`"},
      {"mail.smtp_url", 36, 7, "`transport: smtp` needs `smtp_url`"},
      {"mail.from", 36, 31, "got `nobody`"},
      {"handlers.report.build.command", 38, 17, "a handler needs `command`"},
      {"handlers.empty", 39, 10, "the command is empty"},
      {"bogus", 40, 1, "unknown key `bogus` in the top level"},
  };
  for (const auto& e : expected) checkError(r, e);
  CHECK(r.diagnostics.size() == std::size(expected));
  for (const auto& d : r.diagnostics) CHECK(d.file == fixture("errors.yaml"));
  // In file order.
  for (size_t i = 1; i < r.diagnostics.size(); ++i) {
    CHECK(std::make_pair(r.diagnostics[i - 1].line, r.diagnostics[i - 1].column) <=
          std::make_pair(r.diagnostics[i].line, r.diagnostics[i].column));
  }
}

TEST_CASE("a diagnostic prints as file:line:column: field: message") {
  auto r = loadFixture("errors.yaml");
  CHECK(errorFor(r, "apps[0].instance").toString() ==
        fixture("errors.yaml") +
            ":4:5: apps[0].instance: unknown key `instance` in an app; did you mean `instances`?");
}

TEST_CASE("an unset variable is an error at the position of its reference") {
  auto r = loadFixture("unset_variable.yaml");
  checkError(r, {"apps[0].env.A", 5, 36, "environment variable MISSING_ONE is not set"});
  checkError(r, {"apps[0].cwd", 6, 10, "environment variable MISSING_TWO is not set"});
  checkError(r, {"apps[0].args[1]", 7, 20, "write ${NAME} or ${NAME:-default}"});
  checkError(r, {"apps[0].args[2]", 7, 37, "`${unclosed` is not closed by `}`"});
  CHECK(r.diagnostics.size() == 4);
}

TEST_CASE("a variable in the selected env_NAME must be set while others are not resolved") {
  auto ok = loadFixture("interpolation.yaml", {{"APP_NAME", "a"}, {"PORT", "1"}});
  CHECK(ok.ok());
  auto r = loadFixture("interpolation.yaml", {{"APP_NAME", "a"}, {"PORT", "1"}}, "production");
  checkError(r, {"apps[0].env_production.SECRET", 11, 15, "PROD_SECRET is not set"});
}

TEST_CASE("selecting an environment that no app defines is an error") {
  auto r = loadFixture("all_fields.yaml", {}, "prodution");
  Diagnostic d = errorFor(r, "--env");
  CHECK(d.line == 0);
  CHECK_THAT(d.message, Catch::Contains("no app defines env_prodution"));
}

TEST_CASE("a duplicate key in a mapping is an error at the second key") {
  auto r = loadFixture("duplicate_keys.yaml");
  checkError(r, {"apps[0].name", 4, 5, "duplicate key `name`"});
}

TEST_CASE("PM2 keys clusterd does not implement are rejected with the reason") {
  auto r = loadFixture("pm2_keys.yaml");
  checkError(r, {"apps[0].node_args", 10, 5, "PM2's `node_args` is not supported by clusterd"});
  checkError(r, {"apps[0].log_file", 11, 5, "use `out_file` and `error_file`"});
  CHECK(r.diagnostics.size() == 2);
  CHECK(r.warnings.size() == 3);
}

TEST_CASE("a YAML syntax error is reported with its position") {
  auto r = loadFixture("syntax_error.yaml");
  REQUIRE(r.diagnostics.size() == 1);
  CHECK(r.diagnostics[0].line == 4);
  CHECK_THAT(r.diagnostics[0].message, Catch::StartsWith("not valid YAML or JSON"));
}

TEST_CASE("an empty file or a missing or empty apps list is an error") {
  auto empty = loadFixture("empty.yaml");
  REQUIRE(empty.diagnostics.size() == 1);
  CHECK_THAT(empty.diagnostics[0].message, Catch::Contains("the file is empty"));
  CHECK_FALSE(empty.unreadable);
  checkError(loadText("queue: {strict: true}\n"),
             {"apps", 1, 1, "missing; the file needs an `apps:` list"});
  checkError(loadText("apps: []\n"), {"apps", 1, 7, "the list is empty"});
  checkError(loadText("apps: {name: a}\n"), {"apps", 1, 7, "expected a list of apps"});
  checkError(loadText("- 1\n- 2\n"), {"apps[0]", 1, 3, "expected a mapping, got `1`"});
}

TEST_CASE("a file that cannot be read is an I/O failure and not a content error") {
  auto missing = loadEcosystem(fixture("does-not-exist.yaml"));
  CHECK(missing.unreadable);
  REQUIRE(missing.diagnostics.size() == 1);
  CHECK_THAT(missing.diagnostics[0].message, Catch::Contains("No such file or directory"));
  auto dir = loadEcosystem(fixture(""));
  CHECK(dir.unreadable);
  CHECK_THAT(dir.diagnostics[0].message, Catch::Contains("directory"));
}

TEST_CASE("missing script and builtin:worker without name or work are errors") {
  auto r = loadText(
      "apps:\n  - name: a\n  - script: builtin:worker\n    queues: {q: 1}\n"
      "  - name: idle\n    script: builtin:worker\n");
  checkError(r, {"apps[0].script", 2, 5, "missing; every app needs a `script`"});
  checkError(r, {"apps[1].name", 3, 5, "a builtin:worker app needs a `name`"});
  checkError(r, {"apps[2]", 5, 5, "would do nothing"});
}

TEST_CASE("built-in worker keys on another app are rejected") {
  auto r = loadText(
      "apps:\n  - name: a\n    script: /bin/true\n    queues: {orders: 1}\n    http: {access_log: "
      "true}\n");
  checkError(r, {"apps[0].queues", 4, 5, "it needs `script: builtin:worker`"});
  checkError(r, {"apps[0].http", 5, 5, "it needs `script: builtin:worker`"});
}

TEST_CASE("wrong types are named in the message: a list or a mapping or null") {
  auto r = loadText(
      "apps:\n  - name: [a, b]\n    script: /bin/true\n    max_restarts: {x: 1}\n    cwd:\n"
      "    kill_timeout: ~\n");
  checkError(r, {"apps[0].name", 2, 11, "expected a string, got a list"});
  checkError(r, {"apps[0].max_restarts", 4, 19, "got a mapping"});
  checkError(r, {"apps[0].cwd", 5, 5, "expected a string, got nothing (null)"});
  checkError(r, {"apps[0].kill_timeout", 6, 19, "got nothing (null)"});
}

TEST_CASE(
    "impossible values are rejected: ports and socket paths and counts and intervals and tiers") {
  std::string long_path(120, 'p');
  auto r = loadText(
      "apps:\n"
      "  - {name: a, script: /bin/true, listen: \"127.0.0.1:0\"}\n"
      "  - {name: b, script: /bin/true, listen: \"127.0.0.1:70000\"}\n"
      "  - {name: c, script: /bin/true, listen: \"/" +
      long_path +
      "\"}\n"
      "  - {name: d, script: /bin/true, listen: \"example.com:80\"}\n"
      "  - {name: e, script: /bin/true, listen: \"::1:80\"}\n"
      "  - {name: f, script: /bin/true, instances: 5000}\n"
      "  - {name: g, script: /bin/true, watchdog: 50ms}\n"
      "  - {name: h, script: builtin:worker, listen: \"127.0.0.1:9\", http: {rate_limits: "
      "[{path_prefix: x}]}}\n"
      "  - {name: i, script: /bin/true, exec_mode: swarm}\n"
      "  - {name: j, script: builtin:worker, queues: {\"bad queue\": 1}}\n");
  checkError(r, {"apps[0].listen", 2, 42, "a port from 1 to 65535"});
  checkError(r, {"apps[1].listen", 3, 42, "a port from 1 to 65535"});
  checkError(r, {"apps[2].listen", 4, 42, "the limit is 107"});
  checkError(r, {"apps[3].listen", 5, 42, "`example.com` is not an IP address"});
  checkError(r, {"apps[4].listen", 6, 42, "write an IPv6 address in brackets"});
  checkError(r, {"apps[5].instances", 7, 45, "got `5000`"});
  checkError(r, {"apps[6].watchdog", 8, 44, "at least 100ms"});
  checkError(r, {"apps[7].http.rate_limits[0].path_prefix", 9, 97, "starting with `/`"});
  checkError(r, {"apps[7].http.rate_limits[0].limit", 9, 83, "missing"});
  checkError(r, {"apps[7].http.rate_limits[0].window", 9, 83, "missing"});
  checkError(r, {"apps[8].exec_mode", 10, 45,
                 "expected `fork`, `cluster`, `fork_mode` or `cluster_mode`, got `swarm`"});
  checkError(r, {"apps[9].queues.bad queue", 11, 48, "not a valid queue name"});
  CHECK(r.diagnostics.size() == 12);
}

TEST_CASE(
    "two apps on the same port or wildcard or socket path collide but different ports do not") {
  auto r = loadText(
      "apps:\n"
      "  - {name: a, script: /bin/true, listen: \"127.0.0.1:80\"}\n"
      "  - {name: b, script: /bin/true, listen: \"127.0.0.2:80\"}\n"
      "  - {name: c, script: /bin/true, listen: \"*:80\"}\n"
      "  - {name: d, script: /bin/true, listen: /tmp/x.sock}\n"
      "  - {name: e, script: /bin/true, listen: \"unix:/tmp/../tmp/x.sock\"}\n"
      "  - {name: f, script: /bin/true, listen: \"[::1]:80\"}\n"
      "  - {name: g, script: /bin/true, listen: \"127.0.0.1:81\"}\n");
  CHECK(r.diagnostics.size() == 2);
  checkError(r, {"apps[2].listen", 4, 42, "already taken by app `a`"});
  checkError(r, {"apps[4].listen", 6, 42, "already taken by app `d`"});
}

TEST_CASE("the worker's job API and trusted proxies are checked: addresses, queues, and a token off loopback") {
  auto r = loadText(
      "apps:\n"
      "  - name: api\n"
      "    script: builtin:worker\n"
      "    listen: 0.0.0.0:8080\n"
      "    http:\n"
      "      trusted_proxies: [10.0.0.0/33, proxy.local]\n"
      "      job_api:\n"
      "        queues:\n"
      "          email: []\n"
      "  - name: local\n"
      "    script: builtin:worker\n"
      "    listen: 127.0.0.1:8081\n"
      "    http:\n"
      "      job_api: {token_env: JOB_TOKEN}\n");
  CHECK_THAT(errorFor(r, "apps[0].http.trusted_proxies[0]").message,
             Catch::Contains("expected an IP address or a CIDR block"));
  CHECK_THAT(errorFor(r, "apps[0].http.trusted_proxies[1]").message, Catch::Contains("`proxy.local`"));
  CHECK_THAT(errorFor(r, "apps[0].http.job_api.queues.email").message,
             Catch::Contains("list of the job names"));
  CHECK_THAT(errorFor(r, "apps[0].http.job_api").message,
             Catch::Contains("needs a bearer token when the worker listens on 0.0.0.0:8080"));
  CHECK_THAT(errorFor(r, "apps[1].http.job_api.queues").message, Catch::Contains("missing"));
  CHECK(r.diagnostics.size() == 5);
}

}  // namespace config_errors_test
