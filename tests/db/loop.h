// A libuv loop for tests: runs until a condition holds or a deadline passes,
// with a ticking timer so the loop never sleeps past the deadline.
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>

namespace clusterd::test {

class TestLoop {
 public:
  TestLoop() {
    uv_loop_init(&loop_);
    uv_timer_init(&loop_, &tick_);
  }
  ~TestLoop() {
    uv_close(reinterpret_cast<uv_handle_t*>(&tick_), nullptr);
    // Let every handle close, then the loop can go.
    for (int i = 0; i < 100 && uv_loop_close(&loop_) == UV_EBUSY; ++i) uv_run(&loop_, UV_RUN_NOWAIT);
  }
  uv_loop_t* get() { return &loop_; }

  // True when `cond` became true before the deadline.
  bool runUntil(const std::function<bool()>& cond,
                std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    uv_timer_start(&tick_, [](uv_timer_t*) {}, 5, 5);
    uv_update_time(&loop_);
    uint64_t deadline = uv_now(&loop_) + static_cast<uint64_t>(timeout.count());
    bool ok = true;
    while (!cond()) {
      if (uv_now(&loop_) >= deadline) {
        ok = false;
        break;
      }
      uv_run(&loop_, UV_RUN_ONCE);
    }
    uv_timer_stop(&tick_);
    return ok;
  }
  // Runs for a fixed time (to let background work happen).
  void runFor(std::chrono::milliseconds d) {
    uv_update_time(&loop_);
    uint64_t end = uv_now(&loop_) + static_cast<uint64_t>(d.count());
    runUntil([&] { return uv_now(&loop_) >= end; }, d + std::chrono::seconds(1));
  }

 private:
  uv_loop_t loop_;
  uv_timer_t tick_;
};

}  // namespace clusterd::test
