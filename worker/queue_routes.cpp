// The job API of the built-in worker, on the queue module's client:
//   POST /v1/queues/{queue}/jobs        enqueue one job (JSON object) or many (array)
//   GET  /v1/queues/{queue}/jobs/{id}   one job: state, attempts, last error, result
//   GET  /v1/queues                     every queue's sizes and counters
// Bodies are JSON; payloads are stored as msgpack. A bad body or field is a
// 400 naming the field; Redis not reachable is a 503 with Retry-After, so a
// client can tell "fix your request" from "try again".
//
// The routes exist only when the worker's settings open the job API
// (`http.job_api`), and then only for the queues and job names listed there
// (403 otherwise), behind its bearer token when one is set (401): a job runs
// with the worker's rights, and an open enqueue lets anyone invent queues in
// a Redis that never evicts.
//
// Design: enqueue requests that arrive in the same loop turn (one epoll
// round over many connections) are validated one by one, then sent to Redis
// together, one bulk enqueue per queue from an idle handle that runs before
// the loop polls again, and each request gets its own slice of the ids.
// Under load this turns many script calls into a few, which is what bounds
// the enqueue rate; a lone request waits for nothing (an active idle handle
// makes the next poll return at once).
//
// A Redis that keeps the connection but stops answering would leave requests
// waiting until the server's request timeout; instead every job API request
// is watched, and one still unanswered after kRedisWait gets a 503. The
// watch list is in arrival order, so one periodic sweep looks only at its
// front.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/log.h"
#include "common/nesting.h"
#include "common/uv_handle.h"
#include "config/load.h"
#include "queue/client.h"
#include "queue/job.h"
#include "queue/names.h"
#include "worker/queue_link.h"
#include "worker/worker.h"

namespace clusterd::worker {
namespace {

using nlohmann::json;

constexpr size_t kMaxJobsPerRequest = 10'000;
constexpr uint64_t kRedisWaitMs = 5'000;

struct FieldError {
  std::string field;
  std::string message;
};

// Milliseconds from a non-negative integer or a duration text ("5s", "1m").
std::optional<queue::Millis> millisField(const json& v) {
  if (v.is_number_integer() || v.is_number_unsigned()) {
    int64_t n = v.get<int64_t>();
    if (n < 0) return std::nullopt;
    return queue::Millis(n);
  }
  if (v.is_string()) {
    queue::Millis ms{0};
    if (config::parseDuration(v.get<std::string>(), ms) && ms.count() >= 0) return ms;
  }
  return std::nullopt;
}

// One job object -> NewJob; `where` prefixes field names in arrays ("[3].name").
std::optional<FieldError> parseJob(const json& j, const std::string& where, queue::NewJob& out) {
  auto field = [&](const char* name) { return where + name; };
  if (!j.is_object()) return FieldError{where.empty() ? "body" : where, "a job must be a JSON object"};
  for (const auto& [key, value] : j.items()) {
    if (key == "name") {
      if (!value.is_string() || value.get<std::string>().empty())
        return FieldError{field("name"), "name must be a non-empty string (it selects the handler)"};
      out.name = value.get<std::string>();
    } else if (key == "data") {
      out.payload = queue::payloadFromJson(value);
    } else if (key == "delay") {
      auto ms = millisField(value);
      if (!ms) return FieldError{field("delay"), "delay must be milliseconds (a non-negative integer) or a duration such as \"30s\""};
      out.options.delay = *ms;
    } else if (key == "priority") {
      if (!value.is_number_integer() || value.get<int64_t>() < -1000 || value.get<int64_t>() > 1000)
        return FieldError{field("priority"), "priority must be an integer from -1000 to 1000 (higher runs first)"};
      out.options.priority = value.get<int>();
    } else if (key == "attempts") {
      if (!value.is_number_integer() || value.get<int64_t>() < 1 || value.get<int64_t>() > 1000)
        return FieldError{field("attempts"), "attempts must be an integer from 1 to 1000"};
      out.options.attempts = value.get<int>();
    } else if (key == "unique") {
      if (!value.is_string() || value.get<std::string>().empty() || value.get<std::string>().size() > 512)
        return FieldError{field("unique"), "unique must be a non-empty string of at most 512 bytes"};
      out.options.unique_key = value.get<std::string>();
    } else if (key == "timeout") {
      auto ms = millisField(value);
      if (!ms || ms->count() == 0) return FieldError{field("timeout"), "timeout must be positive milliseconds or a duration such as \"2m\""};
      out.options.timeout = *ms;
    } else if (key == "backoff") {
      auto ms = millisField(value);
      if (!ms || ms->count() == 0) return FieldError{field("backoff"), "backoff must be positive milliseconds or a duration such as \"5s\""};
      out.options.backoff = *ms;
    } else {
      return FieldError{field(key.c_str()),
                        "unknown field; a job has name, data, delay, priority, attempts, unique, timeout, backoff"};
    }
  }
  if (out.name.empty()) return FieldError{field("name"), "name is required"};
  return std::nullopt;
}

class QueueRoutes {
 public:
  explicit QueueRoutes(Worker& w) : w_(w), api_(w.options().spec.job_api) {
    uv_idle_init(w_.loop(), flush_idle_.get());
    flush_idle_->data = this;
    uv_timer_init(w_.loop(), watch_timer_.get());
    watch_timer_->data = this;
    uv_timer_start(
        watch_timer_.get(), [](uv_timer_t* t) { static_cast<QueueRoutes*>(t->data)->sweep(); }, 250, 250);
    uv_unref(watch_timer_.handle());
  }

  // Answers 503 to requests Redis has left unanswered for kRedisWaitMs.
  void watch(const Responder& res) { watches_.push_back({uv_now(w_.loop()) + kRedisWaitMs, res}); }
  void sweep() {
    uint64_t now = uv_now(w_.loop());
    while (!watches_.empty()) {
      Watch& front = watches_.front();
      if (!front.res.sent()) {
        if (now < front.deadline_ms) break;
        front.res.header("Retry-After", "1")
            .error(503, fmt::format("the queue did not answer within {} ms; retry shortly",
                                    kRedisWaitMs));
      }
      watches_.pop_front();
    }
  }

  // True (and answered 503) when Redis is not reachable now. Answers name
  // no address: the URL may carry a password, and clients need only know
  // to retry.
  bool unavailable(Responder& res) {
    QueueLink* q = w_.queues();
    if (q && q->connected()) return false;
    res.header("Retry-After", "1").error(503, "the queue is not reachable; retry shortly");
    return true;
  }

  // A Redis error after the request was sent: 503 when the connection is
  // gone, else 500 with a short reason; the cause goes to the log.
  void failed(Responder& res, const Error& e) {
    if (unavailable(res)) return;
    log::error("worker", "{} {}: {}", methodName(res.request().method), res.request().path,
               e.message);
    res.error(500, "the queue answered with an error; the worker's log has the detail");
  }

  // The bearer token and the queue's place in the list; false (answered)
  // when the request may not go on.
  bool admitted(const Request& req, Responder& res, const std::string& queue_name) {
    const std::string& token = w_.options().job_api_token;
    if (!token.empty() && !bearerMatches(req, token)) {
      res.header("WWW-Authenticate", "Bearer").error(401, "missing or wrong bearer token");
      return false;
    }
    if (!queue_name.empty() && !api_.queues.count(queue_name)) {
      std::vector<std::string> open;
      for (const auto& [name, names] : api_.queues) open.push_back(name);
      res.error(403,
                fmt::format("queue '{}' is not open to the job API; these are: {}", queue_name,
                            fmt::join(open, ", ")),
                "queue");
      return false;
    }
    return true;
  }

  bool nameAllowed(const std::string& queue_name, const std::string& job_name) const {
    const auto& names = api_.queues.at(queue_name);
    for (const std::string& n : names)
      if (n == "*" || n == job_name) return true;
    return false;
  }

  void enqueue(const Request& req, Responder res) {
    std::string queue_name(req.param("queue"));
    if (!queue::validQueueName(queue_name))
      return res.error(400, fmt::format("invalid queue name '{}': use {}", queue_name, queue::kQueueNameRule), "queue");
    if (!admitted(req, res, queue_name)) return;
    auto parsed = parseJsonLimited(req.body);
    if (!parsed) return res.error(400, "the body is " + parsed.error().message, "body");
    json body = std::move(*parsed);
    std::vector<queue::NewJob> jobs;
    bool many = body.is_array();
    if (many) {
      if (body.empty()) return res.error(400, "the array holds no jobs", "body");
      if (body.size() > kMaxJobsPerRequest)
        return res.error(400, fmt::format("at most {} jobs per request", kMaxJobsPerRequest), "body");
      jobs.resize(body.size());
      for (size_t i = 0; i < body.size(); ++i) {
        if (auto err = parseJob(body[i], fmt::format("[{}].", i), jobs[i])) {
          if (err->field.back() == '.') err->field.pop_back();
          return res.error(400, err->message, err->field);
        }
      }
    } else {
      jobs.resize(1);
      if (auto err = parseJob(body, "", jobs[0])) return res.error(400, err->message, err->field);
    }
    for (size_t i = 0; i < jobs.size(); ++i) {
      if (!nameAllowed(queue_name, jobs[i].name))
        return res.error(403,
                         fmt::format("queue '{}' does not take '{}' jobs through the job API; "
                                     "it takes: {}",
                                     queue_name, jobs[i].name,
                                     fmt::join(api_.queues.at(queue_name), ", ")),
                         many ? fmt::format("[{}].name", i) : std::string("name"));
    }
    if (unavailable(res)) return;
    watch(res);
    Batch& b = batches_[queue_name];
    b.waiters.push_back(Waiter{res, b.jobs.size(), jobs.size(), many});
    for (auto& j : jobs) b.jobs.push_back(std::move(j));
    if (!uv_is_active(flush_idle_.handle())) {
      uv_idle_start(flush_idle_.get(), [](uv_idle_t* h) {
        static_cast<QueueRoutes*>(h->data)->flush();
      });
    }
  }

  // Sends every queue's collected jobs in one bulk enqueue and answers each
  // request with its slice of the ids.
  void flush() {
    uv_idle_stop(flush_idle_.get());
    auto batches = std::move(batches_);
    batches_.clear();
    for (auto& entry : batches) {
      // Named, not a structured binding: clang 14 cannot capture one.
      const std::string& queue_name = entry.first;
      Batch& batch = entry.second;
      auto waiters = std::make_shared<std::vector<Waiter>>(std::move(batch.waiters));
      w_.queueClient()->enqueueBulk(
          queue_name, std::move(batch.jobs),
          [this, waiters, queue_name](Result<std::vector<queue::Enqueued>> r) {
            for (Waiter& wt : *waiters) {
              if (!r) {
                failed(wt.res, r.error());
                continue;
              }
              answer(wt, queue_name, *r);
            }
          });
    }
  }

  void job(const Request& req, Responder res) {
    std::string queue_name(req.param("queue")), id(req.param("id"));
    if (!queue::validQueueName(queue_name))
      return res.error(400, fmt::format("invalid queue name '{}': use {}", queue_name, queue::kQueueNameRule), "queue");
    if (!admitted(req, res, queue_name)) return;
    if (unavailable(res)) return;
    watch(res);
    w_.queueClient()->job(queue_name, id, [this, res, queue_name, id](Result<std::optional<queue::Job>> r) mutable {
      if (!r) return failed(res, r.error());
      if (!*r) return res.error(404, fmt::format("no job {} in queue '{}'", id, queue_name));
      const queue::Job& j = **r;
      json out = j.toJson();
      if (!j.errors.empty()) {
        out["last_error"] = j.errors.back().error;
      } else if (!j.reason.empty()) {
        out["last_error"] = j.reason;
      } else {
        out["last_error"] = nullptr;
      }
      // The handler's result, decoded from msgpack; null when there is none.
      if (!out.contains("result")) out["result"] = nullptr;
      res.json(200, out);
    });
  }

  void list(const Request& req, Responder res) {
    if (!admitted(req, res, "")) return;
    if (unavailable(res)) return;
    watch(res);
    queue::Client* client = w_.queueClient();
    client->queues([this, res, client](Result<std::vector<std::string>> names) mutable {
      if (!names) return failed(res, names.error());
      // Only the queues the job API is open to.
      std::erase_if(*names, [this](const std::string& n) { return !api_.queues.count(n); });
      if (names->empty()) return res.json(200, json::array());
      struct State {
        std::vector<json> rows;
        size_t pending = 0;
        std::optional<Error> error;
      };
      auto st = std::make_shared<State>();
      st->rows.resize(names->size());
      st->pending = names->size();
      for (size_t i = 0; i < names->size(); ++i) {
        client->counts((*names)[i], [this, st, i, res](Result<queue::QueueCounts> c) mutable {
          if (c) {
            st->rows[i] = queue::toJson(*c);
          } else if (!st->error) {
            st->error = c.error();
          }
          if (--st->pending > 0) return;
          if (st->error) return failed(res, *st->error);
          res.json(200, json(std::move(st->rows)));
        });
      }
    });
  }

 private:
  struct Waiter {
    Responder res;
    size_t from = 0;   // its first job in the batch
    size_t count = 0;
    bool many = false;  // the body was an array
  };
  struct Batch {
    std::vector<queue::NewJob> jobs;
    std::vector<Waiter> waiters;
  };

  static void answer(Waiter& wt, const std::string& queue_name, const std::vector<queue::Enqueued>& all) {
    if (!wt.many) {
      const queue::Enqueued& e = all[wt.from];
      wt.res.header("Location", fmt::format("/v1/queues/{}/jobs/{}", queue_name, e.id));
      return wt.res.json(202, {{"queue", queue_name}, {"id", e.id}, {"created", e.created}});
    }
    json ids = json::array(), created = json::array();
    for (size_t i = wt.from; i < wt.from + wt.count; ++i) {
      ids.push_back(all[i].id);
      created.push_back(all[i].created);
    }
    wt.res.json(202, {{"queue", queue_name}, {"ids", std::move(ids)}, {"created", std::move(created)}});
  }

  struct Watch {
    uint64_t deadline_ms;
    Responder res;
  };

  Worker& w_;
  const config::JobApiSpec& api_;
  std::map<std::string, Batch> batches_;
  UvHandle<uv_idle_t> flush_idle_;
  std::deque<Watch> watches_;
  UvHandle<uv_timer_t> watch_timer_;
};

}  // namespace

void installQueueRoutes(Worker& w) {
  if (!w.queueClient() || !w.options().spec.job_api.enabled) return;
  auto routes = std::make_shared<QueueRoutes>(w);
  w.router().post("/v1/queues/{queue}/jobs", [routes](const Request& req, Responder res) {
    routes->enqueue(req, std::move(res));
  });
  w.router().get("/v1/queues/{queue}/jobs/{id}", [routes](const Request& req, Responder res) {
    routes->job(req, std::move(res));
  });
  w.router().get("/v1/queues", [routes](const Request& req, Responder res) {
    routes->list(req, std::move(res));
  });
}

}  // namespace clusterd::worker
