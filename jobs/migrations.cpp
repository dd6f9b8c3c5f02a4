// Implementation of jobs/migrations.h (the SQL itself is in jobs/migrations/).
#include "jobs/migrations.h"

#include <fmt/format.h>

#include <memory>
#include <set>

namespace clusterd::jobs {
namespace {

// pg_advisory_xact_lock key: "clusterd" in ASCII, so it is recognisable in pg_locks.
constexpr int64_t kMigrationLock = 0x636c757374657264;

const char* kCreateLedger =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version int PRIMARY KEY, name text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now())";

Error dbError(const std::string& what, const db::DbError& e) {
  return Error{fmt::format("{}: {}", what, e.message)};
}

struct MigrateRun {
  db::TransactionPtr tx;
  std::vector<Migration> pending;
  size_t next = 0;
  std::vector<int> applied;
  std::function<void(Result<std::vector<int>>)> done;
};

void applyNext(std::shared_ptr<MigrateRun> run) {
  if (run->next == run->pending.size()) {
    run->tx->commit([run](db::Reply r) {
      if (!r.ok()) return run->done(dbError("commit of the migrations", *r.error));
      run->done(std::move(run->applied));
    });
    return;
  }
  const Migration& m = run->pending[run->next];
  // The file runs alone (simple protocol, several commands); its record follows.
  run->tx->query(db::Statement{std::string(m.sql), {}}, [run, m](db::Reply r) {
    if (!r.ok())
      return run->done(dbError(fmt::format("migration {:04}_{}.sql", m.version, m.name), *r.error));
    run->tx->query(db::stmt("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                            m.version, std::string(m.name)),
                   [run, m](db::Reply r2) {
                     if (!r2.ok()) return run->done(dbError("recording the migration", *r2.error));
                     run->applied.push_back(m.version);
                     ++run->next;
                     applyNext(run);
                   });
  });
}

}  // namespace

void migrate(db::Pool& pool, std::function<void(Result<std::vector<int>>)> done) {
  pool.transaction([done = std::move(done)](db::TransactionPtr tx,
                                            std::optional<db::DbError> err) mutable {
    if (err) return done(dbError("connect for migrations", *err));
    auto run = std::make_shared<MigrateRun>();
    run->tx = tx;
    run->done = std::move(done);
    tx->run({db::stmt("SELECT pg_advisory_xact_lock($1)", kMigrationLock),
             db::Statement{kCreateLedger, {}},
             db::Statement{"SELECT version FROM schema_migrations", {}}},
            [run](db::Reply r) {
              if (!r.ok()) return run->done(dbError("reading schema_migrations", *r.error));
              std::set<int> have;
              for (int i = 0; i < r[2].size(); ++i) have.insert(static_cast<int>(r[2].int64(i, 0)));
              for (const Migration& m : migrations())
                if (!have.count(m.version)) run->pending.push_back(m);
              applyNext(run);
            });
  });
}

void migrationStatus(db::Pool& pool,
                     std::function<void(Result<std::vector<MigrationState>>)> done) {
  pool.pipeline(
      {db::Statement{"SELECT to_regclass('schema_migrations') IS NOT NULL", {}}},
      [&pool, done = std::move(done)](db::Reply r) mutable {
        if (!r.ok()) return done(dbError("reading schema_migrations", *r.error));
        auto build = [done](const db::Rows* rows) {
          std::vector<MigrationState> out;
          for (const Migration& m : migrations()) {
            MigrationState s{m.version, std::string(m.name)};
            for (int i = 0; rows && i < rows->size(); ++i)
              if (rows->int64(i, 0) == m.version) s.applied = true, s.applied_at = rows->str(i, 1);
            out.push_back(std::move(s));
          }
          done(std::move(out));
        };
        if (!r[0].boolean(0, 0)) return build(nullptr);
        pool.query(db::Statement{"SELECT version, to_char(applied_at AT TIME ZONE 'UTC', "
                                 "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM schema_migrations",
                                 {}},
                   [build, done](db::Reply r2) {
                     if (!r2.ok()) return done(dbError("reading schema_migrations", *r2.error));
                     build(&r2[0]);
                   });
      });
}

void seed(db::Pool& pool, int products, int stock, std::function<void(Result<void>)> done) {
  // Product ids follow the SKU numbers so a re-seed updates instead of duplicating.
  pool.pipeline(
      {db::stmt("INSERT INTO products (id, name, description)"
                " SELECT g, 'Product ' || lpad(g::text, 6, '0'), 'Demo product number ' || g"
                " FROM generate_series(1, $1::int) g ON CONFLICT (id) DO NOTHING",
                products),
       db::Statement{"SELECT setval(pg_get_serial_sequence('products', 'id'),"
                     " greatest((SELECT max(id) FROM products), 1))",
                     {}},
       db::stmt("INSERT INTO variants (product_id, sku, name, price_cents, stock)"
                " SELECT g, 'SKU-' || lpad(g::text, 6, '0'), 'Standard', 100 + (g * 37) % 9900, $2"
                " FROM generate_series(1, $1::int) g"
                " ON CONFLICT (sku) DO UPDATE SET stock = EXCLUDED.stock, updated_at = now()",
                products, stock)},
      [done = std::move(done)](db::Reply r) {
        if (!r.ok()) {
          std::string hint = r.error->sqlstate == "42P01" ? " (run `clusterd db migrate` first)" : "";
          return done(Error{"seeding products: " + r.error->message + hint});
        }
        done(success());
      });
}

}  // namespace clusterd::jobs
