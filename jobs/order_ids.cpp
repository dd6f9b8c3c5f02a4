// Implementation of jobs/order_ids.h.
#include "jobs/order_ids.h"

#include <fmt/format.h>

#include "common/log.h"
#include "jobs/job.h"

namespace clusterd::jobs {
namespace {

// The reply of the guard's batch: nullopt when the session may run
// checkouts, else why not and what to do.
std::optional<db::DbError> judgeGuard(const db::Reply& r) {
  if (r.error) {
    db::DbError e = *r.error;
    std::string todo = e.sqlstate == "42P01"
                           ? "apply the shop's migrations (clusterd db migrate); checkouts wait"
                             " until then"
                           : "the session is opened and checked again before any checkout";
    e.message = fmt::format("checking whether a PostgreSQL crash took back order ids: {}; {}",
                            e.message, todo);
    return e;
  }
  const db::Rows& moved = r.results.back();
  if (moved.size() == 1)
    log::warn("jobs",
              "PostgreSQL recovered from a crash: order ids move on from {} to {}, so that none "
              "given out before the crash is given out again",
              moved.int64(0, 0), moved.int64(0, 1));
  return std::nullopt;
}

}  // namespace

std::vector<db::Statement> orderIdGuardStatements() {
  return {durableCommit(), db::stmt("SELECT pg_advisory_xact_lock($1)", kOrderIdLock),
          db::stmt("WITH marked AS ("
                   "  INSERT INTO order_id_guard DEFAULT VALUES ON CONFLICT DO NOTHING"
                   "  RETURNING true)"
                   " SELECT s.last_value, setval('orders_id_seq', s.last_value + $1)"
                   " FROM marked, orders_id_seq s",
                   kMaxLostOrderIds)};
}

std::unique_ptr<db::SessionSetup> guardOrderIds(db::Pool& pool) {
  return pool.setUpSessions(orderIdGuardStatements(), judgeGuard);
}

}  // namespace clusterd::jobs
