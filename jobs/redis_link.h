// A minimal async Redis connection for the product cache: hiredis on the
// libuv loop, reconnecting with backoff, commands as argv with a callback.
// The cache treats Redis as optional: while the link is down, commands
// answer "no reply" at once and reads fall through to PostgreSQL.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/uv_handle.h"

struct redisAsyncContext;
struct redisReply;

namespace clusterd::jobs {

struct RedisAddress {
  std::string host = "127.0.0.1";
  int port = 6379;
  int db = 0;
};

// redis://[:password@]host[:port][/db] (the password is not supported here).
Result<RedisAddress> parseRedisUrl(const std::string& url);

class RedisLink {
 public:
  // The reply, or nullptr when Redis is unreachable or the link dropped.
  using ReplyFn = std::function<void(redisReply*)>;

  RedisLink(uv_loop_t* loop, RedisAddress address);
  ~RedisLink();
  RedisLink(const RedisLink&) = delete;
  RedisLink& operator=(const RedisLink&) = delete;

  void start();
  void command(const std::vector<std::string>& argv, ReplyFn done);
  bool connected() const { return connected_; }

 private:
  static void onConnect(const redisAsyncContext* c, int status);
  static void onDisconnect(const redisAsyncContext* c, int status);
  void connect();
  void scheduleReconnect();

  uv_loop_t* loop_;
  RedisAddress address_;
  redisAsyncContext* ctx_ = nullptr;
  bool connected_ = false;
  int failures_ = 0;
  UvHandle<uv_timer_t> retry_;
  std::shared_ptr<RedisLink*> self_;  // callbacks check it: the link may be gone
};

}  // namespace clusterd::jobs
