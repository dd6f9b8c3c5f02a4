// Helpers for queue tests: a libuv loop owned by the test, run until a
// condition holds or a time limit passes.
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>

namespace clusterd::test {

class TestLoop {
 public:
  TestLoop() { uv_loop_init(&loop_); }
  ~TestLoop() {
    // Let handles closed by destructors finish closing, and the processes
    // they stopped exit (a command handler's child is reaped by the loop,
    // after its kill grace): for up to 10 s, woken every 10 ms, then give up.
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    uv_timer_t tick;
    uv_timer_init(&loop_, &tick);
    uv_timer_start(&tick, [](uv_timer_t*) {}, 10, 10);
    uv_unref(reinterpret_cast<uv_handle_t*>(&tick));  // alive() ignores it
    while (uv_loop_alive(&loop_) && std::chrono::steady_clock::now() < end) uv_run(&loop_, UV_RUN_ONCE);
    uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
    for (int i = 0; i < 100 && uv_loop_close(&loop_) == UV_EBUSY; ++i) uv_run(&loop_, UV_RUN_NOWAIT);
  }
  uv_loop_t* get() { return &loop_; }

  // Runs the loop until `done()` is true; false when `limit` passed first.
  bool runUntil(const std::function<bool()>& done, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    auto end = std::chrono::steady_clock::now() + limit;
    uv_timer_t tick;
    uv_timer_init(&loop_, &tick);
    uv_timer_start(&tick, [](uv_timer_t*) {}, 5, 5);  // wakes the loop to re-check
    bool ok = false;
    while (true) {
      if (done()) {
        ok = true;
        break;
      }
      if (std::chrono::steady_clock::now() > end) break;
      uv_run(&loop_, UV_RUN_ONCE);
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
    uv_run(&loop_, UV_RUN_NOWAIT);
    return ok;
  }
  // Runs the loop for a fixed time.
  void runFor(std::chrono::milliseconds d) {
    auto end = std::chrono::steady_clock::now() + d;
    runUntil([&] { return std::chrono::steady_clock::now() >= end; }, d + std::chrono::seconds(1));
  }

 private:
  uv_loop_t loop_;
};

}  // namespace clusterd::test
