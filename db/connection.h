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
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
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
  void flush();
  void readResults();
  void finishWork();
  void breakConnection(const DbError& error);

  uv_loop_t* loop_;
  std::string conninfo_;
  std::chrono::milliseconds connect_timeout_;
  std::unique_ptr<PGconn, PgConnDeleter> conn_;
  State state_ = State::kDisconnected;
  UvHandle<uv_poll_t> poll_;
  int poll_fd_ = -1;
  int poll_events_ = 0;
  UvHandle<uv_timer_t> timer_;

  ConnectCallback on_connected_;
  BrokenCallback on_broken_;
  TimingCallback on_timing_;

  // The batches in flight, and the one whose results are being read.
  std::vector<Work> works_;
  size_t current_ = 0;
  Reply reply_;
  bool pipeline_ = false;
  uint64_t started_ns_ = 0;
};

}  // namespace clusterd::db
