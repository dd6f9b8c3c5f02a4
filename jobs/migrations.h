// Schema migrations and demo data for the shop: the versioned SQL files of
// jobs/migrations/ (embedded in the binary at build time), applying them,
// reporting their status, and seeding products.
//
// Design: all pending migrations apply in ONE transaction that first takes
// pg_advisory_xact_lock, so two hosts migrating at once serialise and the
// second finds nothing left to do; a failing file rolls back everything,
// leaving the schema as it was. schema_migrations records what was applied.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "db/pool.h"

namespace clusterd::jobs {

struct Migration {
  int version;
  std::string_view name;
  std::string_view sql;
};

// Every migration in the binary, by ascending version.
const std::vector<Migration>& migrations();

struct MigrationState {
  int version = 0;
  std::string name;
  bool applied = false;
  std::string applied_at;  // empty when pending
};

// Applies the pending migrations; the callback gets the versions applied now
// (empty when the schema was current).
void migrate(db::Pool& pool, std::function<void(Result<std::vector<int>>)> done);
// Every known migration with whether (and when) it was applied.
void migrationStatus(db::Pool& pool, std::function<void(Result<std::vector<MigrationState>>)> done);
// Creates (or resets the stock of) SKU-000001 … SKU-<products>, one product
// with one variant each, all in one statement pipeline.
void seed(db::Pool& pool, int products, int stock, std::function<void(Result<void>)> done);

}  // namespace clusterd::jobs
