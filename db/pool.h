// db::Pool: a small pool of non-blocking PostgreSQL connections on one libuv
// loop, and db::Transaction, a BEGIN…COMMIT on one leased connection.
//
// The pool promises: nothing blocks the loop; requests wait in FIFO order
// for a free connection, at most `acquire_timeout`, then fail with a
// transient error; broken connections are reopened with exponential backoff
// (a Postgres restart delays work, it does not lose it); statements slower
// than `slow_query` are logged with their duration and counted.
//
// Design: callbacks, not coroutines. A Transaction is a shared object that
// holds its connection until commit()/rollback() or until the last reference
// goes away; a connection handed back inside a transaction is rolled back
// before anyone else gets it, so an early return in a handler is safe. BEGIN
// rides in the same pipeline as the transaction's first statements and
// COMMIT in the same pipeline as its last ones, so a typical transaction
// costs two round trips.
//
// A session setup (setUpSessions()) is a batch the pool runs on each new
// session before lending it to anyone: a check that must precede a
// session's first statement (the shop moves the order id sequence on after
// a crash, jobs/order_ids.h) costs one round trip per connection instead of
// one statement per request. A session is lent out only once its setup
// succeeded; one whose setup fails is closed and opened again like a broken
// connection, so nothing runs on a session that was not set up.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/uv_handle.h"
#include "db/types.h"

namespace clusterd::db {

class Connection;
class Pool;

struct PoolOptions {
  std::string conninfo;  // a libpq URI or key=value string
  int size = 4;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds acquire_timeout{10'000};  // longest wait for a free connection
  std::chrono::milliseconds slow_query{200};         // 0 = never log
  std::chrono::milliseconds backoff_min{100};
  std::chrono::milliseconds backoff_max{5000};
};

struct PoolStats {
  uint64_t batches = 0;         // batches run (a single query is a batch of one)
  uint64_t errors = 0;          // batches that ended in an error
  uint64_t slow_queries = 0;    // batches slower than slow_query
  uint64_t reconnects = 0;      // connections reopened after a failure
  uint64_t acquire_timeouts = 0;
  uint64_t merged = 0;          // batches that shared a pipeline with others
  uint64_t grouped = 0;         // batches committed in a shared transaction
  uint64_t group_retries = 0;   // shared transactions that failed and ran batch by batch
  int connections = 0;          // open now
  int busy = 0;                 // leased now
  size_t waiting = 0;           // requests queued for a connection

  // Adds another pool's numbers (a process that has two pools reports one).
  PoolStats& operator+=(const PoolStats& o) {
    batches += o.batches;
    errors += o.errors;
    slow_queries += o.slow_queries;
    reconnects += o.reconnects;
    acquire_timeouts += o.acquire_timeouts;
    merged += o.merged;
    grouped += o.grouped;
    group_retries += o.group_retries;
    connections += o.connections;
    busy += o.busy;
    waiting += o.waiting;
    return *this;
  }
};

// What a statement error does to a transaction: end it (roll back and give
// the connection back), or keep it open in its failed state so the caller
// can ROLLBACK TO SAVEPOINT and go on. A lost connection always ends it.
enum class OnError { kRollback, kKeep };

class Transaction : public std::enable_shared_from_this<Transaction> {
 public:
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  // Runs statements inside the transaction (pipelined when several). On an
  // error, Reply::failed_at indexes `batch`.
  void run(std::vector<Statement> batch, ReplyCallback done,
           OnError on_error = OnError::kRollback);
  void query(Statement s, ReplyCallback done) { run({std::move(s)}, std::move(done)); }
  // Runs `last` and COMMIT in one pipeline; the Reply holds the results of
  // `last`. An error (including a failed COMMIT) means nothing was written
  // yet; with OnError::kKeep and an error in `last` (failed_at < last.size()),
  // the transaction stays open for a ROLLBACK TO SAVEPOINT.
  void commit(std::vector<Statement> last, ReplyCallback done,
              OnError on_error = OnError::kRollback);
  void commit(ReplyCallback done) { commit({}, std::move(done)); }
  // False once committed, rolled back or broken.
  bool open() const { return conn_ != nullptr; }
  // Rolls back now and gives the connection back.
  void rollback();

 private:
  friend class Pool;
  Transaction(std::weak_ptr<Pool*> pool, Connection* conn);
  void release();

  std::weak_ptr<Pool*> pool_;
  Connection* conn_;
  // The connection's session when the transaction took it: the connection
  // may break while idle between two statements and be reconnected by the
  // pool, and a statement sent then would run outside the transaction.
  uint64_t session_;
  bool begun_ = false;
};

using TransactionPtr = std::shared_ptr<Transaction>;
using TransactionCallback = std::function<void(TransactionPtr, std::optional<DbError>)>;

// Judges the reply of a session's setup batch: nullopt lets the pool lend
// the session out, an error refuses it (the session is closed and opened
// again with the reconnect backoff, and requests that time out meanwhile
// fail with that error). Called for failed replies too, so that the error
// can say what to do.
using SessionCheck = std::function<std::optional<DbError>(const Reply&)>;

// Keeps a session setup installed on its pool (Pool::setUpSessions());
// destroying it removes the setup, leaving the sessions already set up as
// they are. It may outlive the pool.
class SessionSetup {
 public:
  ~SessionSetup();
  SessionSetup(const SessionSetup&) = delete;
  SessionSetup& operator=(const SessionSetup&) = delete;

 private:
  friend class Pool;
  explicit SessionSetup(std::weak_ptr<Pool*> pool) : pool_(std::move(pool)) {}
  std::weak_ptr<Pool*> pool_;
};

class Pool {
 public:
  Pool(uv_loop_t* loop, PoolOptions options);
  ~Pool();  // pending callbacks are dropped without running
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Opens the connections in the background; requests may be issued at once.
  void start();

  void query(Statement s, ReplyCallback done);
  // Several statements in one pipeline on one connection (one round trip).
  // Without an explicit BEGIN they run as one implicit transaction.
  //
  // When every connection is busy, queued batches are sent together in one
  // pipeline on the next free connection, each ended by its own Sync: one
  // round trip for many independent requests, and an error in one leaves
  // the others alone. A parameterless single statement runs alone (it may
  // be a multi-command script).
  void pipeline(std::vector<Statement> batch, ReplyCallback done);
  // Like pipeline(), for a batch that may also share its *transaction* with
  // other such batches queued at the same time: BEGIN, all of them, COMMIT,
  // so one WAL flush commits the lot (group commit). If the shared
  // transaction fails, each batch runs again alone, so an error reaches only
  // the batch that caused it. For statements that are safe to run twice when
  // the first run rolled back (e.g. INSERT ... ON CONFLICT).
  void pipelineGrouped(std::vector<Statement> batch, ReplyCallback done);
  // Leases a connection for a transaction; BEGIN is sent with the first run().
  void transaction(TransactionCallback done);
  // SELECT 1 with its own deadline, for health checks.
  void ping(std::chrono::milliseconds timeout, std::function<void(std::optional<DbError>)> done);
  // Runs `batch` (one pipeline, so one implicit transaction) on every
  // session of the pool, those open now and each one opened later, before
  // anything else may use it, and lets `check` judge the reply. At most one
  // setup per pool at a time.
  [[nodiscard]] std::unique_ptr<SessionSetup> setUpSessions(std::vector<Statement> batch,
                                                            SessionCheck check);

  PoolStats stats() const;
  const PoolOptions& options() const { return options_; }

 private:
  friend class Transaction;
  friend class SessionSetup;
  struct Slot;
  struct Setup {
    std::vector<Statement> batch;
    SessionCheck check;
  };
  // A request waiting for a connection: either a lease (grant) or a batch
  // that may share a pipeline with the batches queued behind it.
  struct Waiter {
    std::function<void(Connection*, std::optional<DbError>)> grant;
    uint64_t deadline_ms = 0;
    std::vector<Statement> batch;  // non-empty: a mergeable batch
    ReplyCallback done;
    bool groupable = false;        // may share a transaction with its neighbours
  };
  static constexpr size_t kMaxMerged = 64;

  void acquire(std::chrono::milliseconds timeout,
               std::function<void(Connection*, std::optional<DbError>)> grant);
  void release(Connection* conn);
  void execute(Connection* conn, std::vector<Statement> batch, ReplyCallback done);
  void runMerged(Slot& slot);
  void runGrouped(Slot& slot, std::vector<Waiter> group);
  void enqueueBatch(std::vector<Statement> batch, ReplyCallback done, bool groupable);
  void connectSlot(Slot& slot);
  void sessionOpened(Slot& slot);
  bool setUp(const Slot& slot) const;
  void setUpSession(Slot& slot, std::function<void()> then);
  void scheduleReconnect(Slot& slot, const DbError& why, std::string_view what = "connection lost");
  void serveWaiters();
  void expireWaiters();
  void armWaiterTimer();
  void noteReply(Connection* conn, const Reply& r);
  void onTiming(const std::vector<Statement>& batch, double ms);
  Slot* slotOf(Connection* conn);

  uv_loop_t* loop_;
  PoolOptions options_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::deque<Waiter> waiters_;
  std::shared_ptr<const Setup> setup_;  // null: sessions need no setup
  UvHandle<uv_timer_t> waiter_timer_;
  std::shared_ptr<Pool*> self_;  // weak copies let Transactions outlive the pool safely
  std::string last_error_;
  PoolStats stats_;
  bool closing_ = false;
};

}  // namespace clusterd::db
