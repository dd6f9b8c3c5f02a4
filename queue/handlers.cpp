// Implementation of queue/handlers.h: the built-in handlers and the
// registration of command handlers (queue/command.cpp runs per-job
// commands, queue/persistent.cpp the persistent ones).
#include "queue/handlers.h"

#include <memory>

#include "queue/persistent.h"

namespace clusterd::queue {

void registerBuiltinHandlers(Consumer& consumer, uv_loop_t* loop) {
  consumer.handle("noop", [](const Job&, Done done) { done(success()); });
  consumer.handle("sleep", [loop](const Job& job, Done done) {
    auto p = job.payloadJson();
    int64_t ms = p.is_object() && p.contains("ms") && p["ms"].is_number() ? p["ms"].get<int64_t>() : 0;
    if (ms <= 0) return done(success());
    struct Sleep {
      uv_timer_t timer{};
      Done done;
    };
    auto* s = new Sleep{{}, std::move(done)};
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    uv_timer_start(
        &s->timer,
        [](uv_timer_t* t) {
          auto* s = static_cast<Sleep*>(t->data);
          auto d = std::move(s->done);
          uv_close(reinterpret_cast<uv_handle_t*>(t), [](uv_handle_t* h) { delete static_cast<Sleep*>(h->data); });
          d(success());
        },
        static_cast<uint64_t>(ms), 0);
  });
}

void registerCommandHandlers(Consumer& consumer, uv_loop_t* loop, const std::vector<config::HandlerSpec>& specs) {
  for (const auto& spec : specs) {
    if (spec.mode == config::HandlerMode::kPersistent) {
      auto pool = std::make_shared<PersistentPool>(loop, spec);
      consumer.handleStoppable(spec.job_name,
                               [pool](const Job& job, Done done) { return pool->run(job, std::move(done)); });
    } else {
      consumer.handleStoppable(spec.job_name, [loop, spec](const Job& job, Done done) {
        return runCommand(loop, spec, job, std::move(done));
      });
    }
  }
}

}  // namespace clusterd::queue
