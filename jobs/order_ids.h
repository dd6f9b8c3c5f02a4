// Order ids across PostgreSQL crashes. A checkout commits without waiting
// for its WAL flush (jobs/store.h), so a crash of the server can take the
// last advances of orders_id_seq with it, and the sequence would hand ids
// that clients already got in a 202 to later checkouts. guardOrderIds()
// prevents that: before the first checkout on any session after a crash
// recovery, the sequence moves forward by kMaxLostOrderIds, once.
//
// Design: a crash is detected by the row of order_id_guard, an UNLOGGED
// table (migration 0005). PostgreSQL empties every unlogged table whenever
// it starts from a state that was not shut down cleanly (an immediate
// shutdown, a backend killed by the OOM killer that makes the postmaster
// reinitialise, an OS crash, a promoted standby, a restored base backup),
// and keeps it across a clean shutdown, whose checkpoint flushes all WAL
// and so loses no id. pg_postmaster_start_time() would miss the killed
// backend: the postmaster, and its start time, survive that crash. The
// session that finds the table empty inserts the row and moves the
// sequence in one transaction that waits for its WAL flush, so the move is
// on disk before any id after it is handed out; a session that finds the
// row uses the sequence as it is. Every session of the checkout pool runs
// this check once, as the pool's session setup (db::Pool::setUpSessions()),
// so no checkout runs on a session that was not checked.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "db/pool.h"

namespace clusterd::jobs {

// How many order ids a crash can take back, at most. The ids lost are those
// of checkouts committed but not yet flushed: the WAL writer flushes a
// commit that does not wait within 3 × wal_writer_delay (0.6 s by default),
// about 4,100 checkouts at the highest rate the API has answered (6,800 a
// second at saturation, docs/BENCHMARKS.md; about 1,900 when the orders are
// processed as fast as they come). 100,000 is about 15 s of checkouts at
// saturation: room for a WAL writer held up by slow storage, and ids are
// plentiful (bigint), so a crash costs a gap and nothing else. The same
// figure bounds the lost orders a job may recreate
// (OrderGroup::kMaxLostOrdersAhead).
inline constexpr int64_t kMaxLostOrderIds = 100'000;

// pg_advisory_xact_lock key taken by every transaction that moves
// orders_id_seq forward (the guard, and order.process recreating lost
// orders), so that one never moves it back below where the other put it.
// "ordidseq" in ASCII, recognisable in pg_locks.
inline constexpr int64_t kOrderIdLock = 0x6f72646964736571;

// The guard's batch: its commit waits for the WAL flush, it takes
// kOrderIdLock, and its last statement inserts the guard row if it is
// missing and then moves the sequence on. That statement answers one row
// (the sequence's last value before and after) when this session moved it,
// none otherwise.
std::vector<db::Statement> orderIdGuardStatements();

// Makes `pool`, the pool the checkouts run on, check every session with
// orderIdGuardStatements() before lending it out, and log each move. A
// session whose check fails (the migrations not applied, the server going
// away) is closed and opened again, and serves nothing meanwhile.
[[nodiscard]] std::unique_ptr<db::SessionSetup> guardOrderIds(db::Pool& pool);

}  // namespace clusterd::jobs
