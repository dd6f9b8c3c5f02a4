// worker::RedisLink (see redis_link.h).
#include "worker/redis_link.h"

#include <hiredis/adapters/libuv.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <cassert>

#include <fmt/format.h>

#include "common/log.h"

namespace clusterd::worker {

Result<RedisUrl> parseRedisUrl(const std::string& url) {
  RedisUrl out;
  std::string rest = url;
  const std::string scheme = "redis://";
  if (rest.rfind(scheme, 0) != 0) {
    return Error{fmt::format("Redis URL '{}' must start with redis:// (e.g. redis://127.0.0.1:6379)", url)};
  }
  rest = rest.substr(scheme.size());
  if (size_t at = rest.rfind('@'); at != std::string::npos) {
    std::string auth = rest.substr(0, at);
    rest = rest.substr(at + 1);
    size_t colon = auth.find(':');
    out.password = colon == std::string::npos ? auth : auth.substr(colon + 1);
  }
  if (size_t slash = rest.find('/'); slash != std::string::npos) {
    std::string db = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
    if (!db.empty()) {
      try {
        out.db = std::stoi(db);
      } catch (const std::exception&) {
        return Error{fmt::format("Redis URL '{}': database '{}' is not a number", url, db)};
      }
    }
  }
  if (size_t colon = rest.rfind(':'); colon != std::string::npos && rest.find(']') == std::string::npos) {
    std::string port = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
    try {
      out.port = std::stoi(port);
    } catch (const std::exception&) {
      return Error{fmt::format("Redis URL '{}': port '{}' is not a number", url, port)};
    }
  }
  if (!rest.empty()) out.host = rest;
  if (out.port <= 0 || out.port > 65535) {
    return Error{fmt::format("Redis URL '{}': port out of range", url)};
  }
  return out;
}

namespace {
RedisValue convert(const redisReply* r) {
  RedisValue v;
  switch (r->type) {
    case REDIS_REPLY_INTEGER:
      v.type = RedisValue::Type::kInteger;
      v.integer = r->integer;
      break;
    case REDIS_REPLY_STRING:
      v.type = RedisValue::Type::kString;
      v.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      v.type = RedisValue::Type::kStatus;
      v.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      v.type = RedisValue::Type::kError;
      v.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ARRAY:
      v.type = RedisValue::Type::kArray;
      for (size_t i = 0; i < r->elements; ++i) v.elements.push_back(convert(r->element[i]));
      break;
    default:
      break;
  }
  return v;
}
}  // namespace

RedisLink::RedisLink(uv_loop_t* loop, RedisUrl url, std::chrono::milliseconds command_timeout)
    : loop_(loop), url_(std::move(url)), timeout_(command_timeout) {
  uv_timer_init(loop_, retry_timer_.get());
  retry_timer_->data = this;
  uv_timer_init(loop_, stuck_timer_.get());
  stuck_timer_->data = this;
}

RedisLink::~RedisLink() { stop(); }

void RedisLink::start(std::function<void()> on_connected) {
  on_connected_ = std::move(on_connected);
  uint64_t period = std::max<uint64_t>(static_cast<uint64_t>(timeout_.count()) / 4, 10);
  uv_timer_start(
      stuck_timer_.get(), [](uv_timer_t* t) { static_cast<RedisLink*>(t->data)->checkStuck(); },
      period, period);
  uv_unref(stuck_timer_.handle());
  connect();
}

void RedisLink::stop() {
  if (state_ == State::kStopped) return;
  state_ = State::kStopped;
  if (retry_timer_.initialized()) uv_timer_stop(retry_timer_.get());
  if (stuck_timer_.initialized()) uv_timer_stop(stuck_timer_.get());
  pending_.clear();  // callbacks are dropped, never run after stop
  if (ctx_) {
    redisAsyncContext* c = ctx_;
    ctx_ = nullptr;
    c->data = nullptr;
    redisAsyncFree(c);
  }
}

void RedisLink::connect() {
  if (state_ == State::kStopped) return;
  state_ = State::kConnecting;
  ctx_ = redisAsyncConnect(url_.host.c_str(), url_.port);
  if (!ctx_ || ctx_->err) {
    last_error_ = ctx_ ? ctx_->errstr : "out of memory";
    if (ctx_) redisAsyncFree(ctx_);
    ctx_ = nullptr;
    scheduleReconnect();
    return;
  }
  ctx_->data = this;
  redisLibuvAttach(ctx_, loop_);
  redisAsyncSetConnectCallback(ctx_, [](const redisAsyncContext* c, int status) {
    if (c->data) static_cast<RedisLink*>(c->data)->onConnect(status);
  });
  redisAsyncSetDisconnectCallback(ctx_, [](const redisAsyncContext* c, int status) {
    if (c->data) static_cast<RedisLink*>(c->data)->onDisconnect(status);
  });
  if (!url_.password.empty()) command({"AUTH", url_.password}, [](const std::string&, const RedisValue&) {});
  if (url_.db != 0) command({"SELECT", std::to_string(url_.db)}, [](const std::string&, const RedisValue&) {});
}

void RedisLink::onConnect(int status) {
  if (status != REDIS_OK) {
    last_error_ = ctx_ && ctx_->errstr[0] ? ctx_->errstr : "connect failed";
    ctx_ = nullptr;  // hiredis frees a context whose connect failed
    failAll("Redis unavailable: " + last_error_);
    scheduleReconnect();
    return;
  }
  state_ = State::kConnected;
  backoff_ms_ = 100;
  if (on_connected_) on_connected_();
}

void RedisLink::onDisconnect(int status) {
  (void)status;
  last_error_ = ctx_ && ctx_->errstr[0] ? ctx_->errstr : "connection closed";
  ctx_ = nullptr;  // hiredis frees the context after this callback
  failAll("Redis connection lost: " + last_error_);
  if (state_ != State::kStopped) scheduleReconnect();
}

void RedisLink::scheduleReconnect() {
  if (state_ == State::kStopped) return;
  state_ = State::kWaiting;
  uv_timer_start(
      retry_timer_.get(), [](uv_timer_t* t) { static_cast<RedisLink*>(t->data)->connect(); },
      backoff_ms_, 0);
  backoff_ms_ = std::min<uint64_t>(backoff_ms_ * 2, 2000);
}

void RedisLink::failAll(const std::string& why) {
  auto pending = std::move(pending_);
  pending_.clear();
  static const RedisValue kNil;
  for (auto& p : pending) p.cb(why, kNil);
}

void RedisLink::checkStuck() {
  if (pending_.empty() || state_ != State::kConnected) return;
  uint64_t now = uv_now(loop_);
  if (now - pending_.front().sent_ms < static_cast<uint64_t>(timeout_.count())) return;
  log::warn("worker", "Redis {}:{} did not answer within {} ms; reconnecting", url_.host,
            url_.port, timeout_.count());
  failAll(fmt::format("Redis did not answer within {} ms", timeout_.count()));
  redisAsyncContext* c = ctx_;
  ctx_ = nullptr;
  c->data = nullptr;
  redisAsyncFree(c);
  scheduleReconnect();
}

void RedisLink::onReply(redisAsyncContext* c, void* r, void*) {
  auto* self = static_cast<RedisLink*>(c->data);
  if (!self || self->pending_.empty()) return;
  Pending p = std::move(self->pending_.front());
  self->pending_.pop_front();
  static const RedisValue kNil;
  if (!r) {
    p.cb("Redis connection lost", kNil);
    return;
  }
  auto* reply = static_cast<redisReply*>(r);
  if (reply->type == REDIS_REPLY_ERROR) {
    p.cb(std::string(reply->str, reply->len), kNil);
    return;
  }
  p.cb("", convert(reply));
}

void RedisLink::command(const std::vector<std::string>& argv, Callback cb) {
  static const RedisValue kNil;
  if (!ctx_ || (state_ != State::kConnected && state_ != State::kConnecting)) {
    cb("Redis unavailable: " + (last_error_.empty() ? std::string("not connected") : last_error_),
       kNil);
    return;
  }
  std::vector<const char*> args;
  std::vector<size_t> lens;
  args.reserve(argv.size());
  lens.reserve(argv.size());
  for (const auto& a : argv) {
    args.push_back(a.data());
    lens.push_back(a.size());
  }
  int rc = redisAsyncCommandArgv(ctx_, &RedisLink::onReply, nullptr, static_cast<int>(args.size()),
                                 args.data(), lens.data());
  if (rc != REDIS_OK) {
    cb("Redis unavailable: cannot send the command", kNil);
    return;
  }
  pending_.push_back(Pending{std::move(cb), uv_now(loop_)});
}

void RedisLink::eval(const char* script, const std::vector<std::string>& keys,
                     const std::vector<std::string>& args, Callback cb) {
  std::vector<std::string> argv = {"EVAL", script, std::to_string(keys.size())};
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.insert(argv.end(), args.begin(), args.end());
  auto it = shas_.find(script);
  if (it == shas_.end() || it->second.empty()) {
    if (it == shas_.end() && connected()) {
      shas_[script] = "";
      command({"SCRIPT", "LOAD", script}, [this, script](const std::string& err, const RedisValue& v) {
        if (err.empty() && !v.str.empty()) {
          shas_[script] = v.str;
        } else {
          shas_.erase(script);
        }
      });
    }
    command(argv, std::move(cb));
    return;
  }
  argv[0] = "EVALSHA";
  argv[1] = it->second;
  command(argv, [this, script, argv, cb = std::move(cb)](const std::string& err,
                                                          const RedisValue& v) mutable {
    if (err.rfind("NOSCRIPT", 0) == 0) {
      shas_.erase(script);
      argv[0] = "EVAL";
      argv[1] = script;
      command(argv, std::move(cb));
      return;
    }
    cb(err, v);
  });
}

}  // namespace clusterd::worker
