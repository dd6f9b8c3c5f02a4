// worker::Metrics: the numbers behind GET /metrics and the CLUSTERD_STATS
// reports: requests by route and status, a latency histogram per route,
// event-loop lag and RSS, plus text contributed by other parts of the worker
// (queue consumer, job handlers) through sources.
//
// Metric names (Prometheus text format 0.0.4) are listed in docs/HTTP.md.
// Design: recording a request is a few integer increments on a per-route
// slot found by index, so it costs nothing measurable on the hot path; the
// text is built only when /metrics is scraped.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace clusterd::worker {

class Metrics {
 public:
  static constexpr std::array<double, 14> kBuckets = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

  // Which process this is: `clusterd_worker_info{app,instance} 1`, so the
  // instances scraped on their own health ports tell themselves apart.
  void setIdentity(std::string app, int instance) {
    app_ = std::move(app);
    instance_ = instance;
  }
  // Route labels by router index; index -1 is "unmatched".
  void setRoutes(const std::vector<std::string>& patterns);
  void recordRequest(int route, int status, double seconds);
  void recordLoopLag(double ms);
  void countRateLimited() { ++rate_limited_; }

  uint64_t requests() const { return requests_; }
  // The largest lag seen since the last call (for the 1 s stats report).
  double takeLoopLagMs();
  double lastLoopLagMs() const { return last_lag_ms_; }

  // Appends text for one scrape (e.g. the queue consumer's counters).
  using Source = std::function<void(std::string& out)>;
  void addSource(Source source) { sources_.push_back(std::move(source)); }

  // The whole exposition; `extra` is appended after the built-in families.
  std::string render(uint64_t open_connections, std::string_view extra) const;

 private:
  struct RouteSlot {
    std::string label;
    std::vector<std::pair<int, uint64_t>> by_status;
    std::array<uint64_t, kBuckets.size()> buckets{};
    uint64_t count = 0;
    double sum = 0;
  };
  RouteSlot& slot(int route);

  std::string app_ = "worker";
  int instance_ = 0;
  std::vector<RouteSlot> routes_;  // [0] = unmatched, [i+1] = router index i
  std::vector<Source> sources_;
  uint64_t requests_ = 0;
  uint64_t rate_limited_ = 0;
  double lag_max_ms_ = 0;
  double last_lag_ms_ = 0;
};

// Resident set size of this process in bytes (from /proc/self/statm).
uint64_t residentBytes();

// Escapes a Prometheus label value.
std::string promLabel(std::string_view v);

}  // namespace clusterd::worker
