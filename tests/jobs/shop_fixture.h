// A migrated, seeded shop database and a loop to run handlers on, for the
// jobs tests. Handlers get a recording enqueue function; the end-to-end
// tests use the real queue.
#pragma once

#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <list>
#include <memory>
#include <mutex>
#include <set>

#include "common/uv_handle.h"
#include "db/pool.h"
#include "jobs/job.h"
#include "jobs/migrations.h"
#include "jobs/store.h"
#include "tests/db/loop.h"
#include "tests/support/servers.h"

namespace clusterd::test {

struct Enqueued {
  std::string queue, name;
  nlohmann::json data;
  std::chrono::milliseconds delay;
};

class ShopFixture {
 public:
  explicit ShopFixture(int products = 20, int stock = 100, int pool_size = 4) {
    db::PoolOptions o;
    o.conninfo = pg.url();
    o.size = pool_size;
    o.backoff_min = std::chrono::milliseconds(50);
    o.backoff_max = std::chrono::milliseconds(500);
    pool = std::make_unique<db::Pool>(loop.get(), o);
    pool->start();
    bool ok = false, finished = false;
    jobs::migrate(*pool, [&](Result<std::vector<int>> r) {
      ok = r.ok();
      if (ok) {
        jobs::seed(*pool, products, stock, [&](Result<void> s) {
          ok = s.ok();
          finished = true;
        });
      } else {
        finished = true;
      }
    });
    REQUIRE(loop.runUntil([&] { return finished; }));
    REQUIRE(ok);
    services.loop = loop.get();
    services.pool = pool.get();
    services.enqueue = [this](const std::string& q, const std::string& n, nlohmann::json d,
                              const jobs::EnqueueOptions& opts,
                              std::function<void(Result<std::string>)> done) {
      enqueued.push_back({q, n, std::move(d), opts.delay});
      done(std::to_string(enqueued.size()));
    };
    services.invalidate = [this](const std::vector<std::string>& skus) {
      invalidated.insert(skus.begin(), skus.end());
    };
  }

  int64_t placeOrder(const std::string& customer, std::vector<jobs::OrderLineRequest> lines,
                     const std::string& key = "") {
    return place(jobs::OrderRequest{customer, std::move(lines), key}).order_id;
  }

  // What the API's insert answers for `req`.
  jobs::PlacedOrder place(const jobs::OrderRequest& req) {
    std::optional<jobs::PlacedOrder> placed;
    jobs::insertOrder(*pool, req, [&](jobs::PlacedOrder o, std::optional<db::DbError> e) {
      REQUIRE_FALSE(e);
      placed = std::move(o);
    });
    REQUIRE(loop.runUntil([&] { return placed.has_value(); }));
    return *placed;
  }

  using Handler = void (*)(jobs::Services&, const jobs::Job&, jobs::JobDone);
  jobs::JobResult runJob(Handler h, const std::string& id, const std::string& name,
                         nlohmann::json data) {
    std::optional<jobs::JobResult> out;
    h(services, jobs::Job{id, name, std::move(data)}, [&](jobs::JobResult r) { out = std::move(r); });
    REQUIRE(loop.runUntil([&] { return out.has_value(); }));
    return std::move(*out);
  }

  // Runs fn on the loop after ms (what the queue does for a kRetry).
  void after(uint64_t ms, std::function<void()> fn) {
    timers.emplace_back();
    Timer& t = timers.back();
    t.fn = std::move(fn);
    uv_timer_init(loop.get(), t.handle.get());
    t.handle->data = &t;
    uv_timer_start(t.handle.get(), [](uv_timer_t* h) { static_cast<Timer*>(h->data)->fn(); }, ms, 0);
  }

  struct Timer {
    UvHandle<uv_timer_t> handle;
    std::function<void()> fn;
  };

  PostgresServer pg;
  TestLoop loop;
  std::list<Timer> timers;
  std::unique_ptr<db::Pool> pool;
  jobs::Services services;
  std::vector<Enqueued> enqueued;
  std::set<std::string> invalidated;
};

}  // namespace clusterd::test
