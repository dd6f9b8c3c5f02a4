// worker::RedisLink: the worker's own small Redis connection (hiredis async
// on the libuv loop) for the HTTP front's needs: health pings and the shared
// rate-limit script. Job traffic goes through the queue module's client.
//
// Design: Redis answers in order, so a command that has waited longer than
// `command_timeout` means the connection is stuck: the link fails every
// pending command with a timeout and reconnects. While disconnected,
// commands fail at once (callers fail open or report 503) and the link
// reconnects with exponential backoff (100 ms .. 2 s). Callbacks never run
// after the link is destroyed.
#pragma once

#include <hiredis/async.h>
#include <uv.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/result.h"
#include "common/uv_handle.h"

namespace clusterd::worker {

// A Redis reply, flattened: enough for scripts that return integers,
// strings and arrays of them.
struct RedisValue {
  enum class Type { kNil, kInteger, kString, kStatus, kArray, kError };
  Type type = Type::kNil;
  long long integer = 0;
  std::string str;
  std::vector<RedisValue> elements;
};

struct RedisUrl {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string password;
  int db = 0;
};
// Parses redis://[:password@]host[:port][/db]; an error names the URL.
Result<RedisUrl> parseRedisUrl(const std::string& url);

class RedisLink {
 public:
  // `error` is empty on success.
  using Callback = std::function<void(const std::string& error, const RedisValue& reply)>;

  RedisLink(uv_loop_t* loop, RedisUrl url,
            std::chrono::milliseconds command_timeout = std::chrono::milliseconds(1000));
  ~RedisLink();
  RedisLink(const RedisLink&) = delete;
  RedisLink& operator=(const RedisLink&) = delete;

  // Connects in the background; `on_connected` runs after each (re)connect.
  void start(std::function<void()> on_connected);
  bool connected() const { return state_ == State::kConnected; }
  void command(const std::vector<std::string>& argv, Callback cb);
  // Runs a Lua script: the first call loads it (SCRIPT LOAD) and runs it
  // with EVAL, later calls use EVALSHA, falling back to EVAL on NOSCRIPT
  // (after a Redis restart). `script` must be a string with static storage:
  // its address identifies it.
  void eval(const char* script, const std::vector<std::string>& keys,
            const std::vector<std::string>& args, Callback cb);
  void stop();

 private:
  enum class State { kIdle, kConnecting, kConnected, kWaiting, kStopped };
  struct Pending {
    Callback cb;
    uint64_t sent_ms;
  };

  void connect();
  void onConnect(int status);
  void onDisconnect(int status);
  void scheduleReconnect();
  void failAll(const std::string& why);
  void checkStuck();
  static void onReply(redisAsyncContext* c, void* r, void* privdata);

  uv_loop_t* loop_;
  RedisUrl url_;
  std::chrono::milliseconds timeout_;
  redisAsyncContext* ctx_ = nullptr;
  State state_ = State::kIdle;
  std::deque<Pending> pending_;
  UvHandle<uv_timer_t> retry_timer_;
  UvHandle<uv_timer_t> stuck_timer_;
  uint64_t backoff_ms_ = 100;
  std::function<void()> on_connected_;
  std::string last_error_;
  std::unordered_map<const char*, std::string> shas_;  // script -> SHA1, once loaded
};

}  // namespace clusterd::worker
