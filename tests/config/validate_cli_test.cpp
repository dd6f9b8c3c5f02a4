// `clusterd validate`: exit codes, the apps table, errors on stderr, --env,
// --json and --help, run as the real binary.
#include <catch2/catch.hpp>

#include "tests/config/helpers.h"
#include "tests/support/process.h"

namespace config_validate_cli_test {

using clusterd::config::test::fixture;
using clusterd::test::runClusterd;
using clusterd::test::RunOptions;

namespace {

const std::string kEcosystem = std::string(CLUSTERD_SOURCE_DIR) + "/ecosystem/";

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

}  // namespace

TEST_CASE("validate accepts the demo shop file and prints its apps") {
  auto r = runClusterd({"validate", kEcosystem + "shop.yaml"});
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.err.empty());
  CHECK_THAT(r.out, Catch::Contains("NAME"));
  CHECK_THAT(r.out, Catch::Contains("MEMORY LIMIT"));
  CHECK_THAT(r.out,
             Catch::Matches(
                 "(.|\n)*shop-api +cluster +[0-9]+ \\(max\\) +127\\.0\\.0\\.1:8080 +300M(.|\n)*"));
  CHECK_THAT(r.out, Catch::Matches("(.|\n)*redis +fork +1 +- +1G(.|\n)*"));
  // The job worker runs its consumers alone, with its own health port.
  CHECK_THAT(
      r.out,
      Catch::Matches("(.|\n)*shop-jobs +fork +1 +127\\.0\\.0\\.1:8081 \\(health\\) +300M(.|\n)*"));
  CHECK_THAT(r.out, Catch::Contains("valid (4 apps)"));
}

TEST_CASE("validate accepts the demo shop file with --env production") {
  auto r = runClusterd({"validate", kEcosystem + "shop.yaml", "--env", "production"});
  INFO(r.err);
  CHECK(r.exit_code == 0);
}

TEST_CASE("validate accepts the PM2-style JSON example unchanged") {
  auto r = runClusterd({"validate", kEcosystem + "ecosystem.config.json"});
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.err.empty());
  CHECK_THAT(
      r.out,
      Catch::Matches("(.|\n)*api +cluster +[0-9]+ \\(max\\) +127\\.0\\.0\\.1:3000 +300M(.|\n)*"));
  auto prod =
      runClusterd({"validate", kEcosystem + "ecosystem.config.json", "--env", "production"});
  CHECK(prod.exit_code == 0);
}

TEST_CASE("validate prints every error as file:line:column: field: message and exits 1") {
  auto r = runClusterd({"validate", fixture("errors.yaml")});
  CHECK(r.exit_code == 1);
  CHECK(r.out.empty());
  auto errs = lines(r.err);
  REQUIRE(errs.size() >= 2);
  CHECK(errs[0] ==
        fixture("errors.yaml") +
            ":4:5: apps[0].instance: unknown key `instance` in an app; did you mean `instances`?");
  size_t positioned = 0;
  for (const auto& l : errs) {
    if (l.rfind(fixture("errors.yaml") + ":", 0) == 0 && l.find(": apps[") != std::string::npos)
      ++positioned;
  }
  CHECK(positioned >= 19);
  CHECK(errs.back() == fixture("errors.yaml") + ": 31 errors; nothing was started");
}

TEST_CASE("validate prints warnings but still exits 0 for ignored PM2 keys") {
  clusterd::test::TempDir dir;
  clusterd::test::writeFile(
      dir.file("eco.json"),
      R"({"apps": [{"name": "a", "script": "/bin/true", "namespace": "x"}]})");
  auto r = runClusterd({"validate", dir.file("eco.json")});
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.err,
             Catch::StartsWith("warning: " + dir.file("eco.json") + ":1:48: apps[0].namespace:"));
}

TEST_CASE("validate resolves variables from its environment") {
  auto unset = runClusterd({"validate", fixture("interpolation.yaml")});
  CHECK(unset.exit_code == 1);
  CHECK_THAT(unset.err,
             Catch::Contains(":2:11: apps[0].name: environment variable APP_NAME is not set"));
  RunOptions options;
  options.env = {{"APP_NAME", "svc"}, {"PORT", "9100"}};
  auto set = runClusterd({"validate", fixture("interpolation.yaml")}, options);
  INFO(set.err);
  CHECK(set.exit_code == 0);
  CHECK_THAT(set.out, Catch::Contains("127.0.0.1:9100"));
}

TEST_CASE("validate --env with an unknown environment name fails") {
  auto r = runClusterd({"validate", kEcosystem + "shop.yaml", "--env", "prod"});
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Catch::Contains("--env: no app defines env_prod"));
}

TEST_CASE("validate exits 111 for a file that cannot be read") {
  auto r = runClusterd({"validate", fixture("no-such-file.yaml")});
  CHECK(r.exit_code == 111);
  CHECK_THAT(r.err,
             Catch::Contains(
                 "no-such-file.yaml: cannot read the ecosystem file: No such file or directory"));
}

TEST_CASE("validate without a file is a usage error") {
  auto r = runClusterd({"validate"});
  CHECK(r.exit_code == 100);
  CHECK_THAT(r.err, Catch::Contains("file is required"));
}

TEST_CASE("validate --json reports apps or errors as JSON") {
  auto ok = runClusterd({"validate", "--json", kEcosystem + "shop.yaml"});
  CHECK(ok.exit_code == 0);
  CHECK_THAT(ok.out, Catch::Contains("\"ok\": true"));
  CHECK_THAT(ok.out, Catch::Contains("\"name\": \"shop-api\""));
  CHECK_THAT(ok.out, Catch::Contains("\"health_listen\": \"127.0.0.1:8081\""));
  auto bad = runClusterd({"validate", "--json", fixture("duplicate_keys.yaml")});
  CHECK(bad.exit_code == 1);
  CHECK_THAT(bad.out, Catch::Contains("\"ok\": false"));
  CHECK_THAT(bad.out, Catch::Contains("\"line\": 4"));
  CHECK(bad.err.empty());
}

TEST_CASE("validate --help shows usage with examples and exit codes") {
  auto r = runClusterd({"validate", "--help"});
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("clusterd validate ecosystem/shop.yaml"));
  CHECK_THAT(r.out, Catch::Contains("--env"));
  CHECK_THAT(r.out, Catch::Contains("exits 111"));
}

}  // namespace config_validate_cli_test
