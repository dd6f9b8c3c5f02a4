// Glue between a hiredis async context and a libuv loop (internal).
//
// Design: hiredis ships hiredis/adapters/libuv.h, but its poll callback drops
// every event whose status is an error. libuv reports a refused or reset
// socket (POLLERR) exactly that way, so with the stock adapter a refused
// connect is never noticed and the connection hangs. This adapter hands such
// events to hiredis as readable/writable, which lets hiredis read the socket
// error and run its connect/disconnect callbacks. Otherwise it does the same.
#pragma once

#include <hiredis/async.h>
#include <uv.h>

namespace clusterd::queue::detail {

struct UvRedisEvents {
  redisAsyncContext* ac = nullptr;  // null once hiredis has cleaned up
  uv_poll_t poll{};
  int events = 0;
};

inline void uvRedisPoll(uv_poll_t* handle, int status, int events) {
  auto* p = static_cast<UvRedisEvents*>(handle->data);
  if (status < 0) events = p->events;  // let hiredis find the socket error
  if (p->ac && (events & UV_READABLE)) redisAsyncHandleRead(p->ac);
  if (p->ac && (events & UV_WRITABLE)) redisAsyncHandleWrite(p->ac);
}

inline void uvRedisUpdate(UvRedisEvents* p, int events) {
  p->events = events;
  if (events)
    uv_poll_start(&p->poll, events, uvRedisPoll);
  else
    uv_poll_stop(&p->poll);
}

inline void uvRedisAddRead(void* d) {
  auto* p = static_cast<UvRedisEvents*>(d);
  uvRedisUpdate(p, p->events | UV_READABLE);
}
inline void uvRedisDelRead(void* d) {
  auto* p = static_cast<UvRedisEvents*>(d);
  uvRedisUpdate(p, p->events & ~UV_READABLE);
}
inline void uvRedisAddWrite(void* d) {
  auto* p = static_cast<UvRedisEvents*>(d);
  uvRedisUpdate(p, p->events | UV_WRITABLE);
}
inline void uvRedisDelWrite(void* d) {
  auto* p = static_cast<UvRedisEvents*>(d);
  uvRedisUpdate(p, p->events & ~UV_WRITABLE);
}
inline void uvRedisCleanup(void* d) {
  auto* p = static_cast<UvRedisEvents*>(d);
  p->ac = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&p->poll),
           [](uv_handle_t* h) { delete static_cast<UvRedisEvents*>(h->data); });
}

// Returns false when the poll handle cannot be created.
inline bool uvRedisAttach(redisAsyncContext* ac, uv_loop_t* loop) {
  auto* p = new UvRedisEvents;
  if (uv_poll_init(loop, &p->poll, ac->c.fd) != 0) {
    delete p;
    return false;
  }
  p->ac = ac;
  p->poll.data = p;
  ac->ev.data = p;
  ac->ev.addRead = uvRedisAddRead;
  ac->ev.delRead = uvRedisDelRead;
  ac->ev.addWrite = uvRedisAddWrite;
  ac->ev.delWrite = uvRedisDelWrite;
  ac->ev.cleanup = uvRedisCleanup;
  return true;
}

}  // namespace clusterd::queue::detail
