// An asynchronous Redis connection on a libuv loop (hiredis async API).
//
// Promises: commands are pipelined in the order they are issued and each
// callback runs exactly once on the loop thread (never from inside
// command()): with the reply, or with an error reply whose text says what went
// wrong. While Redis is unreachable, commands fail fast with an error naming
// the address; the connection reconnects on its own with jittered exponential
// backoff, waits out LOADING after a restart, drops a server that turned into
// a read-only replica (READONLY) until the address leads to a primary again,
// and tells its owner through
// onReady() each time it is usable again. Destroying the object never calls
// a pending callback.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/uv_handle.h"

struct redisReply;
struct redisAsyncContext;

namespace clusterd::queue {

// redis://[user:password@]host[:port][/db] or unix:///path/to/socket[?db=N].
struct RedisAddress {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string unix_path;
  std::string user;
  std::string password;
  int db = 0;
  std::string text;  // as given, without the password, for messages
};
Result<RedisAddress> parseRedisUrl(const std::string& url);

// A read-only view of one reply, valid only during the callback it is given
// to. Errors made by the connection itself (not by Redis) are error replies.
class Reply {
 public:
  Reply(const redisReply* r) : r_(r) {}
  explicit Reply(std::string local_error) : error_(std::move(local_error)) {}

  bool isError() const;
  bool isNil() const;
  bool isArray() const;
  bool isInteger() const;
  // Error text for error replies; empty otherwise.
  std::string_view error() const;
  // String/status text, or the decimal text of an integer.
  std::string str() const;
  std::string_view view() const;  // string/status only, no copy
  long long integer() const;      // integers, or strings holding a number
  size_t size() const;            // array length (0 otherwise)
  Reply at(size_t i) const;

 private:
  const redisReply* r_ = nullptr;
  std::string error_;
};

using ReplyCallback = std::function<void(const Reply&)>;

struct RedisOptions {
  int connect_timeout_ms = 2000;
  int backoff_min_ms = 50;
  int backoff_max_ms = 2000;
  std::string client_name;  // CLIENT SETNAME, for `CLIENT LIST`
};

class RedisConnection {
 public:
  RedisConnection(uv_loop_t* loop, RedisAddress address, RedisOptions options = {});
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // Starts connecting (idempotent). Commands issued before the first attempt
  // has finished wait for it; after a failed attempt they fail fast.
  void connect();
  // Stops reconnecting and closes the socket; pending callbacks get an
  // error reply. connect() may be called again later.
  void close();

  void command(std::vector<std::string> argv, ReplyCallback cb);

  bool ready() const { return state_ == State::kReady; }
  const RedisAddress& address() const { return address_; }
  const std::string& lastError() const { return last_error_; }
  uint64_t reconnects() const { return reconnects_; }

  // Runs after every successful (re)connection, before queued commands are
  // sent; the hook may issue commands itself.
  void onReady(std::function<void()> hook) { ready_hooks_.push_back(std::move(hook)); }
  // Runs when an established connection is lost.
  void onLost(std::function<void(const std::string&)> hook) { lost_hooks_.push_back(std::move(hook)); }

 private:
  enum class State { kIdle, kConnecting, kHandshake, kReady, kBackoff };
  struct Pending;
  struct Queued {
    std::vector<std::string> argv;
    ReplyCallback cb;
  };

  void startAttempt();
  void attemptFailed(const std::string& why);
  void handshake();
  void becomeReady();
  void send(std::vector<std::string> argv, ReplyCallback cb);
  void failLater(ReplyCallback cb, std::string message);
  void flushFailures();
  void freeContext();
  static void onConnected(const redisAsyncContext* ac, int status);
  static void onConnectDeadline(uv_timer_t* t);
  static void onDisconnected(const redisAsyncContext* ac, int status);
  static void onReply(redisAsyncContext* ac, void* reply, void* privdata);

  uv_loop_t* loop_;
  RedisAddress address_;
  RedisOptions options_;
  State state_ = State::kIdle;
  redisAsyncContext* ac_ = nullptr;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  UvHandle<uv_timer_t> timer_;       // connect timeout, backoff, LOADING retry
  UvHandle<uv_timer_t> fail_timer_;  // delivers fail-fast errors off the caller's stack
  std::vector<std::pair<ReplyCallback, std::string>> failures_;
  std::vector<Queued> queued_;  // issued during the first attempt
  bool attempt_failed_ = false;
  int backoff_ms_ = 0;
  std::minstd_rand rng_{std::random_device{}()};
  uint64_t reconnects_ = 0;
  bool was_ready_ = false;
  uint64_t connect_due_ms_ = 0;           // loop time the connect deadline is due
  bool connect_deadline_checked_ = false;  // a late deadline already got its second period
  bool dropping_ = false;        // closing a ready socket after a READONLY reply
  bool expect_primary_ = false;  // a write was refused as READONLY: wait for a primary
  std::string last_error_;
  std::vector<std::function<void()>> ready_hooks_;
  std::vector<std::function<void(const std::string&)>> lost_hooks_;
};

}  // namespace clusterd::queue
