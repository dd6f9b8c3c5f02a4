// Where a built-in worker can be reached: a queue-only app (queues, no
// `listen`) in fork mode, `health_listen` read as a base address whose
// instances take base + N, and every way it can be wrong (a Unix path, a
// range past 65535, ports another app listens on), each reported at its key
// with the app named; a job API with nowhere to be served is a warning.
#include <catch2/catch.hpp>

#include "tests/config/helpers.h"

namespace config_worker_addresses_test {

using namespace clusterd::config;
using namespace clusterd::config::test;

namespace {

void checkError(const LoadResult& r, const std::string& field, int line, int column,
                const std::string& message_part) {
  Diagnostic d = errorFor(r, field);
  INFO(d.toString());
  CHECK(d.file == "inline.yaml");
  CHECK(d.line == line);
  CHECK(d.column == column);
  CHECK_THAT(d.message, Catch::Contains(message_part));
}

}  // namespace

TEST_CASE("a queue-only worker with health_listen is valid in fork mode") {
  auto r = loadText(
      "apps:\n"
      "  - name: jobs\n"
      "    script: builtin:worker\n"
      "    instances: 3\n"
      "    health_listen: 127.0.0.1:9100\n"
      "    queues: {orders: 8}\n");
  INFO(allErrors(r));
  REQUIRE(r.ok());
  const AppSpec& a = r.ecosystem.apps[0];
  CHECK(a.exec_mode == ExecMode::kFork);
  CHECK_FALSE(a.listen);
  REQUIRE(a.worker.health_listen);
  CHECK(a.worker.health_listen->kind == ListenAddress::Kind::kTcp);
  CHECK(a.worker.health_listen->host == "127.0.0.1");
  CHECK(a.worker.health_listen->port == 9100);
  CHECK(a.worker.health_listen->text == "127.0.0.1:9100");
}

TEST_CASE("health_listen beside listen and ranges that only touch are accepted") {
  auto r = loadText(
      "apps:\n"
      "  - {name: api, script: builtin:worker, instances: 2, listen: \"127.0.0.1:8080\",\n"
      "     health_listen: \"127.0.0.1:8081\"}\n"
      "  - {name: jobs, script: builtin:worker, instances: 4, queues: {q: 1},\n"
      "     health_listen: \"localhost:8083\"}\n"
      "  - {name: other, script: builtin:worker, listen: \"127.0.0.1:8087\"}\n"
      "  - {name: v6, script: builtin:worker, queues: {q: 1}, health_listen: \"[::1]:8081\"}\n");
  INFO(allErrors(r));
  CHECK(r.ok());
}

TEST_CASE("health_listen must be host:port and is a key of the built-in worker only") {
  auto r = loadText(
      "apps:\n"
      "  - {name: a, script: builtin:worker, queues: {q: 1}, health_listen: /run/a.sock}\n"
      "  - {name: b, script: builtin:worker, queues: {q: 1}, health_listen: \"9100\"}\n"
      "  - {name: c, script: builtin:worker, queues: {q: 1}, health_listen: \"127.0.0.1:0\"}\n"
      "  - {name: d, script: /bin/true, health_listen: \"127.0.0.1:9300\"}\n");
  checkError(r, "apps[0].health_listen", 2, 70, "got the Unix socket path `/run/a.sock`");
  checkError(r, "apps[1].health_listen", 3, 70, "expected `host:port`");
  checkError(r, "apps[2].health_listen", 4, 70, "a port from 1 to 65535");
  checkError(r, "apps[3].health_listen", 5, 34, "it needs `script: builtin:worker`");
  CHECK(r.diagnostics.size() == 4);
}

TEST_CASE("the instances' health ports must stay within 65535") {
  auto r = loadText(
      "apps:\n"
      "  - name: jobs\n"
      "    script: builtin:worker\n"
      "    instances: max\n"
      "    queues: {q: 1}\n"
      "    health_listen: 127.0.0.1:65533\n");
  // max = 4 cores in loadText: ports 65533 to 65536.
  checkError(r, "apps[0].health_listen", 6, 20,
             "instance N of `jobs` listens on port 65533 + N, so its 4 instances need ports "
             "65533-65536, past 65535");
  CHECK(r.diagnostics.size() == 1);
}

TEST_CASE(
    "health ports may not take another app's listen port, its own, or another's health ports") {
  auto r = loadText(
      "apps:\n"
      "  - {name: web, script: /bin/true, listen: \"127.0.0.1:9001\"}\n"
      "  - {name: jobs, script: builtin:worker, instances: 2, queues: {q: 1},\n"
      "     health_listen: \"127.0.0.1:9000\"}\n"
      "  - {name: self, script: builtin:worker, instances: 2, listen: \"0.0.0.0:9201\",\n"
      "     health_listen: \"127.0.0.1:9200\"}\n"
      "  - {name: wide, script: builtin:worker, instances: 3, queues: {q: 1},\n"
      "     health_listen: \"0.0.0.0:9500\"}\n"
      "  - {name: narrow, script: builtin:worker, queues: {q: 1},\n"
      "     health_listen: \"127.0.0.1:9502\"}\n");
  checkError(r, "apps[1].health_listen", 4, 21,
             "the health ports of `jobs` (9000-9001 on 127.0.0.1, one per instance) take "
             "`127.0.0.1:9001`, the `listen` of app `web` (apps[0].listen at line 2)");
  checkError(r, "apps[2].health_listen", 6, 21, "the `listen` of app `self`");
  checkError(r, "apps[4].health_listen", 10, 21,
             "overlap those of app `wide` (9500-9502 on 0.0.0.0; apps[3].health_listen at line 8)");
  CHECK(r.diagnostics.size() == 3);
}

TEST_CASE("a job API on an app without listen is a warning: under the master it is off") {
  auto r = loadText(
      "apps:\n"
      "  - name: jobs\n"
      "    script: builtin:worker\n"
      "    queues: {email: 2}\n"
      "    health_listen: 127.0.0.1:9100\n"
      "    http:\n"
      "      job_api: {queues: {email: [welcome]}}\n");
  INFO(allErrors(r));
  CHECK(r.ok());
  REQUIRE(r.warnings.size() == 1);
  const Diagnostic& w = r.warnings[0];
  CHECK(w.field == "apps[0].http.job_api");
  CHECK(w.line == 6);
  CHECK(w.column == 5);
  CHECK_THAT(w.message, Catch::Contains("app `jobs` has no `listen`, and the job API is served "
                                        "only there"));
}

}  // namespace config_worker_addresses_test
