// Implementation of jobs/redis_link.h.
#include "jobs/redis_link.h"

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <fmt/format.h>

#include "common/log.h"

namespace clusterd::jobs {

Result<RedisAddress> parseRedisUrl(const std::string& url) {
  RedisAddress a;
  std::string rest = url;
  const std::string scheme = "redis://";
  if (rest.rfind(scheme, 0) != 0)
    return Error{"redis url '" + url + "': expected redis://host:port[/db]"};
  rest = rest.substr(scheme.size());
  if (rest.find('@') != std::string::npos)
    return Error{"redis url '" + url + "': passwords are not supported by the product cache"};
  auto slash = rest.find('/');
  if (slash != std::string::npos) {
    std::string db = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
    if (!db.empty()) a.db = std::atoi(db.c_str());
  }
  auto colon = rest.rfind(':');
  if (colon != std::string::npos) {
    a.port = std::atoi(rest.substr(colon + 1).c_str());
    rest = rest.substr(0, colon);
  }
  if (!rest.empty()) a.host = rest;
  if (a.port <= 0 || a.port > 65535) return Error{"redis url '" + url + "': bad port"};
  return a;
}

RedisLink::RedisLink(uv_loop_t* loop, RedisAddress address)
    : loop_(loop), address_(std::move(address)), self_(std::make_shared<RedisLink*>(this)) {
  uv_timer_init(loop_, retry_.get());
  retry_->data = this;
}

RedisLink::~RedisLink() {
  self_.reset();
  if (ctx_) {
    ctx_->data = nullptr;
    redisAsyncFree(ctx_);  // pending callbacks run with a NULL reply
    ctx_ = nullptr;
  }
}

void RedisLink::start() {
  if (!ctx_) connect();
}

void RedisLink::connect() {
  ctx_ = redisAsyncConnect(address_.host.c_str(), address_.port);
  if (!ctx_ || ctx_->err) {
    if (ctx_) redisAsyncFree(ctx_);
    ctx_ = nullptr;
    scheduleReconnect();
    return;
  }
  ctx_->data = this;
  redisLibuvAttach(ctx_, loop_);
  redisAsyncSetConnectCallback(ctx_, &RedisLink::onConnect);
  redisAsyncSetDisconnectCallback(ctx_, &RedisLink::onDisconnect);
  if (address_.db != 0) command({"SELECT", std::to_string(address_.db)}, [](redisReply*) {});
  // hiredis' libuv adapter ignores poll errors, so a refused connect never
  // reports back: a watchdog gives up on it and tries again.
  uv_timer_start(
      retry_.get(),
      [](uv_timer_t* t) {
        auto* self = static_cast<RedisLink*>(t->data);
        if (self->ctx_ && !self->connected_) {
          self->ctx_->data = nullptr;
          redisAsyncFree(self->ctx_);
          self->ctx_ = nullptr;
          self->scheduleReconnect();
        }
      },
      1000, 0);
}

void RedisLink::onConnect(const redisAsyncContext* c, int status) {
  auto* self = static_cast<RedisLink*>(c->data);
  if (!self) return;
  if (status != REDIS_OK) {
    // hiredis frees the context after this callback.
    self->ctx_ = nullptr;
    self->connected_ = false;
    self->scheduleReconnect();
    return;
  }
  if (self->failures_ > 0) log::info("cache", "redis link to {}:{} is back", self->address_.host, self->address_.port);
  self->failures_ = 0;
  self->connected_ = true;
  uv_timer_stop(self->retry_.get());
}

void RedisLink::onDisconnect(const redisAsyncContext* c, int) {
  auto* self = static_cast<RedisLink*>(c->data);
  if (!self) return;
  self->ctx_ = nullptr;  // freed by hiredis
  self->connected_ = false;
  self->scheduleReconnect();
}

void RedisLink::scheduleReconnect() {
  if (failures_ == 0)
    log::warn("cache", "redis at {}:{} unreachable; product reads go to PostgreSQL until it is back",
              address_.host, address_.port);
  int64_t delay = std::min<int64_t>(100ll << std::min(failures_, 3), 1000);
  ++failures_;
  uv_timer_start(
      retry_.get(),
      [](uv_timer_t* t) {
        auto* self = static_cast<RedisLink*>(t->data);
        if (!self->ctx_) self->connect();
      },
      static_cast<uint64_t>(delay), 0);
}

void RedisLink::command(const std::vector<std::string>& argv, ReplyFn done) {
  if (!ctx_) return done(nullptr);
  std::vector<const char*> args;
  std::vector<size_t> lens;
  for (auto& a : argv) args.push_back(a.data()), lens.push_back(a.size());
  auto* fn = new ReplyFn(std::move(done));
  int rc = redisAsyncCommandArgv(
      ctx_,
      [](redisAsyncContext*, void* reply, void* priv) {
        std::unique_ptr<ReplyFn> f(static_cast<ReplyFn*>(priv));
        (*f)(static_cast<redisReply*>(reply));
      },
      fn, static_cast<int>(args.size()), args.data(), lens.data());
  if (rc != REDIS_OK) {
    std::unique_ptr<ReplyFn> f(fn);
    (*f)(nullptr);
  }
}

}  // namespace clusterd::jobs
