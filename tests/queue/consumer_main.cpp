// A consumer process for fault tests: runs queue::Consumer on one queue and
// appends "<id>\n" to a log file when a `work` job starts and "<id>\n" to a
// second file when it completes, so tests can count runs and re-runs.
//
//   queue_test_consumer REDIS_URL QUEUE CONCURRENCY STARTS_FILE DONE_FILE WORK_MS [LEASE_MS]
//
// SIGTERM drains (5 s) and exits 0. Built-in `noop` and `sleep` are registered too.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/log.h"
#include "common/uv_handle.h"
#include "queue/consumer.h"
#include "queue/handlers.h"

using namespace clusterd;

namespace {
void appendLine(int fd, const std::string& id) {
  std::string line = id + "\n";
  ssize_t n = ::write(fd, line.data(), line.size());
  (void)n;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 7) {
    std::fprintf(stderr, "usage: %s REDIS_URL QUEUE CONCURRENCY STARTS_FILE DONE_FILE WORK_MS [LEASE_MS]\n", argv[0]);
    return 100;
  }
  std::string url = argv[1], queue = argv[2];
  int concurrency = std::atoi(argv[3]);
  int starts = ::open(argv[4], O_WRONLY | O_CREAT | O_APPEND, 0644);
  int dones = ::open(argv[5], O_WRONLY | O_CREAT | O_APPEND, 0644);
  int work_ms = std::atoi(argv[6]);
  int lease_ms = argc > 7 ? std::atoi(argv[7]) : 10000;
  uv_loop_t* loop = uv_default_loop();
  auto c = queue::Consumer::create(loop, {.redis_url = url,
                                          .queues = {{queue, concurrency}},
                                          .lease = queue::Millis(lease_ms)});
  if (!c) {
    std::fprintf(stderr, "%s\n", c.error().message.c_str());
    return 111;
  }
  auto consumer = std::move(c).value();
  queue::registerBuiltinHandlers(*consumer, loop);
  consumer->handle("work", [&](const queue::Job& job, queue::Done done) {
    appendLine(starts, job.id);
    auto* t = new uv_timer_t;
    uv_timer_init(loop, t);
    struct Ctx {
      queue::Done done;
      std::string id;
      int fd;
    };
    t->data = new Ctx{std::move(done), job.id, dones};
    uv_timer_start(
        t,
        [](uv_timer_t* t) {
          auto* ctx = static_cast<Ctx*>(t->data);
          appendLine(ctx->fd, ctx->id);
          ctx->done(success());
          delete ctx;
          uv_close(reinterpret_cast<uv_handle_t*>(t), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
        },
        static_cast<uint64_t>(work_ms), 0);
  });
  consumer->start([](Result<void> r) {
    if (!r) {
      std::fprintf(stderr, "start: %s\n", r.error().message.c_str());
      std::exit(111);
    }
    std::fprintf(stderr, "consumer ready\n");
  });
  UvHandle<uv_signal_t> term;
  uv_signal_init(loop, term.get());
  term->data = consumer.get();
  uv_signal_start(
      term.get(),
      [](uv_signal_t* s, int) {
        auto* c = static_cast<queue::Consumer*>(s->data);
        uv_signal_stop(s);
        c->drain(std::chrono::seconds(5), [loop = s->loop] { uv_stop(loop); });
      },
      SIGTERM);
  uv_run(loop, UV_RUN_DEFAULT);
  return 0;
}
