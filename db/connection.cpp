// Implementation of db/connection.h.
#include "db/connection.h"

#include <cassert>
#include <utility>

#include <fmt/format.h>

#include "common/log.h"

namespace clusterd::db {

Connection::Connection(uv_loop_t* loop, std::string conninfo,
                       std::chrono::milliseconds connect_timeout)
    : loop_(loop), conninfo_(std::move(conninfo)), connect_timeout_(connect_timeout) {
  uv_timer_init(loop_, timer_.get());
  timer_->data = this;
}

Connection::~Connection() { close(); }

std::string Connection::describe() const {
  if (!conn_) return "postgres";
  const char* host = PQhost(conn_.get());
  const char* port = PQport(conn_.get());
  return fmt::format("postgres at {}:{}", host ? host : "?", port ? port : "?");
}

PGTransactionStatusType Connection::transactionStatus() const {
  if (!conn_ || state_ == State::kDisconnected || state_ == State::kConnecting)
    return PQTRANS_UNKNOWN;
  return PQtransactionStatus(conn_.get());
}

void Connection::watch(int fd, int events) {
  if (fd != poll_fd_) {
    stopWatching();
    int rc = uv_poll_init(loop_, poll_.get(), fd);
    assert(rc == 0 && "a socket libpq handed over is watched by one handle only");
    (void)rc;
    poll_->data = this;
    poll_fd_ = fd;
    poll_events_ = 0;
  }
  if (events == poll_events_) return;
  poll_events_ = events;
  uv_poll_start(poll_.get(), events, [](uv_poll_t* h, int status, int ev) {
    if (h->data) static_cast<Connection*>(h->data)->onPoll(status, ev);
  });
}

void Connection::stopWatching() {
  if (poll_fd_ >= 0) {
    poll_.reset();  // uv_close stops the watcher synchronously
    poll_ = UvHandle<uv_poll_t>();
  }
  poll_fd_ = -1;
  poll_events_ = 0;
}

void Connection::close() {
  stopWatching();
  if (timer_.initialized()) uv_timer_stop(timer_.get());
  conn_.reset();
  state_ = State::kDisconnected;
  on_connected_ = nullptr;
  works_.clear();
  current_ = 0;
  prepared_.clear();
  expected_.clear();
  next_expected_ = 0;
}

void Connection::connect(ConnectCallback done) {
  assert(state_ == State::kDisconnected);
  on_connected_ = std::move(done);
  state_ = State::kConnecting;
  ++session_;
  // Custom plans only: a prepared statement is then parsed once but planned
  // with its parameters every time. PostgreSQL's default switches to a
  // generic plan after five executions when it costs no more, and keeps it
  // until the table is analysed again: one made while a table was small
  // kept scanning it sequentially as it grew (seen in the shop's order
  // transaction, where order_lines grew from hundreds to tens of thousands
  // of rows in a minute). An `options` setting in the connection string
  // comes later and wins.
  const char* keys[] = {"options", "dbname", nullptr};
  const char* values[] = {"-c plan_cache_mode=force_custom_plan", conninfo_.c_str(), nullptr};
  conn_.reset(PQconnectStartParams(keys, values, 1));
  if (!conn_ || PQstatus(conn_.get()) == CONNECTION_BAD) {
    std::string why = conn_ ? PQerrorMessage(conn_.get()) : "out of memory";
    finishConnect(connectionError("connect to postgres: " + why));
    return;
  }
  uv_timer_start(
      timer_.get(), [](uv_timer_t* t) { static_cast<Connection*>(t->data)->onConnectTimeout(); },
      static_cast<uint64_t>(connect_timeout_.count()), 0);
  // PQconnectStart behaves as if PQconnectPoll had returned "writing".
  watch(PQsocket(conn_.get()), UV_WRITABLE);
}

void Connection::onConnectTimeout() {
  if (state_ != State::kConnecting) return;
  finishConnect(connectionError(fmt::format("connect to {}: no answer within {} ms",
                                            describe(), connect_timeout_.count())));
}

void Connection::continueConnect() {
  // libpq may close the socket and open another (even under the same
  // number) while connecting, so the watcher is rebuilt at every step.
  PostgresPollingStatusType st = PQconnectPoll(conn_.get());
  stopWatching();
  switch (st) {
    case PGRES_POLLING_READING: watch(PQsocket(conn_.get()), UV_READABLE); return;
    case PGRES_POLLING_WRITING: watch(PQsocket(conn_.get()), UV_WRITABLE); return;
    case PGRES_POLLING_OK: {
      PQsetNoticeProcessor(
          conn_.get(),
          [](void*, const char* message) {
            std::string m = message;
            while (!m.empty() && m.back() == '\n') m.pop_back();
            if (m.rfind("WARNING", 0) == 0)
              log::warn("db", "postgres: {}", m);
            else
              log::debug("db", "postgres: {}", m);
          },
          nullptr);
      if (PQsetnonblocking(conn_.get(), 1) != 0) {
        finishConnect(connectionError("PQsetnonblocking: " +
                                      std::string(PQerrorMessage(conn_.get()))));
        return;
      }
      finishConnect(std::nullopt);
      return;
    }
    case PGRES_POLLING_FAILED:
    default:
      finishConnect(
          connectionError("connect to postgres: " + std::string(PQerrorMessage(conn_.get()))));
      return;
  }
}

void Connection::finishConnect(std::optional<DbError> error) {
  uv_timer_stop(timer_.get());
  if (error) {
    stopWatching();
    conn_.reset();
    state_ = State::kDisconnected;
  } else {
    state_ = State::kIdle;
    watch(PQsocket(conn_.get()), UV_READABLE);  // notices, and the server hanging up
  }
  auto cb = std::exchange(on_connected_, nullptr);
  if (cb) cb(std::move(error));
}

void Connection::onPoll(int status, int events) {
  if (state_ == State::kConnecting) {
    continueConnect();
    return;
  }
  if (status < 0) {
    // POLLERR (the peer reset the connection) arrives as UV_EBADF; libpq's
    // own message says more when it has one.
    std::string why = PQconsumeInput(conn_.get()) == 0 ? PQerrorMessage(conn_.get())
                                                       : uv_strerror(status);
    breakConnection(connectionError(describe() + ": " + why));
    return;
  }
  if ((events & UV_WRITABLE) && state_ == State::kBusy) {
    flush();
    if (state_ != State::kBusy) return;
  }
  if (events & UV_READABLE) {
    if (PQconsumeInput(conn_.get()) == 0 || PQsocket(conn_.get()) != poll_fd_) {
      breakConnection(connectionError(describe() + ": " + PQerrorMessage(conn_.get())));
      return;
    }
    if (state_ == State::kBusy) {
      readResults();
    } else if (state_ == State::kIdle) {
      // Notices are consumed by libpq; a hang-up shows as a bad status.
      while (!PQisBusy(conn_.get())) {
        PGresult* r = PQgetResult(conn_.get());
        if (!r) break;
        PQclear(r);
      }
      if (PQstatus(conn_.get()) == CONNECTION_BAD || PQsocket(conn_.get()) != poll_fd_)
        breakConnection(connectionError(describe() + ": " + PQerrorMessage(conn_.get())));
    }
  }
}

void Connection::execute(std::vector<Statement> batch, ReplyCallback done) {
  std::vector<Work> works;
  works.push_back(Work{std::move(batch), std::move(done)});
  executeMany(std::move(works));
}

void Connection::executeMany(std::vector<Work> works) {
  assert(state_ == State::kIdle);
  assert(!works.empty());
  state_ = State::kBusy;
  works_ = std::move(works);
  current_ = 0;
  reply_ = Reply{};
  started_ns_ = uv_hrtime();
  pipeline_ = works_.size() > 1 || works_[0].batch.size() > 1 || batchNeedsPrepare();
  expected_.clear();
  next_expected_ = 0;
  if (!sendBatch()) {
    breakConnection(connectionError(describe() + ": " + PQerrorMessage(conn_.get())));
    return;
  }
  flush();
}

// A lone statement that is not prepared yet needs a pipeline to carry its
// Parse; one without parameters keeps the simple protocol (several commands
// in one string, as migrations have) and is never prepared.
bool Connection::batchNeedsPrepare() const {
  if (works_.size() != 1 || works_[0].batch.size() != 1) return false;
  const Statement& s = works_[0].batch[0];
  return !s.params.empty() && !prepared_.contains(s.sql) && prepared_.size() < kMaxPrepared;
}

bool Connection::sendBatch() {
  PGconn* c = conn_.get();
  if (pipeline_ && PQenterPipelineMode(c) != 1) return false;
  for (size_t i = 0; i < works_.size(); ++i) {
    assert(!works_[i].batch.empty());
    for (const Statement& s : works_[i].batch)
      if (!sendStatement(s, i)) return false;
    if (pipeline_ && PQpipelineSync(c) != 1) return false;
  }
  return true;
}

bool Connection::sendStatement(const Statement& s, size_t work) {
  PGconn* c = conn_.get();
  if (!pipeline_ && s.params.empty()) return PQsendQuery(c, s.sql.c_str()) == 1;
  std::vector<const char*> values;
  values.reserve(s.params.size());
  for (const auto& p : s.params) values.push_back(p ? p->c_str() : nullptr);
  int n = static_cast<int>(values.size());

  const std::string* name = nullptr;
  auto it = prepared_.find(s.sql);
  if (it != prepared_.end()) {
    if (!it->second.pending_in || *it->second.pending_in == work) name = &it->second.name;
  } else if (pipeline_ && prepared_.size() < kMaxPrepared) {
    // Built by appending: GCC 12 reports a false -Wrestrict on `"s" + std::string`.
    std::string prepared_name = "s";
    prepared_name += std::to_string(++next_name_);
    Prepared p{std::move(prepared_name), work};
    if (PQsendPrepare(c, p.name.c_str(), s.sql.c_str(), n, nullptr) != 1) return false;
    expected_.push_back(s.sql);
    name = &prepared_.emplace(s.sql, std::move(p)).first->second.name;
  }
  if (pipeline_) expected_.emplace_back();
  if (name)
    return PQsendQueryPrepared(c, name->c_str(), n, values.data(), nullptr, nullptr, 0) == 1;
  return PQsendQueryParams(c, s.sql.c_str(), n, nullptr, values.data(), nullptr, nullptr, 0) == 1;
}

void Connection::flush() {
  int r = PQflush(conn_.get());
  if (r < 0) {
    breakConnection(connectionError(describe() + ": " + PQerrorMessage(conn_.get())));
    return;
  }
  watch(PQsocket(conn_.get()), r == 1 ? (UV_READABLE | UV_WRITABLE) : UV_READABLE);
}

void Connection::readResults() {
  PGconn* c = conn_.get();
  int empty_in_a_row = 0;
  while (state_ == State::kBusy) {
    if (PQisBusy(c)) return;  // wait for more input
    PGresult* r = PQgetResult(c);
    if (!r) {
      if (!pipeline_) {
        finishWork();
        return;
      }
      // Between two statements of a pipeline; twice in a row means the
      // next result has not arrived yet.
      if (++empty_in_a_row > 1) return;
      continue;
    }
    empty_in_a_row = 0;
    ExecStatusType status = PQresultStatus(r);
    // The answer to a Parse of ours: the statement is usable by every batch
    // from now on, or was never made (its error, if any, is the batch's).
    if (pipeline_ && status != PGRES_PIPELINE_SYNC && next_expected_ < expected_.size() &&
        !expected_[next_expected_++].empty()) {
      const std::string& sql = expected_[next_expected_ - 1];
      if (status == PGRES_COMMAND_OK) {
        prepared_[sql].pending_in.reset();
        PQclear(r);
        continue;
      }
      prepared_.erase(sql);
      if (status != PGRES_FATAL_ERROR) {
        PQclear(r);
        continue;
      }
    }
    switch (status) {
      case PGRES_PIPELINE_SYNC:
        PQclear(r);
        if (current_ + 1 == works_.size()) PQexitPipelineMode(c);
        finishWork();
        break;
      case PGRES_FATAL_ERROR:
        if (!reply_.error) {
          reply_.error = errorFromResult(r);
          reply_.failed_at = reply_.results.size();
        }
        PQclear(r);
        break;
      case PGRES_PIPELINE_ABORTED: PQclear(r); break;
      case PGRES_COPY_IN:
      case PGRES_COPY_OUT:
      case PGRES_COPY_BOTH:
        PQclear(r);
        breakConnection(connectionError(describe() + ": COPY is not supported by db::Pool"));
        return;
      default: reply_.results.emplace_back(r); break;
    }
  }
}

void Connection::finishWork() {
  double ms = static_cast<double>(uv_hrtime() - started_ns_) / 1e6;
  if (reply_.error) reply_.results.clear();
  bool last = current_ + 1 == works_.size();
  Work& w = works_[current_];
  if (on_timing_) on_timing_(w.batch, ms);
  ReplyCallback cb = std::move(w.done);
  Reply reply = std::exchange(reply_, Reply{});
  if (last) {
    state_ = State::kIdle;
    works_.clear();
    current_ = 0;
  } else {
    ++current_;
  }
  if (cb) cb(std::move(reply));
}

void Connection::breakConnection(const DbError& error) {
  bool was_busy = state_ == State::kBusy;
  std::vector<Work> works = std::exchange(works_, {});
  size_t first = current_;
  current_ = 0;
  prepared_.clear();  // they lived in the server's session, which is gone
  expected_.clear();
  next_expected_ = 0;
  stopWatching();
  conn_.reset();
  state_ = State::kDisconnected;
  reply_ = Reply{};
  if (was_busy) {
    for (size_t i = first; i < works.size(); ++i)
      if (works[i].done) works[i].done(Reply{{}, error});
  } else if (on_broken_) {
    on_broken_(error);
  }
}

}  // namespace clusterd::db
