// Tests of jobs/migrations.h and the `clusterd db` verbs against real postgres.
#include <catch2/catch.hpp>

#include "db/pool.h"
#include "jobs/migrations.h"
#include "tests/db/loop.h"
#include "tests/support/servers.h"

namespace jobs_migrations_test {

using namespace clusterd;
using namespace std::chrono_literals;
using clusterd::test::PostgresServer;
using clusterd::test::TestLoop;

namespace {
db::PoolOptions poolFor(const PostgresServer& pg) {
  db::PoolOptions o;
  o.conninfo = pg.url();
  o.size = 1;
  return o;
}
}  // namespace

TEST_CASE("migrations are embedded in ascending version order", "[jobs][migrations]") {
  const auto& all = jobs::migrations();
  REQUIRE_FALSE(all.empty());
  CHECK(all.front().version == 1);
  for (size_t i = 1; i < all.size(); ++i) CHECK(all[i - 1].version < all[i].version);
  CHECK(all.front().sql.find("CREATE TABLE job_ledger") != std::string_view::npos);
}

TEST_CASE("two concurrent migrations apply the schema once", "[jobs][migrations][postgres]") {
  PostgresServer pg;
  TestLoop loop;
  db::Pool a(loop.get(), poolFor(pg)), b(loop.get(), poolFor(pg));
  std::optional<Result<std::vector<int>>> ra, rb;
  jobs::migrate(a, [&](Result<std::vector<int>> r) { ra = std::move(r); });
  jobs::migrate(b, [&](Result<std::vector<int>> r) { rb = std::move(r); });
  REQUIRE(loop.runUntil([&] { return ra && rb; }));
  REQUIRE(ra->ok());
  REQUIRE(rb->ok());
  // Exactly one of them applied everything; the other found nothing to do.
  CHECK(ra->value().size() + rb->value().size() == jobs::migrations().size());
  CHECK((ra->value().empty() || rb->value().empty()));
  CHECK(pg.scalar("SELECT count(*) FROM schema_migrations") ==
        std::to_string(jobs::migrations().size()));
  CHECK(pg.scalar("SELECT to_regclass('email_outbox') IS NOT NULL") == "t");
}

TEST_CASE("the stock check refuses negative stock", "[jobs][migrations][postgres]") {
  PostgresServer pg;
  TestLoop loop;
  db::Pool pool(loop.get(), poolFor(pg));
  std::optional<Result<std::vector<int>>> r;
  jobs::migrate(pool, [&](Result<std::vector<int>> x) { r = std::move(x); });
  REQUIRE(loop.runUntil([&] { return r.has_value(); }));
  REQUIRE(r->ok());
  pg.query("INSERT INTO products (name) VALUES ('p')");
  CHECK_THROWS(pg.query("INSERT INTO variants (product_id, sku, price_cents, stock) "
                        "VALUES (1, 'X', 1, -1)"));
}

TEST_CASE("db migrate, migrate --status and seed work from the command line",
          "[jobs][migrations][postgres][cli]") {
  PostgresServer pg;
  auto before = test::runClusterd({"db", "migrate", "--status", "--postgres", pg.url()});
  REQUIRE(before.exit_code == 0);
  CHECK(before.out.find("pending") != std::string::npos);

  auto applied = test::runClusterd({"--postgres", pg.url(), "db", "migrate"});
  REQUIRE(applied.exit_code == 0);
  CHECK(applied.out.find("applied 0001_shop_schema") != std::string::npos);
  auto again = test::runClusterd({"db", "migrate"}, {.env = {{"CLUSTERD_POSTGRES_URL", pg.url()}}});
  REQUIRE(again.exit_code == 0);
  CHECK(again.out.find("schema is current") != std::string::npos);

  auto status = test::runClusterd({"db", "migrate", "--status", "--json", "--postgres", pg.url()});
  REQUIRE(status.exit_code == 0);
  CHECK(status.out.find("\"applied\": true") != std::string::npos);

  auto seeded = test::runClusterd(
      {"db", "seed", "--products", "5000", "--stock", "7", "--postgres", pg.url()});
  REQUIRE(seeded.exit_code == 0);
  CHECK(pg.scalar("SELECT count(*) FROM variants WHERE stock = 7") == "5000");
  CHECK(pg.scalar("SELECT sku FROM variants ORDER BY id LIMIT 1") == "SKU-000001");
  // A second seed resets stock without duplicating products.
  REQUIRE(test::runClusterd({"db", "seed", "--products", "10", "--stock", "3", "--postgres",
                             pg.url()})
              .exit_code == 0);
  CHECK(pg.scalar("SELECT count(*) FROM products") == "5000");
  CHECK(pg.scalar("SELECT stock FROM variants WHERE sku = 'SKU-000010'") == "3");
}

TEST_CASE("db migrate without any PostgreSQL URL is a usage error naming the options",
          "[jobs][migrations][cli]") {
  auto r = test::runClusterd({"db", "migrate"}, {.env = {{"CLUSTERD_POSTGRES_URL", ""}}});
  CHECK(r.exit_code == 100);
  CHECK(r.err.find("--postgres") != std::string::npos);
}

TEST_CASE("db migrate against an unreachable server exits with a system error",
          "[jobs][migrations][cli]") {
  int port = test::freeTcpPort();
  auto r = test::runClusterd(
      {"db", "migrate", "--postgres", "postgresql://postgres@127.0.0.1:" + std::to_string(port) + "/x"});
  CHECK(r.exit_code == 111);
  CHECK(r.err.find("127.0.0.1") != std::string::npos);
}

}  // namespace jobs_migrations_test
