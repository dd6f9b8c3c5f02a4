// Implementation of db/pool.h: leasing, waiting, reconnecting, slow-query
// accounting, and transactions.
#include "db/pool.h"

#include <cassert>
#include <random>
#include <utility>

#include "common/log.h"
#include "db/connection.h"

namespace clusterd::db {

struct Pool::Slot {
  Pool* pool = nullptr;
  std::unique_ptr<Connection> conn;
  bool leased = false;
  int failures = 0;
  bool ever_connected = false;
  uint64_t set_up_session = 0;  // the connection's session() whose setup succeeded
  UvHandle<uv_timer_t> retry;
};

namespace {
uint64_t nowMs(uv_loop_t* loop) { return uv_now(loop); }

std::string firstLine(const std::string& sql) {
  std::string s = sql.substr(0, sql.find('\n'));
  if (s.size() > 120) s = s.substr(0, 117) + "...";
  return s;
}
}  // namespace

Pool::Pool(uv_loop_t* loop, PoolOptions options)
    : loop_(loop), options_(std::move(options)), self_(std::make_shared<Pool*>(this)) {
  assert(options_.size > 0);
  uv_timer_init(loop_, waiter_timer_.get());
  waiter_timer_->data = this;
  for (int i = 0; i < options_.size; ++i) {
    auto slot = std::make_unique<Slot>();
    slot->pool = this;
    slot->conn = std::make_unique<Connection>(loop_, options_.conninfo, options_.connect_timeout);
    Slot* s = slot.get();
    slot->conn->setBrokenCallback([this, s](const DbError& e) { scheduleReconnect(*s, e); });
    slot->conn->setTimingCallback(
        [this](const std::vector<Statement>& b, double ms) { onTiming(b, ms); });
    uv_timer_init(loop_, slot->retry.get());
    slot->retry->data = s;
    slots_.push_back(std::move(slot));
  }
}

Pool::~Pool() {
  closing_ = true;
  self_.reset();
  waiters_.clear();
  for (auto& s : slots_) s->conn->close();
}

void Pool::start() {
  for (auto& s : slots_)
    if (s->conn->state() == Connection::State::kDisconnected && !uv_is_active(s->retry.handle()))
      connectSlot(*s);
}

Pool::Slot* Pool::slotOf(Connection* conn) {
  for (auto& s : slots_)
    if (s->conn.get() == conn) return s.get();
  return nullptr;
}

void Pool::connectSlot(Slot& slot) {
  Slot* s = &slot;
  slot.conn->connect([this, s](std::optional<DbError> err) {
    if (err) {
      scheduleReconnect(*s, *err);
      return;
    }
    // The backoff is reset only once the session is usable, so a setup
    // that keeps failing is retried ever more slowly and logged once.
    if (setup_) return setUpSession(*s, [this, s] { sessionOpened(*s); });
    sessionOpened(*s);
  });
}

void Pool::sessionOpened(Slot& slot) {
  if (slot.failures > 0 || slot.ever_connected) {
    ++stats_.reconnects;
    if (slot.failures > 0) log::info("db", "reconnected to {}", slot.conn->describe());
  }
  slot.failures = 0;
  slot.ever_connected = true;
  serveWaiters();
}

bool Pool::setUp(const Slot& slot) const {
  return !setup_ || slot.set_up_session == slot.conn->session();
}

// Runs the setup on an idle session that nobody holds; `then` runs once it
// succeeded. The slot stays leased meanwhile, so nothing else is sent first.
void Pool::setUpSession(Slot& slot, std::function<void()> then) {
  slot.leased = true;
  Slot* s = &slot;
  Connection* conn = slot.conn.get();
  uint64_t session = conn->session();
  std::shared_ptr<const Setup> setup = setup_;
  conn->execute(setup->batch, [this, s, conn, session, setup, then = std::move(then)](Reply r) {
    noteReply(conn, r);
    s->leased = false;
    std::optional<DbError> refused = setup->check(r);
    if (!refused && conn->state() == Connection::State::kIdle) {
      s->set_up_session = session;
      return then();
    }
    if (!refused) refused = connectionError("connection lost during the session setup");
    if (conn->state() != Connection::State::kDisconnected) conn->close();
    scheduleReconnect(*s, *refused, "session setup failed");
  });
}

std::unique_ptr<SessionSetup> Pool::setUpSessions(std::vector<Statement> batch,
                                                  SessionCheck check) {
  assert(!setup_ && "one session setup per pool");
  assert(!batch.empty());
  setup_ = std::make_shared<const Setup>(Setup{std::move(batch), std::move(check)});
  serveWaiters();  // sets up the idle sessions now
  return std::unique_ptr<SessionSetup>(new SessionSetup(self_));
}

// Runs no callback: every idle session is either set up or setting up (its
// setup's end serves the waiters), so no request waits on the removal.
SessionSetup::~SessionSetup() {
  if (auto pool = pool_.lock()) (*pool)->setup_.reset();
}

void Pool::scheduleReconnect(Slot& slot, const DbError& why, std::string_view what) {
  if (closing_) return;
  last_error_ = why.message;
  if (slot.failures == 0) log::warn("db", "{}: {}", what, why.message);
  int shift = std::min(slot.failures, 10);
  ++slot.failures;
  auto base = options_.backoff_min.count() << shift;
  auto delay = std::min<int64_t>(base, options_.backoff_max.count());
  // Jitter keeps a pool's connections (and many workers) from reconnecting in lockstep.
  static thread_local std::minstd_rand rng{std::random_device{}()};
  delay = delay / 2 + static_cast<int64_t>(rng() % static_cast<uint64_t>(delay / 2 + 1));
  uv_timer_start(
      slot.retry.get(),
      [](uv_timer_t* t) {
        Slot* sl = static_cast<Slot*>(t->data);
        if (sl->conn->state() == Connection::State::kDisconnected) sl->pool->connectSlot(*sl);
      },
      static_cast<uint64_t>(delay), 0);
  // Requests waiting for a connection keep waiting until their deadline.
}

void Pool::acquire(std::chrono::milliseconds timeout,
                   std::function<void(Connection*, std::optional<DbError>)> grant) {
  for (auto& s : slots_) {
    if (!s->leased && s->conn->state() == Connection::State::kIdle && setUp(*s) &&
        waiters_.empty()) {
      s->leased = true;
      grant(s->conn.get(), std::nullopt);
      return;
    }
  }
  waiters_.push_back(Waiter{std::move(grant), nowMs(loop_) + static_cast<uint64_t>(timeout.count())});
  armWaiterTimer();
  serveWaiters();
}

void Pool::serveWaiters() {
  for (auto& s : slots_) {
    if (s->leased || s->conn->state() != Connection::State::kIdle) continue;
    if (!setUp(*s)) {
      setUpSession(*s, [this] { serveWaiters(); });
      continue;
    }
    if (waiters_.empty()) continue;
    if (!waiters_.front().batch.empty()) {
      runMerged(*s);
      continue;
    }
    Waiter w = std::move(waiters_.front());
    waiters_.pop_front();
    s->leased = true;
    w.grant(s->conn.get(), std::nullopt);
  }
  if (!waiters_.empty()) {
    for (auto& s : slots_)
      if (s->conn->state() == Connection::State::kDisconnected && !uv_is_active(s->retry.handle()))
        connectSlot(*s);
  }
}

void Pool::runMerged(Slot& slot) {
  // A run of groupable batches at the front shares one transaction.
  size_t groupable = 0;
  for (auto it = waiters_.begin(); it != waiters_.end() && it->groupable && groupable < kMaxMerged;
       ++it)
    ++groupable;
  if (groupable > 1) {
    std::vector<Waiter> group;
    for (size_t i = 0; i < groupable; ++i) {
      group.push_back(std::move(waiters_.front()));
      waiters_.pop_front();
    }
    return runGrouped(slot, std::move(group));
  }
  std::vector<Connection::Work> works;
  while (!waiters_.empty() && !waiters_.front().batch.empty() && works.size() < kMaxMerged) {
    Waiter w = std::move(waiters_.front());
    waiters_.pop_front();
    works.push_back(Connection::Work{std::move(w.batch), std::move(w.done)});
  }
  if (works.size() > 1) stats_.merged += works.size();
  slot.leased = true;
  Connection* conn = slot.conn.get();
  for (size_t i = 0; i < works.size(); ++i) {
    bool last = i + 1 == works.size();
    works[i].done = [this, conn, last, done = std::move(works[i].done)](Reply r) {
      noteReply(conn, r);
      if (last) release(conn);
      done(std::move(r));
    };
  }
  conn->executeMany(std::move(works));
}

void Pool::runGrouped(Slot& slot, std::vector<Waiter> group) {
  slot.leased = true;
  Connection* conn = slot.conn.get();
  std::vector<Statement> batch{Statement{"BEGIN", {}}};
  std::vector<size_t> sizes;
  for (Waiter& w : group) {
    sizes.push_back(w.batch.size());
    for (Statement& st : w.batch) batch.push_back(st);
  }
  batch.push_back(Statement{"COMMIT", {}});
  auto shared = std::make_shared<std::vector<Waiter>>(std::move(group));
  conn->execute(std::move(batch), [this, conn, shared, sizes](Reply r) {
    noteReply(conn, r);
    bool committed = r.ok() && !r.results.empty() && r.results.back().commandStatus() == "COMMIT";
    if (!committed) {
      // Run each batch again on its own (at the front, in order): only the
      // one at fault sees its error.
      ++stats_.group_retries;
      for (auto it = shared->rbegin(); it != shared->rend(); ++it) {
        it->groupable = false;
        waiters_.push_front(std::move(*it));
      }
      release(conn);  // rolls back first if needed, then serves the queue
      return;
    }
    stats_.grouped += shared->size();
    release(conn);
    size_t at = 1;  // after BEGIN
    for (size_t i = 0; i < shared->size(); ++i) {
      Reply part;
      for (size_t k = 0; k < sizes[i]; ++k) part.results.push_back(r.results[at++]);
      (*shared)[i].done(std::move(part));
    }
  });
}

void Pool::armWaiterTimer() {
  if (waiters_.empty()) {
    uv_timer_stop(waiter_timer_.get());
    return;
  }
  uint64_t next = waiters_.front().deadline_ms;
  for (const Waiter& w : waiters_) next = std::min(next, w.deadline_ms);
  uint64_t now = nowMs(loop_);
  uv_timer_start(
      waiter_timer_.get(), [](uv_timer_t* t) { static_cast<Pool*>(t->data)->expireWaiters(); },
      next > now ? next - now : 0, 0);
}

void Pool::expireWaiters() {
  uint64_t now = nowMs(loop_);
  std::deque<Waiter> expired;
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (it->deadline_ms <= now) {
      expired.push_back(std::move(*it));
      it = waiters_.erase(it);
    } else {
      ++it;
    }
  }
  armWaiterTimer();
  for (Waiter& w : expired) {
    ++stats_.acquire_timeouts;
    std::string why = last_error_.empty() ? "all connections busy" : last_error_;
    DbError e{ErrorKind::kTransient, "08006",
              "no PostgreSQL connection became available in time: " + why};
    if (!w.batch.empty())
      w.done(Reply{{}, std::move(e)});
    else
      w.grant(nullptr, std::move(e));
  }
}

void Pool::release(Connection* conn) {
  Slot* s = slotOf(conn);
  assert(s && s->leased);
  if (conn->state() == Connection::State::kIdle &&
      conn->transactionStatus() != PQTRANS_IDLE) {
    // Handed back inside a transaction: roll back before anyone reuses it.
    conn->execute({Statement{"ROLLBACK", {}}}, [this, s](Reply) {
      s->leased = false;
      if (s->conn->state() == Connection::State::kDisconnected)
        scheduleReconnect(*s, connectionError("connection lost during ROLLBACK"));
      else
        serveWaiters();
    });
    return;
  }
  s->leased = false;
  if (conn->state() == Connection::State::kDisconnected) {
    if (!uv_is_active(s->retry.handle()))
      scheduleReconnect(*s, connectionError(last_error_.empty() ? "connection lost" : last_error_));
    return;
  }
  serveWaiters();
}

void Pool::execute(Connection* conn, std::vector<Statement> batch, ReplyCallback done) {
  conn->execute(std::move(batch), [this, conn, done = std::move(done)](Reply r) {
    noteReply(conn, r);
    release(conn);
    done(std::move(r));
  });
}

void Pool::noteReply(Connection* conn, const Reply& r) {
  if (!r.error) return;
  ++stats_.errors;
  if (conn->state() == Connection::State::kDisconnected) last_error_ = r.error->message;
}

void Pool::query(Statement s, ReplyCallback done) {
  pipeline({std::move(s)}, std::move(done));
}

void Pool::pipeline(std::vector<Statement> batch, ReplyCallback done) {
  assert(!batch.empty());
  bool mergeable = batch.size() > 1 || !batch[0].params.empty();
  if (!mergeable) {
    acquire(options_.acquire_timeout,
            [this, batch = std::move(batch), done = std::move(done)](
                Connection* c, std::optional<DbError> err) mutable {
              if (err) return done(Reply{{}, std::move(err)});
              execute(c, std::move(batch), std::move(done));
            });
    return;
  }
  enqueueBatch(std::move(batch), std::move(done), false);
}

void Pool::pipelineGrouped(std::vector<Statement> batch, ReplyCallback done) {
  assert(!batch.empty());
  enqueueBatch(std::move(batch), std::move(done), true);
}

void Pool::enqueueBatch(std::vector<Statement> batch, ReplyCallback done, bool groupable) {
  Waiter w;
  w.deadline_ms = nowMs(loop_) + static_cast<uint64_t>(options_.acquire_timeout.count());
  w.batch = std::move(batch);
  w.done = std::move(done);
  w.groupable = groupable;
  waiters_.push_back(std::move(w));
  serveWaiters();
  armWaiterTimer();
}

void Pool::transaction(TransactionCallback done) {
  acquire(options_.acquire_timeout,
          [this, done = std::move(done)](Connection* c, std::optional<DbError> err) {
            if (err) {
              done(nullptr, std::move(err));
              return;
            }
            done(TransactionPtr(new Transaction(self_, c)), std::nullopt);
          });
}

void Pool::ping(std::chrono::milliseconds timeout,
                std::function<void(std::optional<DbError>)> done) {
  acquire(timeout, [this, done = std::move(done)](Connection* c, std::optional<DbError> err) {
    if (err) {
      done(std::move(err));
      return;
    }
    execute(c, {Statement{"SELECT 1", {}}}, [done](Reply r) { done(std::move(r.error)); });
  });
}

void Pool::onTiming(const std::vector<Statement>& batch, double ms) {
  ++stats_.batches;
  if (options_.slow_query.count() <= 0 || ms < static_cast<double>(options_.slow_query.count()))
    return;
  ++stats_.slow_queries;
  log::warn("db", "slow query: {:.1f} ms for {} statement(s), first: {}", ms, batch.size(),
            firstLine(batch.front().sql));
}

PoolStats Pool::stats() const {
  PoolStats s = stats_;
  s.waiting = waiters_.size();
  for (auto& slot : slots_) {
    auto st = slot->conn->state();
    if (st == Connection::State::kIdle || st == Connection::State::kBusy) ++s.connections;
    if (slot->leased) ++s.busy;
  }
  return s;
}

// ---- Transaction ----

Transaction::Transaction(std::weak_ptr<Pool*> pool, Connection* conn)
    : pool_(std::move(pool)), conn_(conn), session_(conn->session()) {}

Transaction::~Transaction() { release(); }

void Transaction::release() {
  if (!conn_) return;
  Connection* c = std::exchange(conn_, nullptr);
  if (auto p = pool_.lock()) (*p)->release(c);
}

void Transaction::run(std::vector<Statement> batch, ReplyCallback done, OnError on_error) {
  auto pool = pool_.lock();
  if (!conn_ || !pool) {
    done(Reply{{}, connectionError("transaction already finished")});
    return;
  }
  if (conn_->state() != Connection::State::kIdle || conn_->session() != session_) {
    // The connection broke while the transaction waited for its caller: the
    // server rolled the transaction back with the session.
    release();
    done(Reply{{}, connectionError("connection lost during the transaction; it was rolled back")});
    return;
  }
  bool with_begin = !begun_;
  if (with_begin) batch.insert(batch.begin(), Statement{"BEGIN", {}});
  begun_ = true;
  auto self = shared_from_this();
  conn_->execute(std::move(batch), [self, with_begin, on_error, done = std::move(done)](Reply r) {
    if (auto p = self->pool_.lock()) (*p)->noteReply(self->conn_, r);
    if (r.ok() && with_begin) r.results.erase(r.results.begin());
    if (r.error) {
      bool begin_failed = with_begin && (!r.failed_at || *r.failed_at == 0);
      if (r.failed_at && with_begin && *r.failed_at > 0) --*r.failed_at;
      bool keep = on_error == OnError::kKeep && !begin_failed && r.failed_at &&
                  self->conn_->state() == Connection::State::kIdle &&
                  self->conn_->transactionStatus() == PQTRANS_INERROR;
      if (!keep) self->release();  // rolls back and frees the connection
    }
    done(std::move(r));
  });
}

void Transaction::commit(std::vector<Statement> last, ReplyCallback done, OnError on_error) {
  size_t n = last.size();
  last.push_back(Statement{"COMMIT", {}});
  auto self = shared_from_this();
  run(
      std::move(last),
      [self, n, done = std::move(done)](Reply r) {
        if (r.ok()) {
          // COMMIT of a transaction that failed earlier answers "ROLLBACK".
          if (r.results.size() != n + 1 || r.results.back().commandStatus() != "COMMIT") {
            r.error = DbError{ErrorKind::kPermanent, "25P02",
                              "transaction was rolled back instead of committed"};
            r.results.clear();
          } else {
            r.results.pop_back();
          }
          self->release();
        } else if (r.failed_at && *r.failed_at >= n) {
          self->release();  // COMMIT itself failed: the transaction is over
        }
        done(std::move(r));
      },
      on_error);
}

void Transaction::rollback() { release(); }

}  // namespace clusterd::db
