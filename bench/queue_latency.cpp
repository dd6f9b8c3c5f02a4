// Latency benchmark: offers RATE jobs/s (single enqueues) for SECONDS and
// measures enqueue -> handler start and enqueue -> acknowledged (each job's
// acknowledgement as Redis accepted it, from Consumer::onCompleted), in ms.
// Producer (queue::Client) and consumer (queue::Consumer, concurrency 50)
// share this process's loop; the payload carries the enqueue time.
//
//   queue_latency REDIS_URL RATE SECONDS   -> prints one JSON line
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/uv_handle.h"
#include "queue/client.h"
#include "queue/consumer.h"

using namespace clusterd;

namespace {
double nowUs() {
  using namespace std::chrono;
  return static_cast<double>(duration_cast<microseconds>(system_clock::now().time_since_epoch()).count());
}
double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) return 100;
  std::string url = argv[1];
  int rate = std::atoi(argv[2]), seconds = std::atoi(argv[3]);
  uv_loop_t* loop = uv_default_loop();
  auto client = queue::Client::create(loop, {.redis_url = url}).value();
  auto consumer = queue::Consumer::create(loop, {.redis_url = url, .queues = {{"lat", 50}}}).value();
  std::vector<double> start_ms, done_ms;
  int total = rate * seconds, sent = 0, finished = 0;
  // The payload carries the enqueue time; a job's completion is the moment
  // Redis accepted its acknowledgement (Consumer::onCompleted), by id.
  std::unordered_map<std::string, double> enqueued_at;
  consumer->handle("t", [&](const queue::Job& job, queue::Done done) {
    double t = job.payloadJson().get<double>();
    start_ms.push_back((nowUs() - t) / 1000.0);
    enqueued_at.emplace(job.id, t);
    done(success());
  });
  bool started = false;
  consumer->start([&](Result<void>) { started = true; });
  while (!started) uv_run(loop, UV_RUN_ONCE);
  consumer->onCompleted([&](const std::string&, const std::string& id) {
    auto it = enqueued_at.find(id);
    if (it == enqueued_at.end()) return;
    done_ms.push_back((nowUs() - it->second) / 1000.0);
    enqueued_at.erase(it);
    if (++finished >= total) uv_stop(loop);
  });
  double t0 = nowUs();
  UvHandle<uv_timer_t> tick;
  uv_timer_init(loop, tick.get());
  struct Ctx {
    std::function<void()> fn;
  } ctx;
  ctx.fn = [&] {
    int due = std::min(total, static_cast<int>((nowUs() - t0) / 1e6 * rate));
    for (; sent < due; ++sent) {
      double t = nowUs();
      client->enqueue("lat", {"t", queue::payloadFromJson(t), {}}, [](Result<queue::Enqueued>) {});
    }
    if (sent >= total) uv_timer_stop(tick.get());
  };
  tick->data = &ctx;
  uv_timer_start(tick.get(), [](uv_timer_t* t) { static_cast<Ctx*>(t->data)->fn(); }, 1, 1);
  uv_run(loop, UV_RUN_DEFAULT);
  std::printf("{\"rate\":%d,\"jobs\":%d,\"start_p50_ms\":%.2f,\"start_p99_ms\":%.2f,\"done_p50_ms\":%.2f,\"done_p99_ms\":%.2f}\n",
              rate, total, pct(start_ms, 0.5), pct(start_ms, 0.99), pct(done_ms, 0.5), pct(done_ms, 0.99));
  return 0;
}
