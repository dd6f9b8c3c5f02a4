// One PostgreSQL connection driven by the libuv loop: a non-blocking connect
// (PQconnectStart/PQconnectPoll) and the execution of one batch of statements
// at a time, all through a uv_poll_t on the connection's socket. Internal to
// the db module; users go through db::Pool.
//
// Design: a batch of one statement uses the normal protocol (and, without
// parameters, the simple protocol, so a migration file may hold many
// commands); a batch of several uses pipeline mode: every statement and one
// Sync are sent at once and the results read back in order, one round trip
// for the lot. After an error Postgres skips the rest of the pipeline, so a
// Reply carries the first error and no partial results. libpq may change the
// socket during connect, so the poll handle follows PQsocket().
//
// Statements sent with the extended protocol are prepared once per
// connection (named "s1", "s2", … and kept until the connection closes, up to
// kMaxPrepared distinct texts) and executed by name afterwards: PostgreSQL
// then skips parsing and analysing them, about a fifth of its CPU in the
// shop's checkout load. It still plans every execution with its parameters
// (plan_cache_mode=force_custom_plan, see connect()). A Parse is sent in the
// same pipeline as the statement's first use and is only relied on by later
// batches once PostgreSQL has answered it.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/uv_handle.h"
#include "db/types.h"

namespace clusterd::db {

class Connection {
 public:
  enum class State { kDisconnected, kConnecting, kIdle, kBusy };
  using ConnectCallback = std::function<void(std::optional<DbError>)>;
  // Called when the connection breaks while idle (server restart, network).
  using BrokenCallback = std::function<void(const DbError&)>;
  // Called with the duration of every finished batch, for slow-query logs.
  using TimingCallback = std::function<void(const std::vector<Statement>&, double ms)>;

  Connection(uv_loop_t* loop, std::string conninfo, std::chrono::milliseconds connect_timeout);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void setBrokenCallback(BrokenCallback cb) { on_broken_ = std::move(cb); }
  void setTimingCallback(TimingCallback cb) { on_timing_ = std::move(cb); }

  // Starts connecting; `done` gets nullopt once the connection is ready.
  // Requires kDisconnected.
  void connect(ConnectCallback done);
  // One batch and its callback.
  struct Work {
    std::vector<Statement> batch;
    ReplyCallback done;
  };
  // Runs a batch; requires kIdle. The callback runs once, after the state is
  // back to kIdle (or kDisconnected when the connection broke).
  void execute(std::vector<Statement> batch, ReplyCallback done);
  // Runs several independent batches in one pipeline, each ended by its own
  // Sync (so each is its own implicit transaction and an error in one does
  // not touch the others); callbacks run in order as each batch completes,
  // the last one after the state is back to kIdle.
  void executeMany(std::vector<Work> works);
  // Drops the connection; a pending callback is destroyed without running.
  void close();

  // Distinct statement texts prepared on this connection at most; others
  // run unnamed (parsed and planned every time).
  static constexpr size_t kMaxPrepared = 256;
  // Counts the connections made: a holder that saw one value and later sees
  // another knows the server session it started (a transaction) is gone.
  uint64_t session() const { return session_; }
  // How many statements are prepared on this connection now.
  size_t preparedCount() const { return prepared_.size(); }

  State state() const { return state_; }
  // Idle or in a transaction, as libpq tracks it; kUnknown when not connected.
  PGTransactionStatusType transactionStatus() const;
  // "host:port" for messages.
  std::string describe() const;

 private:
  struct PgConnDeleter {
    void operator()(PGconn* c) const { PQfinish(c); }
  };

  void watch(int fd, int events);
  void stopWatching();
  void onPoll(int status, int events);
  void onConnectTimeout();
  void continueConnect();
  void finishConnect(std::optional<DbError> error);
  bool sendBatch();
  bool sendStatement(const Statement& s, size_t work);
  bool batchNeedsPrepare() const;
  void flush();
  void readResults();
  void finishWork();
  void breakConnection(const DbError& error);

  uv_loop_t* loop_;
  std::string conninfo_;
  std::chrono::milliseconds connect_timeout_;
  std::unique_ptr<PGconn, PgConnDeleter> conn_;
  State state_ = State::kDisconnected;
  uint64_t session_ = 0;
  UvHandle<uv_poll_t> poll_;
  int poll_fd_ = -1;
  int poll_events_ = 0;
  UvHandle<uv_timer_t> timer_;

  ConnectCallback on_connected_;
  BrokenCallback on_broken_;
  TimingCallback on_timing_;

  // Prepared statements by SQL text. `pending_in` is the index in works_ of
  // the batch whose pipeline carries the Parse, until PostgreSQL answers it;
  // only that batch may use the name meanwhile, since a Parse skipped after
  // an error in its batch never creates the statement.
  struct Prepared {
    std::string name;
    std::optional<size_t> pending_in;
  };
  std::unordered_map<std::string, Prepared> prepared_;
  uint64_t next_name_ = 0;
  // In pipeline mode, one entry per result expected from the server: the SQL
  // text of a Parse (whose result is not the caller's), or empty for a
  // statement's own result.
  std::vector<std::string> expected_;
  size_t next_expected_ = 0;

  // The batches in flight, and the one whose results are being read.
  std::vector<Work> works_;
  size_t current_ = 0;
  Reply reply_;
  bool pipeline_ = false;
  uint64_t started_ns_ = 0;
};

}  // namespace clusterd::db
