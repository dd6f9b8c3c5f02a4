// Implementation of queue/client.h.
#include "queue/client.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <random>

#include "common/log.h"
#include "queue/codec.h"
#include "queue/names.h"
#include "queue/redis.h"
#include "queue/scripts.h"

namespace clusterd::queue {

int64_t nowMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

namespace {

// 64 random bits in hex for a record's `uid`. The generator is seeded from
// the kernel once per thread; uids need to be unpredictable enough never to
// repeat, not secret.
std::string newUid() {
  thread_local std::mt19937_64 rng{(static_cast<uint64_t>(std::random_device{}()) << 32) ^
                                   std::random_device{}()};
  return fmt::format("{:016x}", rng());
}

Error redisError(const Reply& r, const std::string& what) {
  return Error{fmt::format("{}: {}", what, r.error())};
}

// Decodes {id, record, meta, ...} triples into jobs.
std::vector<Job> decodeTriples(const std::string& queue, const Reply& r, JobState state) {
  std::vector<Job> out;
  for (size_t i = 0; i + 2 < r.size(); i += 3) {
    Job j;
    j.queue = queue;
    j.id = r.at(i).str();
    j.state = state;
    if (auto d = decodeRecord(r.at(i + 1).view(), j); !d) j.reason = d.error().message;
    (void)decodeMeta(r.at(i + 2).view(), j);
    out.push_back(std::move(j));
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<Client>> Client::create(uv_loop_t* loop, ClientOptions options) {
  auto addr = parseRedisUrl(options.redis_url);
  if (!addr) return addr.error();
  RedisOptions ro;
  ro.client_name = options.client_name;
  auto conn = std::make_unique<RedisConnection>(loop, std::move(*addr), ro);
  return std::unique_ptr<Client>(new Client(loop, std::move(options), std::move(conn)));
}

Client::Client(uv_loop_t* loop, ClientOptions options, std::unique_ptr<RedisConnection> conn)
    : loop_(loop), options_(std::move(options)), conn_(std::move(conn)) {
  scripts_ = std::make_unique<ScriptRunner>(*conn_);
  conn_->onReady([this] { registered_.clear(); });
  conn_->connect();
}

Client::~Client() {
  *alive_ = false;
  scripts_.reset();
  conn_.reset();
}

const std::string& Client::redisText() const { return conn_->address().text; }

void Client::registerQueue(const std::string& queue) {
  if (registered_.count(queue)) return;
  registered_[queue] = true;
  conn_->command({"SADD", kQueuesKey, queue}, [](const Reply&) {});
}

Result<std::vector<std::string>> Client::buildArgs(const std::string& queue, const std::vector<NewJob>& jobs,
                                                   size_t from, size_t to, int64_t now) const {
  config::QueueDefaults d;
  if (auto it = options_.defaults.find(queue); it != options_.defaults.end()) d = it->second;
  std::vector<std::string> args;
  args.reserve(2 + (to - from) * 5);
  args.push_back(std::to_string(now));
  args.push_back(std::to_string(to - from));
  for (size_t i = from; i < to; ++i) {
    const NewJob& nj = jobs[i];
    const JobOptions& o = nj.options;
    if (nj.name.empty()) return Error{fmt::format("job {} has no name", i)};
    if (o.priority < -1000 || o.priority > 1000)
      return Error{fmt::format("priority {} is out of range -1000..1000", o.priority)};
    if (o.attempts < 0) return Error{fmt::format("attempts {} must be at least 1", o.attempts)};
    Job j;
    j.name = nj.name;
    j.payload = nj.payload;
    j.attempts = o.attempts > 0 ? o.attempts : d.attempts;
    j.backoff_ms = o.backoff.count() > 0 ? o.backoff.count() : d.backoff.count();
    j.backoff_type = o.backoff_set ? o.backoff_type
                                   : (d.backoff_type == "fixed" ? BackoffType::kFixed : BackoffType::kExponential);
    j.timeout_ms = o.timeout.count() > 0 ? o.timeout.count() : d.timeout.count();
    j.priority = o.priority;
    j.created_ms = now;
    j.unique_key = o.unique_key;
    j.uid = newUid();
    int64_t run_at = o.run_at_ms > 0 ? o.run_at_ms : (o.delay.count() > 0 ? now + o.delay.count() : 0);
    args.push_back(encodeRecord(j));
    args.push_back(std::to_string(run_at));
    args.push_back(std::to_string(o.priority));
    args.push_back(o.unique_key);
    args.push_back(std::to_string(o.unique_ttl.count()));
  }
  return args;
}

void Client::enqueue(const std::string& queue, NewJob job, Callback<Enqueued> cb) {
  std::vector<NewJob> one;
  one.push_back(std::move(job));
  enqueueBulk(queue, std::move(one), [cb = std::move(cb)](Result<std::vector<Enqueued>> r) {
    if (!r) return cb(r.error());
    cb(std::move(r->front()));
  });
}

void Client::enqueueBulk(const std::string& queue, std::vector<NewJob> jobs, Callback<std::vector<Enqueued>> cb) {
  if (!validQueueName(queue))
    return cb(Error{fmt::format("invalid queue name '{}': use {}", queue, kQueueNameRule)});
  if (jobs.empty()) return cb(std::vector<Enqueued>{});
  constexpr size_t kBatch = 500;
  struct State {
    std::vector<Enqueued> out;
    size_t pending = 0;
    std::optional<Error> error;
    Callback<std::vector<Enqueued>> cb;
  };
  auto st = std::make_shared<State>();
  st->out.resize(jobs.size());
  st->cb = std::move(cb);
  int64_t now = nowMs();
  auto keys = queueKeys(queue);
  std::vector<std::vector<std::string>> batches;
  for (size_t from = 0; from < jobs.size(); from += kBatch) {
    size_t to = std::min(jobs.size(), from + kBatch);
    auto args = buildArgs(queue, jobs, from, to, now);
    if (!args) return st->cb(args.error());
    batches.push_back(std::move(*args));
  }
  registerQueue(queue);
  st->pending = batches.size();
  for (size_t b = 0; b < batches.size(); ++b) {
    size_t from = b * kBatch;
    scripts_->run(ScriptId::kEnqueue, keys, batches[b], [st, from, queue, this](const Reply& r) {
      if (r.isError()) {
        if (!st->error) st->error = redisError(r, fmt::format("enqueue to queue '{}' failed", queue));
      } else {
        for (size_t i = 0; i + 1 < r.size(); i += 2)
          st->out[from + i / 2] = Enqueued{r.at(i).str(), r.at(i + 1).integer() == 1};
      }
      if (--st->pending == 0) {
        if (st->error) return st->cb(*st->error);
        st->cb(std::move(st->out));
      }
    });
  }
}

void Client::queues(Callback<std::vector<std::string>> cb) {
  conn_->command({"SMEMBERS", kQueuesKey}, [cb = std::move(cb)](const Reply& r) {
    if (r.isError()) return cb(redisError(r, "listing queues failed"));
    std::vector<std::string> out;
    for (size_t i = 0; i < r.size(); ++i) out.push_back(r.at(i).str());
    std::sort(out.begin(), out.end());
    cb(std::move(out));
  });
}

void Client::counts(const std::string& queue, Callback<QueueCounts> cb) {
  scripts_->run(ScriptId::kCounts, queueKeys(queue), {std::to_string(nowMs())},
                [queue, cb = std::move(cb)](const Reply& r) {
                  if (r.isError() || r.size() < 12) return cb(redisError(r, "reading queue " + queue));
                  QueueCounts c;
                  c.queue = queue;
                  c.waiting = r.at(0).integer();
                  c.active = r.at(1).integer();
                  c.delayed = r.at(2).integer();
                  c.completed = r.at(3).integer();
                  c.dead = r.at(4).integer();
                  c.paused = r.at(5).integer() == 1;
                  c.per_min = r.at(6).integer();
                  c.enqueued_total = r.at(7).integer();
                  c.completed_total = r.at(8).integer();
                  c.failed_total = r.at(9).integer();
                  c.dead_total = r.at(10).integer();
                  c.stalled_total = r.at(11).integer();
                  cb(c);
                });
}

void Client::listJobs(const std::string& queue, JobState state, int offset, int limit,
                      Callback<std::vector<Job>> cb) {
  scripts_->run(ScriptId::kList, queueKeys(queue),
                {jobStateName(state), std::to_string(offset), std::to_string(limit)},
                [queue, state, cb = std::move(cb)](const Reply& r) {
                  if (r.isError()) return cb(redisError(r, "listing jobs of " + queue));
                  cb(decodeTriples(queue, r, state));
                });
}

void Client::job(const std::string& queue, const std::string& id, Callback<std::optional<Job>> cb) {
  scripts_->run(ScriptId::kJob, queueKeys(queue), {id}, [queue, id, cb = std::move(cb)](const Reply& r) {
    if (r.isError()) return cb(redisError(r, "reading job " + id));
    if (r.size() < 4) return cb(std::optional<Job>{});
    Job j;
    j.queue = queue;
    j.id = id;
    parseJobState(r.at(0).view(), j.state);
    if (auto d = decodeRecord(r.at(1).view(), j); !d) j.reason = d.error().message;
    (void)decodeMeta(r.at(2).view(), j);
    j.when_ms = std::atoll(r.at(3).str().c_str());
    if (r.size() >= 5) j.result = r.at(4).str();
    cb(std::optional<Job>(std::move(j)));
  });
}

namespace {
// What one `drain` or `clean` script call removes at most (BATCH_MAX in
// queue/lua/lib.lua).
constexpr int64_t kAdminBatch = 1000;
}  // namespace

// drain and clean in script calls of kAdminBatch jobs each, so that Redis
// serves other clients between them, until a call comes back short or as many
// jobs as the queue held at the start are gone (jobs enqueued or finishing
// meanwhile may keep a batch full; they are not chased forever).
void Client::adminBatches(const std::string& queue, AdminOp op, const std::string& arg,
                          Callback<int64_t> cb) {
  const char* name = op == AdminOp::kDrain ? "drain" : "clean";
  counts(queue, [this, queue, op, arg, name, cb = std::move(cb)](Result<QueueCounts> c) mutable {
    if (!c) return cb(c.error());
    struct State {
      int64_t bound = 0, total = 0;
      std::vector<std::string> keys, args;
      Callback<int64_t> cb;
      std::function<void()> next;
    };
    auto st = std::make_shared<State>();
    st->bound = op == AdminOp::kDrain ? c->waiting + c->delayed : c->completed + c->dead;
    st->keys = queueKeys(queue);
    st->args = {std::to_string(nowMs()), name, arg};
    st->cb = std::move(cb);
    std::weak_ptr<bool> alive = alive_;
    st->next = [this, st, alive, queue, name] {
      scripts_->run(
          ScriptId::kAdmin, st->keys, st->args, [this, st, alive, queue, name](const Reply& r) {
            auto done = [st](Result<int64_t> v) {
              auto cb = std::move(st->cb);
              st->next = nullptr;  // breaks the self-reference
              cb(std::move(v));
            };
            if (r.isError())
              return done(redisError(r, fmt::format("{} on queue '{}' failed", name, queue)));
            st->total += r.integer();
            auto live = alive.lock();
            if (r.integer() < kAdminBatch || st->total >= st->bound || !live || !*live)
              return done(st->total);
            st->next();
          });
    };
    st->next();
  });
}

void Client::admin(const std::string& queue, AdminOp op, const std::string& arg, Callback<int64_t> cb) {
  if (op == AdminOp::kDrain || op == AdminOp::kClean)
    return adminBatches(queue, op, arg, std::move(cb));
  const char* name = "";
  switch (op) {
    case AdminOp::kPause: name = "pause"; break;
    case AdminOp::kResume: name = "resume"; break;
    case AdminOp::kDrain: name = "drain"; break;
    case AdminOp::kClean: name = "clean"; break;
    case AdminOp::kRetry: name = "retry"; break;
    case AdminOp::kDelete: name = "delete"; break;
  }
  scripts_->run(ScriptId::kAdmin, queueKeys(queue), {std::to_string(nowMs()), name, arg},
                [queue, name, cb = std::move(cb)](const Reply& r) {
                  if (r.isError()) return cb(redisError(r, fmt::format("{} on queue '{}' failed", name, queue)));
                  cb(static_cast<int64_t>(r.integer()));
                });
}

void Client::configure(const std::string& queue, const config::QueueDefaults& d, int max_stalls,
                       Callback<bool> cb) {
  std::vector<std::pair<std::string, std::string>> fields = {
      {"keep_completed", std::to_string(d.keep_completed)},
      {"keep_completed_age", std::to_string(d.keep_completed_age.count())},
      {"keep_dead", std::to_string(d.keep_dead)},
      {"keep_dead_age", std::to_string(d.keep_dead_age.count())},
      {"rate_limit", d.rate_limit ? std::to_string(d.rate_limit) : ""},
      {"rate_window", d.rate_limit ? std::to_string(d.rate_window.count()) : ""},
      {"max_stalls", std::to_string(max_stalls)},
      // For the fail script's attempt budget of records without `attempts`.
      {"attempts", std::to_string(d.attempts)},
  };
  registerQueue(queue);
  auto pending = std::make_shared<size_t>(fields.size());
  auto failed = std::make_shared<std::optional<Error>>();
  auto shared_cb = std::make_shared<Callback<bool>>(std::move(cb));
  auto keys = queueKeys(queue);
  for (auto& [f, v] : fields) {
    scripts_->run(ScriptId::kAdmin, keys, {std::to_string(nowMs()), "config", f, v},
                  [pending, failed, shared_cb, queue](const Reply& r) {
                    if (r.isError() && !*failed) *failed = redisError(r, "configuring queue " + queue);
                    if (--*pending == 0) {
                      if (*failed) return (*shared_cb)(**failed);
                      (*shared_cb)(true);
                    }
                  });
  }
}

void Client::checkDurability(Callback<bool> cb) {
  // One CONFIG GET for both parameters (Redis 7 takes several names); the
  // reply is name/value pairs, in no promised order.
  conn_->command({"CONFIG", "GET", "appendonly", "maxmemory-policy"}, [this, cb = std::move(cb)](const Reply& r) {
    std::vector<std::string> problems;
    if (r.isError()) {
      std::string_view e = r.error();
      if (e.find("unknown command") != std::string_view::npos || e.rfind("NOPERM", 0) == 0 ||
          e.rfind("ERR unknown", 0) == 0) {
        problems.push_back("cannot read appendonly and maxmemory-policy (CONFIG GET refused)");
      } else if (e.find("wrong number of arguments") != std::string_view::npos) {
        return cb(Error{fmt::format("checking Redis durability: {} (Redis at {} is older than 7, which the queue "
                                    "needs)", e, redisText())});
      } else {
        return cb(Error{fmt::format("checking Redis durability: {}", e)});
      }
    } else {
      std::map<std::string, std::string, std::less<>> values;
      for (size_t i = 0; i + 1 < r.size(); i += 2) values[r.at(i).str()] = r.at(i + 1).str();
      auto appendonly = values.find("appendonly");
      if (appendonly == values.end())
        problems.push_back("cannot read appendonly (not in the CONFIG GET reply)");
      else if (appendonly->second != "yes")
        problems.push_back("appendonly is 'no', so a Redis crash loses recent jobs (set appendonly yes)");
      auto policy = values.find("maxmemory-policy");
      if (policy == values.end())
        problems.push_back("cannot read maxmemory-policy (not in the CONFIG GET reply)");
      else if (policy->second != "noeviction")
        problems.push_back(
            fmt::format("maxmemory-policy is '{}', so Redis may evict jobs (set noeviction)", policy->second));
    }
    if (problems.empty()) return cb(true);
    std::string text = fmt::format("{}", fmt::join(problems, "; "));
    if (options_.strict)
      return cb(Error{fmt::format("Redis at {} may lose or evict jobs: {} (refusing under --strict / "
                                  "queue.strict)", redisText(), text)});
    log::warn("queue", "WARNING: Redis at {} may lose or evict jobs: {}", redisText(), text);
    cb(false);
  });
}

nlohmann::json toJson(const QueueCounts& c) {
  return {{"queue", c.queue},
          {"waiting", c.waiting},
          {"active", c.active},
          {"delayed", c.delayed},
          {"dead", c.dead},
          {"completed", c.completed_total},
          {"failed", c.failed_total},
          {"paused", c.paused},
          {"per_min", c.per_min},
          {"enqueued", c.enqueued_total},
          {"stalled", c.stalled_total},
          {"completed_kept", c.completed}};
}

}  // namespace clusterd::queue
