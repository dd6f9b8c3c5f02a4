// Every key of the ecosystem file is read into config::Ecosystem with its
// unit resolved: per-app keys, built-in worker settings, the top-level
// sections, interpolation and --env selection, in YAML and JSON.
#include <catch2/catch.hpp>

#include "tests/config/helpers.h"

namespace config_fields_test {

using namespace clusterd::config;
using namespace clusterd::config::test;
using std::chrono::milliseconds;

namespace {

const std::string kFixtures = CLUSTERD_FIXTURES;

const AppSpec& app(const Ecosystem& eco, const std::string& name) {
  for (const auto& a : eco.apps) {
    if (a.name == name) return a;
  }
  FAIL("no app " << name);
  throw std::logic_error("unreachable");
}

}  // namespace

TEST_CASE("every per-app key of the YAML fixture is read with its unit") {
  auto r = loadFixture("all_fields.yaml");
  INFO(allErrors(r));
  REQUIRE(r.ok());
  const Ecosystem& eco = r.ecosystem;
  CHECK(eco.path == kFixtures + "/all_fields.yaml");
  CHECK(eco.base_dir == kFixtures);
  REQUIRE(eco.apps.size() == 3);
  const AppSpec& a = app(eco, "web");
  CHECK(a.script == kFixtures + "/app/bin/web");
  CHECK(a.args ==
        std::vector<std::string>{"--port", "3000", "two words", "single $quoted", "back slash"});
  CHECK(a.cwd == kFixtures + "/app");
  CHECK(a.interpreter == "/usr/bin/env");
  CHECK(a.exec_mode == ExecMode::kCluster);
  CHECK(a.instances == 3);
  CHECK(a.instances_text == "3");
  REQUIRE(a.listen);
  CHECK(a.listen->kind == ListenAddress::Kind::kTcp);
  CHECK(a.listen->host == "127.0.0.1");
  CHECK(a.listen->port == 3000);
  CHECK(a.listen->text == "127.0.0.1:3000");
  CHECK(a.max_memory_restart == 300ull << 20);
  CHECK(a.min_uptime == milliseconds(2000));
  CHECK(a.max_restarts == 5);
  CHECK(a.restart_delay == milliseconds(250));
  CHECK(a.exp_backoff_restart_delay == milliseconds(100));
  CHECK(a.kill_timeout == milliseconds(60'000));
  CHECK(a.listen_timeout == milliseconds(4500));
  CHECK(a.wait_ready);
  CHECK(a.watchdog == milliseconds(10'000));
  CHECK(a.memory_check_interval == milliseconds(1000));
  CHECK_FALSE(a.autorestart);
  CHECK(a.env == std::map<std::string, std::string>{
                     {"NODE_ENV", "development"}, {"PORT", "3000"}, {"DEBUG", "true"}});
  CHECK(a.out_file == kFixtures + "/logs/web.out");
  CHECK(a.error_file == "/var/log/web.err");
  CHECK(a.merge_logs);
  CHECK(a.log_date_format == "%Y-%m-%d %H:%M:%S %z");
  CHECK(a.log_max_size == 1ull << 30);
  CHECK(a.log_retain == 7);
  CHECK(a.uid == "1000");
  CHECK(a.gid == "1000");
  CHECK_FALSE(a.builtin_worker);
}

TEST_CASE("the built-in worker's queues, health_listen and http settings are read") {
  auto r = loadFixture("all_fields.yaml");
  REQUIRE(r.ok());
  const AppSpec& w = app(r.ecosystem, "shop");
  CHECK(w.builtin_worker);
  CHECK(w.script == "builtin:worker");
  CHECK(w.exec_mode == ExecMode::kCluster);  // implied by listen
  CHECK(w.instances == 2);                   // max on 2 cores
  CHECK(w.instances_text == "max");
  REQUIRE(w.listen);
  CHECK(w.listen->kind == ListenAddress::Kind::kUnix);
  CHECK(w.listen->path == kFixtures + "/run/shop.sock");
  REQUIRE(w.worker.health_listen);
  CHECK(w.worker.health_listen->host == "127.0.0.1");
  CHECK(w.worker.health_listen->port == 9200);
  CHECK(w.worker.queues == std::map<std::string, int>{{"orders", 8}, {"email", 2}});
  CHECK(w.worker.max_body_bytes == 64u << 10);
  CHECK(w.worker.max_header_bytes == 8u << 10);
  CHECK(w.worker.request_timeout == milliseconds(15'000));
  CHECK(w.worker.keepalive_timeout == milliseconds(2000));
  CHECK(w.worker.max_connections == 500);
  CHECK(w.worker.access_log);
  CHECK(w.worker.auth_token_env == "SHOP_TOKEN");
  CHECK(w.worker.max_unsent_bytes == 256u << 10);
  CHECK(w.worker.trusted_proxies == std::vector<std::string>{"10.0.0.0/8", "::1", "192.168.1.7"});
  CHECK(w.worker.job_api.enabled);
  CHECK(w.worker.job_api.queues ==
        std::map<std::string, std::vector<std::string>>{{"email", {"welcome", "reset"}},
                                                        {"reports", {"*"}}});
  CHECK(w.worker.job_api.token_file == "/etc/clusterd/job-api.token");
  CHECK(w.worker.job_api.token_env.empty());
  REQUIRE(w.worker.rate_limits.size() == 2);
  const RateLimitTier& t = w.worker.rate_limits[0];
  CHECK(t.name == "checkout");
  CHECK(t.path_prefix == "/v1/orders");
  CHECK(t.method == "POST");
  CHECK(t.limit == 100);
  CHECK(t.window == milliseconds(1000));
  const RateLimitTier& d = w.worker.rate_limits[1];
  CHECK(d.name == "tier1");
  CHECK(d.path_prefix == "/");
  CHECK(d.method.empty());
  CHECK(d.limit == 1000);
  CHECK(d.window == milliseconds(60'000));
}

TEST_CASE("an app without a name takes its script's file name and the defaults apply") {
  auto r = loadFixture("all_fields.yaml");
  REQUIRE(r.ok());
  const AppSpec& c = app(r.ecosystem, "cleanup");
  CHECK(c.exec_mode == ExecMode::kFork);
  CHECK(c.instances == 1);  // -1 on 2 cores
  CHECK(c.instances_text == "-1");
  CHECK_FALSE(c.listen);
  CHECK(c.max_memory_restart == 0);
  CHECK(c.min_uptime == milliseconds(1000));
  CHECK(c.max_restarts == 16);
  CHECK(c.kill_timeout == milliseconds(1600));
  CHECK(c.listen_timeout == milliseconds(3000));
  CHECK(c.memory_check_interval == milliseconds(500));
  CHECK(c.autorestart);
  CHECK_FALSE(c.wait_ready);
  CHECK(c.log_max_size == 10ull << 20);
  CHECK(c.log_retain == 3);
  CHECK(c.cwd.empty());
  CHECK(c.out_file.empty());
}

TEST_CASE("instances resolve against the core count with max and -1 and at least one") {
  const std::string text =
      "apps:\n  - {name: a, script: /bin/true, instances: max}\n"
      "  - {name: b, script: /bin/true, instances: -1}\n";
  for (int cores : {1, 2, 8}) {
    LoadOptions options;
    options.cores = cores;
    options.environment = std::map<std::string, std::string>{};
    auto r = loadEcosystemText(text, "inline.yaml", options);
    REQUIRE(r.ok());
    CHECK(r.ecosystem.apps[0].instances == cores);
    CHECK(r.ecosystem.apps[1].instances == std::max(1, cores - 1));
  }
}

TEST_CASE("the top-level queue and postgres and mail and handlers sections are read") {
  auto r = loadFixture("all_fields.yaml");
  REQUIRE(r.ok());
  const Ecosystem& eco = r.ecosystem;
  CHECK(eco.queue.redis_url == "redis://127.0.0.1:6390/2");
  CHECK(eco.queue.strict);
  REQUIRE(eco.queue.queues.count("orders") == 1);
  const QueueDefaults& q = eco.queue.queues.at("orders");
  CHECK(q.attempts == 5);
  CHECK(q.backoff == milliseconds(500));
  CHECK(q.backoff_type == "fixed");
  CHECK(q.timeout == milliseconds(30'000));
  CHECK(q.lease == milliseconds(15'000));
  CHECK(q.keep_completed == 10);
  CHECK(q.keep_completed_age == milliseconds(3'600'000));
  CHECK(q.keep_dead == 20);
  CHECK(q.keep_dead_age == milliseconds(172'800'000));
  CHECK(q.rate_limit == 50);
  CHECK(q.rate_window == milliseconds(1000));

  CHECK(eco.postgres.url == "postgresql://shop@127.0.0.1:5433/shop");
  CHECK(eco.postgres.pool_size == 8);
  CHECK(eco.postgres.connect_timeout == milliseconds(3000));
  CHECK(eco.postgres.slow_query == milliseconds(50));

  CHECK(eco.mail.transport == "smtp");
  CHECK(eco.mail.maildir == kFixtures + "/spool");
  CHECK(eco.mail.smtp_url == "smtps://mail.example.com:465");
  CHECK(eco.mail.smtp_tls == SmtpTls::kRequired);
  CHECK(eco.mail.smtp_user == "shop");
  CHECK(eco.mail.smtp_password == "secret");
  CHECK(eco.mail.from == "orders@example.com");
  CHECK(eco.mail.per_domain_per_min ==
        std::map<std::string, uint64_t>{{"example.com", 60}, {"gmail.com", 30}});

  REQUIRE(eco.handlers.size() == 2);
  CHECK(eco.handlers[0].job_name == "report.build");
  CHECK(eco.handlers[0].command == std::vector<std::string>{"python3", "report.py", "--fast"});
  CHECK(eco.handlers[0].timeout == milliseconds(120'000));
  CHECK(eco.handlers[1].job_name == "cleanup");
  CHECK(eco.handlers[1].command == std::vector<std::string>{"./cleanup.sh", "--all"});
  CHECK(eco.handlers[1].timeout == milliseconds(60'000));
}

TEST_CASE("sections left out keep their documented defaults") {
  auto r = loadText("apps: [{name: a, script: /bin/true}]\n");
  REQUIRE(r.ok());
  CHECK(r.ecosystem.queue.redis_url == "redis://127.0.0.1:6379");
  CHECK_FALSE(r.ecosystem.queue.strict);
  CHECK(r.ecosystem.postgres.url.empty());
  CHECK(r.ecosystem.postgres.pool_size == 4);
  CHECK(r.ecosystem.mail.transport == "maildir");
  CHECK(r.ecosystem.mail.from == "shop@localhost");
  CHECK(r.ecosystem.handlers.empty());
}

TEST_CASE("a JSON file with PM2's spellings reads like YAML") {
  auto r = loadFixture("all_fields.json", {}, "staging");
  INFO(allErrors(r));
  REQUIRE(r.ok());
  const AppSpec& a = app(r.ecosystem, "api");
  CHECK(a.exec_mode == ExecMode::kCluster);
  CHECK(a.instances == 4);
  CHECK(a.interpreter == "node");
  CHECK(a.args == std::vector<std::string>{"--port", "3000"});
  REQUIRE(a.listen);
  CHECK(a.listen->host == "::1");
  CHECK(a.listen->port == 3000);
  CHECK(a.max_memory_restart == 512u << 10);
  CHECK(a.kill_timeout == milliseconds(3000));
  CHECK(a.env.at("NODE_ENV") == "staging");
  CHECK(r.ecosystem.postgres.url == "host=127.0.0.1 dbname=shop");
}

TEST_CASE("a bare JSON list of apps is accepted as the apps list") {
  auto r = loadFixture("bare_list.json");
  REQUIRE(r.ok());
  REQUIRE(r.ecosystem.apps.size() == 2);
  CHECK(r.ecosystem.apps[1].instances == 2);
}

TEST_CASE("variables are interpolated in every string with defaults and nesting") {
  auto r = loadFixture("interpolation.yaml",
                       {{"APP_NAME", "svc"}, {"PORT", "9000"}, {"UNSET_OR_EMPTY", ""}});
  INFO(allErrors(r));
  REQUIRE(r.ok());
  const AppSpec& a = r.ecosystem.apps[0];
  CHECK(a.name == "svc");
  CHECK(a.script == "/opt/app/run");
  CHECK(a.instances == 2);
  REQUIRE(a.listen);
  CHECK(a.listen->text == "127.0.0.1:9000");
  CHECK(a.args == std::vector<std::string>{"--home", "/srv/home", "${NOT_A_VAR}", "cost$5"});
  CHECK(a.env.at("GREETING") == "hello world");
  CHECK(a.env.at("EMPTY_DEFAULT") == "fallback");
  CHECK(a.env.count("SECRET") == 0);
}

TEST_CASE("the selected env_NAME is merged over env and only its variables are resolved") {
  auto r =
      loadFixture("interpolation.yaml",
                  {{"APP_NAME", "svc"}, {"PORT", "9000"}, {"PROD_SECRET", "s3"}, {"WHO", "shop"}},
                  "production");
  INFO(allErrors(r));
  REQUIRE(r.ok());
  const AppSpec& a = r.ecosystem.apps[0];
  CHECK(a.env.at("SECRET") == "s3");            // from env_production
  CHECK(a.env.at("GREETING") == "hello shop");  // env kept
  // STAGING_SECRET is unset, but env_staging was not selected: no error.
}

TEST_CASE("the loader reports each variable the file referred to and what it found") {
  auto r = loadText(
      "apps:\n"
      "  - name: a\n"
      "    script: /bin/true\n"
      "    args: ['${SET}', '${UNSET:-${NESTED:-x}}', '${EMPTY:-y}']\n",
      {{"SET", "1"}, {"EMPTY", ""}, {"OTHER", "not referred to"}});
  INFO(allErrors(r));
  REQUIRE(r.ok());
  CHECK(r.variables ==
        Variables{{"SET", "1"}, {"UNSET", std::nullopt}, {"NESTED", std::nullopt}, {"EMPTY", ""}});
}

TEST_CASE("the selected env_NAME overrides keys of env") {
  auto r = loadFixture("all_fields.yaml", {}, "production");
  REQUIRE(r.ok());
  const AppSpec& a = app(r.ecosystem, "web");
  CHECK(a.env.at("NODE_ENV") == "production");
  CHECK(a.env.at("EXTRA") == "yes-please");
  CHECK(a.env.at("PORT") == "3000");
}

TEST_CASE("YAML merge keys and x- anchor sections let apps share settings") {
  auto r = loadFixture("merge_keys.yaml");
  INFO(allErrors(r));
  REQUIRE(r.ok());
  REQUIRE(r.ecosystem.apps.size() == 2);
  CHECK(r.ecosystem.apps[0].script == "/bin/sleep");
  CHECK(r.ecosystem.apps[0].args == std::vector<std::string>{"1000"});
  CHECK(r.ecosystem.apps[0].kill_timeout == milliseconds(5000));
  CHECK(r.ecosystem.apps[1].kill_timeout == milliseconds(9000));  // explicit key wins
}

TEST_CASE("harmless PM2 keys are accepted with a warning") {
  auto r = loadText(
      "apps:\n  - name: a\n    script: /bin/true\n    namespace: shop\n    treekill: true\n"
      "    watch: false\n    autostart: true\n    time: false\n    pmx: false\n"
      "    interpreter: none\n"
      "deploy: {production: {user: node}}\n");
  INFO(allErrors(r));
  REQUIRE(r.ok());
  CHECK(r.ecosystem.apps[0].interpreter.empty());
  REQUIRE(r.warnings.size() == 3);
  CHECK(r.warnings[0].field == "apps[0].namespace");
  CHECK(r.warnings[0].line == 4);
  CHECK(r.warnings[1].field == "apps[0].pmx");
  CHECK(r.warnings[2].field == "deploy");
}

TEST_CASE("listen accepts IPv4 and bracketed IPv6 and localhost and the star and Unix paths") {
  auto listen = [](const std::string& text) {
    auto r = loadText("apps: [{name: a, script: /bin/true, listen: \"" + text + "\"}]\n");
    INFO(allErrors(r));
    REQUIRE(r.ok());
    REQUIRE(r.ecosystem.apps[0].listen);
    return *r.ecosystem.apps[0].listen;
  };
  CHECK(listen("0.0.0.0:80").host == "0.0.0.0");
  CHECK(listen("[::]:8080").host == "::");
  CHECK(listen("localhost:8080").host == "127.0.0.1");
  CHECK(listen("*:8080").host == "0.0.0.0");
  CHECK(listen("*:65535").port == 65535);
  CHECK(listen("/run/app.sock").path == "/run/app.sock");
  CHECK(listen("unix:/run/app.sock").kind == ListenAddress::Kind::kUnix);
  CHECK(listen("./app.sock").path.back() == 'k');
}

TEST_CASE("a missing script path and an unknown user are warnings at their values") {
  auto r = loadText(
      "apps:\n  - name: a\n    script: ./no/such/program\n    uid: no-such-user-here\n"
      "    gid: no-such-group-here\n    instance_var: NODE_APP_INSTANCE\n");
  INFO(allErrors(r));
  REQUIRE(r.ok());
  REQUIRE(r.warnings.size() == 3);
  CHECK(r.warnings[0].field == "apps[0].script");
  CHECK(r.warnings[0].line == 3);
  CHECK(r.warnings[0].column == 13);
  CHECK_THAT(r.warnings[0].message, Catch::Contains("does not exist on this machine"));
  CHECK(r.warnings[1].field == "apps[0].uid");
  CHECK(r.warnings[1].line == 4);
  CHECK(r.warnings[1].column == 10);
  CHECK(r.warnings[2].field == "apps[0].gid");
  CHECK(r.warnings[2].line == 5);
}

TEST_CASE("numbers and booleans may come from variables") {
  auto r = loadText(
      "apps:\n  - name: a\n    script: /bin/true\n    instances: ${N:-3}\n"
      "    autorestart: ${RESTART}\n    max_memory_restart: ${MEM:-1G}\n    kill_timeout: ${KT}\n",
      {{"RESTART", "false"}, {"KT", "2s"}});
  INFO(allErrors(r));
  REQUIRE(r.ok());
  const AppSpec& a = r.ecosystem.apps[0];
  CHECK(a.instances == 3);
  CHECK_FALSE(a.autorestart);
  CHECK(a.max_memory_restart == 1ull << 30);
  CHECK(a.kill_timeout == milliseconds(2000));
}

TEST_CASE("a script name without a slash stays a command for the PATH lookup") {
  auto r = loadText("apps:\n  - name: r\n    script: redis-server\n");
  REQUIRE(r.ok());
  CHECK(r.ecosystem.apps[0].script == "redis-server");
  CHECK(r.warnings.empty());
}

TEST_CASE("a handler's mode, kill grace and line limit are read, and bad values are reported") {
  auto r = loadText(
      "apps: [{name: a, script: /bin/true}]\n"
      "handlers:\n"
      "  resize: {command: ./resize, mode: persistent, kill_grace: 2s, max_line: 4M, timeout: 30s}\n"
      "  once: {command: ./once}\n");
  REQUIRE(r.ok());
  REQUIRE(r.ecosystem.handlers.size() == 2);
  const HandlerSpec& p = r.ecosystem.handlers[0];
  CHECK(p.mode == HandlerMode::kPersistent);
  CHECK(p.kill_grace == milliseconds(2000));
  CHECK(p.max_line == 4u << 20);
  CHECK(p.timeout == milliseconds(30'000));
  const HandlerSpec& o = r.ecosystem.handlers[1];
  CHECK(o.mode == HandlerMode::kPerJob);
  CHECK(o.kill_grace == milliseconds(5000));
  CHECK(o.max_line == 1u << 20);

  auto bad = loadText(
      "apps: [{name: a, script: /bin/true}]\n"
      "handlers:\n"
      "  a: {command: ./a, mode: forever}\n"
      "  b: {command: ./b, kill_grace: 2h}\n"
      "  c: {command: ./c, mode: persistent, max_line: 1G}\n"
      "  d: {command: ./d, max_line: 1M}\n");
  REQUIRE_FALSE(bad.ok());
  CHECK(errorFor(bad, "handlers.a.mode").message.find("persistent") != std::string::npos);
  CHECK(errorFor(bad, "handlers.b.kill_grace").message.find("at most 1h") != std::string::npos);
  CHECK(errorFor(bad, "handlers.c.max_line").message.find("at most 64M") != std::string::npos);
  CHECK(errorFor(bad, "handlers.d.max_line").message.find("mode: persistent") != std::string::npos);
}

}  // namespace config_fields_test
