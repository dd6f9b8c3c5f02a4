// worker::QueueLink (see queue_link.h).
#include "worker/queue_link.h"

#include "worker/worker.h"

namespace clusterd::worker {

QueueLink::QueueLink(uv_loop_t* loop, const WorkerOptions& options)
    : loop_(loop), options_(options) {}

QueueLink::~QueueLink() = default;

Result<void> QueueLink::start(std::function<void()> on_connected) {
  auto url = parseRedisUrl(options_.redis_url);
  if (!url) return url.error();
  redis_ = std::make_unique<RedisLink>(loop_, *url, options_.health_timeout * 2);
  redis_->start([this, cb = std::move(on_connected)] {
    if (!announced_) {
      announced_ = true;
      if (cb) cb();
    }
  });
  return success();
}

bool QueueLink::connected() const { return redis_ && redis_->connected(); }

void QueueLink::ping(std::chrono::milliseconds, std::function<void(std::string error)> done) {
  redis_->command({"PING"}, [done = std::move(done)](const std::string& err, const RedisValue&) {
    done(err);
  });
}

QueueLink::Counts QueueLink::counts() const { return {}; }

void QueueLink::drain(std::function<void()> done) { done(); }

void QueueLink::abandon() {}

}  // namespace clusterd::worker
