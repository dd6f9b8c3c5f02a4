// Implementation of queue/redis.h: URL parsing, reply views and the
// reconnecting hiredis connection.
//
// Design: the connection is a small state machine. kConnecting (TCP connect
// under a timeout) -> kHandshake (AUTH, SELECT, CLIENT SETNAME, then PING until
// Redis no longer answers LOADING; after a READONLY refusal, also until ROLE
// says master) -> kReady. Any failure goes to kBackoff,
// whose timer starts the next attempt. Commands issued while the very first
// attempt runs are queued; after an attempt failed they fail fast, so a caller
// never waits on a Redis that is down. Fail-fast errors are delivered from a
// zero timer, never from inside command(), so callers need not be reentrant.
#include "queue/redis.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <fmt/format.h>

#include <cassert>
#include <cstdlib>
#include <random>

#include "common/log.h"
#include "queue/uv_redis_adapter.h"

namespace clusterd::queue {

// ---- URL ----

namespace {

// `url` with whatever stands before the last '@' of its authority replaced by
// "***", so a message about a bad URL never carries its password.
std::string withoutCredentials(const std::string& url) {
  auto scheme = url.find("://");
  size_t start = scheme == std::string::npos ? 0 : scheme + 3;
  auto at = url.rfind('@');
  if (at == std::string::npos || at < start) return url;
  return url.substr(0, start) + "***" + url.substr(at);
}

}  // namespace

Result<RedisAddress> parseRedisUrl(const std::string& url) {
  RedisAddress a;
  auto bad = [&](const std::string& why) {
    return Error{fmt::format("invalid Redis URL '{}': {} (expected redis://[user:password@]host[:port][/db] "
                             "or unix:///path)", withoutCredentials(url), why)};
  };
  std::string rest;
  if (url.rfind("redis://", 0) == 0) {
    rest = url.substr(8);
  } else if (url.rfind("unix://", 0) == 0) {
    rest = url.substr(7);
    auto q = rest.find("?db=");
    if (q != std::string::npos) {
      a.db = std::atoi(rest.c_str() + q + 4);
      rest.resize(q);
    }
    if (rest.empty() || rest[0] != '/') return bad("a unix socket path must be absolute");
    a.unix_path = rest;
    a.text = url;
    return a;
  } else {
    return bad("unknown scheme");
  }
  auto at = rest.rfind('@');
  std::string shown = rest;
  if (at != std::string::npos) {
    std::string cred = rest.substr(0, at);
    rest = rest.substr(at + 1);
    auto colon = cred.find(':');
    if (colon == std::string::npos) {
      a.password = cred;
    } else {
      a.user = cred.substr(0, colon);
      a.password = cred.substr(colon + 1);
    }
    shown = rest;
  }
  auto slash = rest.find('/');
  if (slash != std::string::npos) {
    std::string db = rest.substr(slash + 1);
    rest.resize(slash);
    if (!db.empty()) {
      char* end = nullptr;
      long v = std::strtol(db.c_str(), &end, 10);
      if (*end || v < 0) return bad("database must be a number");
      a.db = static_cast<int>(v);
    }
  }
  auto colon = rest.rfind(':');
  if (colon != std::string::npos && rest.find(']') == std::string::npos) {
    char* end = nullptr;
    long p = std::strtol(rest.c_str() + colon + 1, &end, 10);
    if (*end || p <= 0 || p > 65535) return bad("port must be 1-65535");
    a.port = static_cast<int>(p);
    rest.resize(colon);
  }
  if (!rest.empty()) a.host = rest;
  a.text = "redis://" + shown;
  return a;
}

// ---- Reply ----

bool Reply::isError() const { return !r_ || r_->type == REDIS_REPLY_ERROR; }
bool Reply::isNil() const { return r_ && r_->type == REDIS_REPLY_NIL; }
bool Reply::isArray() const { return r_ && r_->type == REDIS_REPLY_ARRAY; }
bool Reply::isInteger() const { return r_ && r_->type == REDIS_REPLY_INTEGER; }

std::string_view Reply::error() const {
  if (!r_) return error_.empty() ? std::string_view("no reply") : std::string_view(error_);
  if (r_->type == REDIS_REPLY_ERROR) return {r_->str, r_->len};
  return {};
}

std::string_view Reply::view() const {
  if (r_ && (r_->type == REDIS_REPLY_STRING || r_->type == REDIS_REPLY_STATUS)) return {r_->str, r_->len};
  return {};
}

std::string Reply::str() const {
  if (r_ && r_->type == REDIS_REPLY_INTEGER) return std::to_string(r_->integer);
  return std::string(view());
}

long long Reply::integer() const {
  if (!r_) return 0;
  if (r_->type == REDIS_REPLY_INTEGER) return r_->integer;
  if (r_->type == REDIS_REPLY_STRING) return std::strtoll(std::string(r_->str, r_->len).c_str(), nullptr, 10);
  return 0;
}

size_t Reply::size() const { return isArray() ? r_->elements : 0; }

Reply Reply::at(size_t i) const {
  assert(i < size());
  return Reply(r_->element[i]);
}

// ---- Connection ----

struct RedisConnection::Pending {
  std::shared_ptr<bool> alive;
  RedisConnection* conn;
  ReplyCallback cb;
};

RedisConnection::RedisConnection(uv_loop_t* loop, RedisAddress address, RedisOptions options)
    : loop_(loop), address_(std::move(address)), options_(std::move(options)) {
  uv_timer_init(loop_, timer_.get());
  timer_->data = this;
  uv_timer_init(loop_, fail_timer_.get());
  fail_timer_->data = this;
}

RedisConnection::~RedisConnection() {
  *alive_ = false;
  freeContext();
}

void RedisConnection::freeContext() {
  if (!ac_) return;
  redisAsyncContext* ac = ac_;
  ac_ = nullptr;
  ac->data = nullptr;
  redisAsyncFree(ac);  // runs pending callbacks with no reply
}

void RedisConnection::connect() {
  if (state_ != State::kIdle) return;
  attempt_failed_ = false;
  startAttempt();
}

void RedisConnection::close() {
  uv_timer_stop(timer_.get());
  state_ = State::kIdle;
  freeContext();
  for (auto& q : queued_) failLater(std::move(q.cb), "connection closed");
  queued_.clear();
}

void RedisConnection::startAttempt() {
  state_ = State::kConnecting;
  redisAsyncContext* ac = address_.unix_path.empty()
                              ? redisAsyncConnect(address_.host.c_str(), address_.port)
                              : redisAsyncConnectUnix(address_.unix_path.c_str());
  if (!ac) return attemptFailed("out of memory");
  if (ac->err) {
    std::string why = ac->errstr;
    redisAsyncFree(ac);
    return attemptFailed(why);
  }
  if (!detail::uvRedisAttach(ac, loop_)) {
    redisAsyncFree(ac);
    return attemptFailed("cannot watch the socket");
  }
  ac_ = ac;
  ac->data = this;
  redisAsyncSetConnectCallback(ac, &RedisConnection::onConnected);
  redisAsyncSetDisconnectCallback(ac, &RedisConnection::onDisconnected);
  connect_deadline_checked_ = false;
  connect_due_ms_ = uv_now(loop_) + static_cast<uint64_t>(options_.connect_timeout_ms);
  uv_timer_start(timer_.get(), &RedisConnection::onConnectDeadline, options_.connect_timeout_ms, 0);
}

// libuv runs due timers before it reads the sockets, so when the loop was
// held up (a long synchronous task, a stopped process) the deadline fires
// before an answer already waiting is read. A deadline that fires well past
// its time is therefore given one more full period, in which the loop reads
// the socket, before the attempt is declared failed.
void RedisConnection::onConnectDeadline(uv_timer_t* t) {
  auto* self = static_cast<RedisConnection*>(t->data);
  if (self->state_ != State::kConnecting && self->state_ != State::kHandshake) return;
  constexpr uint64_t kLateMs = 100;
  if (!self->connect_deadline_checked_ && uv_now(self->loop_) > self->connect_due_ms_ + kLateMs) {
    self->connect_deadline_checked_ = true;
    uv_timer_start(t, &RedisConnection::onConnectDeadline, self->options_.connect_timeout_ms, 0);
    return;
  }
  self->freeContext();
  self->attemptFailed(fmt::format("no answer within {} ms", self->options_.connect_timeout_ms));
}

void RedisConnection::onConnected(const redisAsyncContext* ac, int status) {
  auto* self = static_cast<RedisConnection*>(ac->data);
  if (!self) return;
  if (status != REDIS_OK) {
    std::string why = ac->errstr;
    self->ac_ = nullptr;  // hiredis frees the context after this callback
    self->attemptFailed(why);
    return;
  }
  self->handshake();
}

void RedisConnection::onDisconnected(const redisAsyncContext* ac, int status) {
  auto* self = static_cast<RedisConnection*>(ac->data);
  if (!self) return;
  std::string why = status == REDIS_OK ? "closed" : (ac->errstr[0] ? ac->errstr : "connection lost");
  self->ac_ = nullptr;
  bool was = self->state_ == State::kReady || self->dropping_;
  self->dropping_ = false;
  if (self->state_ == State::kIdle) return;
  self->attemptFailed(why);
  if (was)
    for (auto& h : self->lost_hooks_) h(why);
}

void RedisConnection::attemptFailed(const std::string& why) {
  last_error_ = fmt::format("cannot reach Redis at {}: {}", address_.text, why);
  if (state_ == State::kReady || !attempt_failed_)
    log::warn("queue", "{}; reconnecting", last_error_);
  attempt_failed_ = true;
  state_ = State::kBackoff;
  for (auto& q : queued_) failLater(std::move(q.cb), last_error_);
  queued_.clear();
  if (ac_) freeContext();
  backoff_ms_ = backoff_ms_ == 0 ? options_.backoff_min_ms : std::min(backoff_ms_ * 2, options_.backoff_max_ms);
  int delay = backoff_ms_ / 2 + static_cast<int>(rng_() % static_cast<unsigned>(backoff_ms_ / 2 + 1));
  uv_timer_start(
      timer_.get(),
      [](uv_timer_t* t) {
        auto* self = static_cast<RedisConnection*>(t->data);
        if (self->state_ != State::kBackoff) return;
        ++self->reconnects_;
        self->startAttempt();
      },
      delay, 0);
}

void RedisConnection::handshake() {
  state_ = State::kHandshake;
  if (!address_.password.empty()) {
    std::vector<std::string> auth{"AUTH"};
    if (!address_.user.empty()) auth.push_back(address_.user);
    auth.push_back(address_.password);
    send(std::move(auth), [this](const Reply& r) {
      if (r.isError()) log::error("queue", "Redis at {} refused AUTH: {}", address_.text, r.error());
    });
  }
  if (address_.db != 0) send({"SELECT", std::to_string(address_.db)}, [](const Reply&) {});
  if (!options_.client_name.empty()) send({"CLIENT", "SETNAME", options_.client_name}, [](const Reply&) {});
  send({"PING"}, [this](const Reply& r) {
    if (state_ != State::kHandshake) return;
    if (!r.isError() && !expect_primary_) return becomeReady();
    if (!r.isError()) {
      // It refused a write before: ready again only once it is a primary.
      return send({"ROLE"}, [this](const Reply& role) {
        if (state_ != State::kHandshake) return;
        if (!role.isError() && role.size() > 0 && role.at(0).view() == "master") {
          expect_primary_ = false;
          return becomeReady();
        }
        freeContext();
        attemptFailed("it is a read-only replica; waiting for a primary at this address");
      });
    }
    std::string_view e = r.error();
    if (e.rfind("LOADING", 0) == 0) {
      // Redis is reading its data set back after a restart: ask again soon.
      uv_timer_start(
          timer_.get(),
          [](uv_timer_t* t) {
            auto* self = static_cast<RedisConnection*>(t->data);
            if (self->state_ == State::kHandshake) self->handshake();
          },
          100, 0);
      return;
    }
    freeContext();
    attemptFailed(std::string(e));
  });
}

void RedisConnection::becomeReady() {
  uv_timer_stop(timer_.get());
  state_ = State::kReady;
  backoff_ms_ = 0;
  if (attempt_failed_) log::info("queue", "connected to Redis at {}", address_.text);
  attempt_failed_ = false;
  was_ready_ = true;
  for (auto& h : ready_hooks_) h();
  auto queued = std::move(queued_);
  queued_.clear();
  for (auto& q : queued) send(std::move(q.argv), std::move(q.cb));
}

void RedisConnection::command(std::vector<std::string> argv, ReplyCallback cb) {
  if (state_ == State::kReady) return send(std::move(argv), std::move(cb));
  if (state_ == State::kIdle) connect();
  if (!attempt_failed_ && (state_ == State::kConnecting || state_ == State::kHandshake)) {
    queued_.push_back({std::move(argv), std::move(cb)});
    return;
  }
  failLater(std::move(cb), last_error_.empty() ? "Redis connection not ready" : last_error_);
}

void RedisConnection::send(std::vector<std::string> argv, ReplyCallback cb) {
  assert(ac_);
  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
  ptrs.reserve(argv.size());
  lens.reserve(argv.size());
  for (auto& a : argv) {
    ptrs.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* p = new Pending{alive_, this, std::move(cb)};
  int rc = redisAsyncCommandArgv(ac_, &RedisConnection::onReply, p, static_cast<int>(argv.size()),
                                 ptrs.data(), lens.data());
  if (rc != REDIS_OK) {
    failLater(std::move(p->cb), "Redis connection is closing");
    delete p;
  }
}

void RedisConnection::onReply(redisAsyncContext*, void* reply, void* privdata) {
  std::unique_ptr<Pending> p(static_cast<Pending*>(privdata));
  if (!*p->alive || !p->cb) return;
  if (!reply) {
    RedisConnection* self = p->conn;
    std::string why = self->last_error_.empty() ? "connection to Redis lost" : self->last_error_;
    if (self->state_ == State::kIdle) why = "connection closed";
    p->cb(Reply(fmt::format("{} (the command may or may not have run)", why)));
    return;
  }
  Reply r(static_cast<const redisReply*>(reply));
  RedisConnection* self = p->conn;
  // A write refused as READONLY: this server became a replica (failover).
  // Reconnect, so an address that now leads to the new primary (DNS, a
  // virtual IP, a proxy) is looked up again; until then commands fail fast.
  bool readonly = r.isError() && r.error().rfind("READONLY", 0) == 0;
  p->cb(r);
  if (readonly && *p->alive && self->state_ == State::kReady && self->ac_) {
    log::warn("queue", "Redis at {} is a read-only replica now (failover?); reconnecting", self->address_.text);
    self->state_ = State::kBackoff;  // no new commands on this socket
    self->dropping_ = true;
    self->expect_primary_ = true;
    self->last_error_ = fmt::format("Redis at {} is a read-only replica", self->address_.text);
    redisAsyncDisconnect(self->ac_);  // after the replies still due
  }
}

void RedisConnection::failLater(ReplyCallback cb, std::string message) {
  if (!cb) return;
  failures_.emplace_back(std::move(cb), std::move(message));
  uv_timer_start(
      fail_timer_.get(), [](uv_timer_t* t) { static_cast<RedisConnection*>(t->data)->flushFailures(); }, 0, 0);
}

void RedisConnection::flushFailures() {
  auto failures = std::move(failures_);
  failures_.clear();
  std::weak_ptr<bool> alive = alive_;
  for (auto& [cb, msg] : failures) {
    cb(Reply(msg));
    if (alive.expired()) return;  // a callback destroyed us
  }
}

}  // namespace clusterd::queue
