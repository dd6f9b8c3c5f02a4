// worker::Metrics (see metrics.h).
#include "worker/metrics.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

namespace clusterd::worker {

void Metrics::setRoutes(const std::vector<std::string>& patterns) {
  routes_.clear();
  routes_.resize(patterns.size() + 1);
  routes_[0].label = "unmatched";
  for (size_t i = 0; i < patterns.size(); ++i) routes_[i + 1].label = patterns[i];
}

Metrics::RouteSlot& Metrics::slot(int route) {
  size_t i = static_cast<size_t>(route + 1);
  if (i >= routes_.size()) {
    // A route added after setRoutes(): give it a slot with a generic label.
    size_t old = routes_.size();
    routes_.resize(i + 1);
    if (old == 0) routes_[0].label = "unmatched";
    for (size_t k = std::max<size_t>(old, 1); k <= i; ++k) routes_[k].label = fmt::format("route{}", k - 1);
  }
  return routes_[i];
}

void Metrics::recordRequest(int route, int status, double seconds) {
  ++requests_;
  RouteSlot& s = slot(route);
  bool found = false;
  for (auto& [st, n] : s.by_status) {
    if (st == status) {
      ++n;
      found = true;
      break;
    }
  }
  if (!found) s.by_status.emplace_back(status, 1);
  for (size_t b = 0; b < kBuckets.size(); ++b) {
    if (seconds <= kBuckets[b]) {
      ++s.buckets[b];
      break;
    }
  }
  ++s.count;
  s.sum += seconds;
}

void Metrics::recordLoopLag(double ms) {
  last_lag_ms_ = ms;
  lag_max_ms_ = std::max(lag_max_ms_, ms);
}

double Metrics::takeLoopLagMs() {
  double v = lag_max_ms_;
  lag_max_ms_ = last_lag_ms_;
  return v;
}

std::string promLabel(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string Metrics::render(uint64_t open_connections, std::string_view extra) const {
  std::string out;
  out.reserve(4096);
  out += "# HELP clusterd_worker_info This worker process: its app and instance number.\n";
  out += "# TYPE clusterd_worker_info gauge\n";
  out += fmt::format("clusterd_worker_info{{app=\"{}\",instance=\"{}\"}} 1\n", promLabel(app_),
                     instance_);
  out += "# HELP clusterd_http_requests_total HTTP requests answered, by route pattern and status.\n";
  out += "# TYPE clusterd_http_requests_total counter\n";
  for (const RouteSlot& s : routes_) {
    auto sorted = s.by_status;
    std::sort(sorted.begin(), sorted.end());
    for (auto& [st, n] : sorted) {
      out += fmt::format("clusterd_http_requests_total{{route=\"{}\",status=\"{}\"}} {}\n",
                         promLabel(s.label), st, n);
    }
  }
  out += "# HELP clusterd_http_request_duration_seconds Time from the first byte of a request to its response.\n";
  out += "# TYPE clusterd_http_request_duration_seconds histogram\n";
  for (const RouteSlot& s : routes_) {
    if (s.count == 0) continue;
    std::string label = promLabel(s.label);
    uint64_t cumulative = 0;
    for (size_t b = 0; b < kBuckets.size(); ++b) {
      cumulative += s.buckets[b];
      out += fmt::format("clusterd_http_request_duration_seconds_bucket{{route=\"{}\",le=\"{}\"}} {}\n",
                         label, kBuckets[b], cumulative);
    }
    out += fmt::format("clusterd_http_request_duration_seconds_bucket{{route=\"{}\",le=\"+Inf\"}} {}\n",
                       label, s.count);
    out += fmt::format("clusterd_http_request_duration_seconds_sum{{route=\"{}\"}} {:.6f}\n", label,
                       s.sum);
    out += fmt::format("clusterd_http_request_duration_seconds_count{{route=\"{}\"}} {}\n", label,
                       s.count);
  }
  out += "# HELP clusterd_http_rate_limited_total Requests answered 429 by the rate limiter.\n";
  out += "# TYPE clusterd_http_rate_limited_total counter\n";
  out += fmt::format("clusterd_http_rate_limited_total {}\n", rate_limited_);
  out += "# HELP clusterd_http_connections_open Client connections open now.\n";
  out += "# TYPE clusterd_http_connections_open gauge\n";
  out += fmt::format("clusterd_http_connections_open {}\n", open_connections);
  out += "# HELP clusterd_event_loop_lag_seconds How late the last loop-lag probe timer fired.\n";
  out += "# TYPE clusterd_event_loop_lag_seconds gauge\n";
  out += fmt::format("clusterd_event_loop_lag_seconds {:.6f}\n", last_lag_ms_ / 1000.0);
  out += "# HELP process_resident_memory_bytes Resident memory of this worker process.\n";
  out += "# TYPE process_resident_memory_bytes gauge\n";
  out += fmt::format("process_resident_memory_bytes {}\n", residentBytes());
  for (const Source& src : sources_) src(out);
  out += extra;
  return out;
}

uint64_t residentBytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long size = 0, resident = 0;
  int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  if (n != 2) return 0;
  return static_cast<uint64_t>(resident) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace clusterd::worker
