// Verbs of the db module: `clusterd db migrate [--status]` and
// `clusterd db seed --products N --stock S`. Each runs one short-lived libuv
// loop with a one-connection db::Pool.
//
// The PostgreSQL URL comes from --postgres, else $CLUSTERD_POSTGRES_URL (both
// already in CliContext), else the `postgres.url` of --ecosystem FILE.
#include <uv.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <iostream>
#include <optional>

#include "cli/commands.h"
#include "config/load.h"
#include "db/pool.h"
#include "jobs/migrations.h"

namespace clusterd::cli {
namespace {

struct DbOptions {
  std::string ecosystem;
  std::string env;
  bool status = false;
  int products = 100;
  int64_t stock = 100;
};

// Resolves the URL and the pool settings; on failure prints why and sets the exit code.
std::optional<db::PoolOptions> poolOptions(CliContext& ctx, const DbOptions& o) {
  db::PoolOptions p;
  p.size = 1;
  // A command line fails within seconds when the server is down.
  p.connect_timeout = std::chrono::seconds(3);
  p.acquire_timeout = std::chrono::seconds(3);
  p.slow_query = std::chrono::milliseconds(0);
  p.conninfo = ctx.postgres_url;
  if (p.conninfo.empty() && !o.ecosystem.empty()) {
    auto loaded = config::loadEcosystem(o.ecosystem, {.env_name = o.env});
    if (!loaded.ok()) {
      for (auto& d : loaded.diagnostics) std::cerr << d.toString() << "\n";
      ctx.exit_code = kExitFailed;
      return std::nullopt;
    }
    p.conninfo = loaded.ecosystem.postgres.url;
    p.connect_timeout = loaded.ecosystem.postgres.connect_timeout;
  }
  if (p.conninfo.empty()) {
    std::cerr << "clusterd db: no PostgreSQL URL; pass --postgres URL, set CLUSTERD_POSTGRES_URL, "
                 "or give --ecosystem FILE with a postgres.url\n";
    ctx.exit_code = kExitUsage;
    return std::nullopt;
  }
  return p;
}

// Runs `start` on a fresh loop and pool until it calls finish().
void runWithPool(const db::PoolOptions& options,
                 const std::function<void(db::Pool&, std::function<void()> finish)>& start) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    db::Pool pool(&loop, options);
    bool finished = false;
    start(pool, [&] { finished = true; });
    while (!finished) uv_run(&loop, UV_RUN_ONCE);
  }
  while (uv_loop_close(&loop) == UV_EBUSY) uv_run(&loop, UV_RUN_NOWAIT);
}

void runMigrate(CliContext& ctx, const DbOptions& o) {
  auto options = poolOptions(ctx, o);
  if (!options) return;
  if (o.status) {
    runWithPool(*options, [&](db::Pool& pool, std::function<void()> finish) {
      jobs::migrationStatus(pool, [&, finish](Result<std::vector<jobs::MigrationState>> r) {
        finish();
        if (!r) {
          std::cerr << "clusterd db migrate --status: " << r.error().message << "\n";
          ctx.exit_code = kExitSystem;
          return;
        }
        if (ctx.json) {
          auto arr = nlohmann::json::array();
          for (auto& m : *r)
            arr.push_back({{"version", m.version}, {"name", m.name}, {"applied", m.applied},
                           {"applied_at", m.applied ? nlohmann::json(m.applied_at) : nullptr}});
          std::cout << arr.dump(2) << "\n";
          return;
        }
        std::cout << fmt::format("{:<8} {:<28} {:<8} {}\n", "VERSION", "NAME", "STATE", "APPLIED AT");
        for (auto& m : *r)
          std::cout << fmt::format("{:<8} {:<28} {:<8} {}\n", fmt::format("{:04}", m.version),
                                   m.name, m.applied ? "applied" : "pending", m.applied_at);
      });
    });
    return;
  }
  runWithPool(*options, [&](db::Pool& pool, std::function<void()> finish) {
    jobs::migrate(pool, [&, finish](Result<std::vector<int>> r) {
      finish();
      if (!r) {
        std::cerr << "clusterd db migrate: " << r.error().message << "\n";
        ctx.exit_code = kExitSystem;
        return;
      }
      if (r->empty()) {
        std::cout << "schema is current (version " << jobs::migrations().back().version << ")\n";
        return;
      }
      for (int v : *r)
        for (auto& m : jobs::migrations())
          if (m.version == v) std::cout << fmt::format("applied {:04}_{}\n", m.version, m.name);
    });
  });
}

void runSeed(CliContext& ctx, const DbOptions& o) {
  auto options = poolOptions(ctx, o);
  if (!options) return;
  runWithPool(*options, [&](db::Pool& pool, std::function<void()> finish) {
    jobs::seed(pool, o.products, static_cast<int>(o.stock), [&, finish](Result<void> r) {
      finish();
      if (!r) {
        std::cerr << "clusterd db seed: " << r.error().message << "\n";
        ctx.exit_code = kExitSystem;
        return;
      }
      std::cout << fmt::format("seeded SKU-000001 .. SKU-{:06} with stock {}\n", o.products,
                               o.stock);
    });
  });
}

}  // namespace

void addDbCommands(CLI::App& app, CliContext& ctx) {
  auto opts = std::make_shared<DbOptions>();
  CLI::App* db = app.add_subcommand("db", "PostgreSQL schema and demo data of the shop jobs");
  db->require_subcommand(1);
  // --home/--redis/--postgres may also follow the verb: `clusterd db migrate --postgres URL`.
  db->fallthrough();
  db->add_option("--ecosystem", opts->ecosystem,
                 "Ecosystem file whose postgres.url is used when neither --postgres nor "
                 "CLUSTERD_POSTGRES_URL is set");
  db->add_option("--env", opts->env, "Environment of the ecosystem file (env_<name>)");

  CLI::App* migrate = db->add_subcommand(
      "migrate",
      "Apply pending schema migrations in one transaction under an advisory lock.\n"
      "Examples:\n"
      "  clusterd db migrate --postgres postgresql://postgres@127.0.0.1/shop\n"
      "  clusterd db migrate --status\n");
  migrate->fallthrough();
  migrate->add_flag("--status", opts->status, "Only list migrations and whether they are applied");
  migrate->add_flag("--json", ctx.json, "With --status: print JSON");
  migrate->callback([&ctx, opts] { runMigrate(ctx, *opts); });

  CLI::App* seed = db->add_subcommand(
      "seed",
      "Create SKU-000001 .. SKU-<N> (one product and variant each) with the given stock;\n"
      "existing SKUs get their stock reset.\n"
      "Example:\n"
      "  clusterd db seed --products 1000 --stock 100\n");
  seed->fallthrough();
  seed->add_option("--products", opts->products, "Number of products")
      ->check(CLI::Range(1, 10'000'000));
  seed->add_option("--stock", opts->stock, "Stock of every variant")->check(CLI::Range(0, 1'000'000'000));
  seed->callback([&ctx, opts] { runSeed(ctx, *opts); });
}

}  // namespace clusterd::cli
