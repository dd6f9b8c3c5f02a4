// worker::HealthCache: the state behind GET /health. Each dependency
// (Redis, Postgres) has a probe that answers within a short timeout; results
// are cached for one second, and requests that arrive while a check runs
// wait for that one check, so health checks never pile up on a dependency.
// A failed dependency shows as "unavailable" (or a timeout); the probe's
// message, which may name hosts and users, goes to the log when it changes.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/uv_handle.h"

namespace clusterd::worker {

class HealthCache {
 public:
  // A probe calls `done` once with an empty string (up) or the failure.
  using Probe = std::function<void(std::chrono::milliseconds timeout,
                                   std::function<void(std::string error)> done)>;
  struct Entry {
    std::string name;
    std::string state;  // "ok", "disabled", or the error
    bool ok = true;
  };
  struct Snapshot {
    bool ok = true;
    std::vector<Entry> entries;
  };
  using Callback = std::function<void(const Snapshot&)>;

  HealthCache(uv_loop_t* loop, std::chrono::milliseconds timeout,
              std::chrono::milliseconds max_age = std::chrono::milliseconds(1000));
  ~HealthCache();

  void addProbe(std::string name, Probe probe);
  // Reported as "disabled" and never failing.
  void addDisabled(std::string name);

  // Answers from the cache when it is fresh, else after one round of probes.
  void get(Callback cb);
  // The cached snapshot while it is fresh, else null (the hot path of
  // GET /health answers from it without a callback).
  const Snapshot* fresh() const;
  // Changes whenever a new snapshot is taken (for caching rendered bodies).
  uint64_t version() const { return version_; }

 private:
  void runProbes();
  void finishRound();

  struct Dep {
    std::string name;
    Probe probe;  // empty = disabled
    std::string state = "unknown";  // what /health shows: ok, disabled, unavailable, timeout
    std::string detail;             // the probe's error, for the log only
    std::string logged;             // the detail last logged
    bool ok = false;
    bool answered = false;
  };
  uv_loop_t* loop_;
  std::chrono::milliseconds timeout_;
  std::chrono::milliseconds max_age_;
  std::vector<Dep> deps_;
  Snapshot snapshot_;
  uint64_t checked_ms_ = 0;
  bool have_snapshot_ = false;
  bool running_ = false;
  uint64_t round_ = 0;
  uint64_t version_ = 0;
  std::vector<Callback> waiters_;
  UvHandle<uv_timer_t> timer_;
  std::shared_ptr<bool> alive_;
};

}  // namespace clusterd::worker
