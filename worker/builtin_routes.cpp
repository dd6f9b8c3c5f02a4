// The worker's own routes: GET /health and GET /metrics, and the health
// listener's dispatch, which serves those two and nothing else. The job API
// routes (/v1/queues/...) are in queue_routes.cpp.
#include <string_view>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "worker/health.h"
#include "worker/queue_link.h"
#include "worker/worker.h"

namespace clusterd::worker {

void installQueueRoutes(Worker& worker);

void Worker::installBuiltinRoutes() {
  // The body is rebuilt only when the snapshot or the uptime second
  // changes; a fresh snapshot is answered without waiting on the cache.
  auto answer = [this](Responder& res, const HealthCache::Snapshot& snap) {
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
  };
  router_.get("/health", [this, answer](const Request&, Responder res) {
    if (const HealthCache::Snapshot* snap = health_->fresh()) return answer(res, *snap);
    health_->get([answer, res](const HealthCache::Snapshot& snap) mutable { answer(res, snap); });
  });

  router_.get("/metrics", [this](const Request&, Responder res) {
    static constexpr std::string_view kType = "text/plain; version=0.0.4; charset=utf-8";
    if (!queues_) {
      res.send(200, metrics_.render(openConnections(), {}), kType);
      return;
    }
    queues_->renderMetrics([this, res](std::string extra) mutable {
      res.send(200, metrics_.render(openConnections(), extra), kType);
    });
  });

  if (queues_) installQueueRoutes(*this);
}

// The health listener shares the router (so its requests count under the
// same route labels in /metrics) but answers only the monitoring routes:
// the job API and the modules' routes stay on the front, behind its auth and
// rate limits.
void Worker::dispatchHealth(const std::shared_ptr<Exchange>& ex) {
  Request& req = ex->req;
  Responder res(ex);
  if (req.path != "/health" && req.path != "/metrics") {
    res.error(404, "this address serves only /health and /metrics");
    return;
  }
  Router::Match m = router_.match(req.method, req.path);
  ex->route = m.route;
  if (m.route < 0) {
    res.header("Allow", m.allow).error(405, "method not allowed on this path");
    return;
  }
  router_.routes()[static_cast<size_t>(m.route)].handler(req, res);
}

}  // namespace clusterd::worker
