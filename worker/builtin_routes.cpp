// The worker's own routes: GET /health and GET /metrics. The job API routes
// (/v1/queues/...) are in queue_routes.cpp.
#include <string_view>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "worker/health.h"
#include "worker/queue_link.h"
#include "worker/worker.h"

namespace clusterd::worker {

void installQueueRoutes(Worker& worker);

void Worker::installBuiltinRoutes() {
  router_.get("/health", [this](const Request&, Responder res) {
    health_->get([this, res](const HealthCache::Snapshot& snap) mutable {
      uint64_t uptime_s = uptimeMs() / 1000;
      HealthBody& hb = health_body_;
      if (hb.version != health_->version() || hb.uptime_s != uptime_s) {
        nlohmann::ordered_json j = {{"status", snap.ok ? "ok" : "unavailable"}};
        for (const auto& e : snap.entries) j[e.name] = e.state;
        j["uptime"] = uptime_s;
        hb.body = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        hb.status = snap.ok ? 200 : 503;
        hb.version = health_->version();
        hb.uptime_s = uptime_s;
      }
      res.header("Cache-Control", "no-store").send(hb.status, hb.body, "application/json");
    });
  });

  router_.get("/metrics", [this](const Request&, Responder res) {
    constexpr std::string_view kType = "text/plain; version=0.0.4; charset=utf-8";
    if (!queues_) {
      res.send(200, metrics_.render(server_->stats().open, {}), kType);
      return;
    }
    queues_->renderMetrics([this, res](std::string extra) mutable {
      res.send(200, metrics_.render(server_->stats().open, extra), kType);
    });
  });

  if (queues_) installQueueRoutes(*this);
}

}  // namespace clusterd::worker
