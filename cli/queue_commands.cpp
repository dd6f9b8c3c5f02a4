// Verbs of the queue module: enqueue, queues, jobs, job and queue (admin).
//
// Each verb creates a libuv loop and a queue::Client, issues its calls and
// runs the loop until they complete (or a time limit passes). The Redis URL
// comes from --redis, $CLUSTERD_REDIS_URL or the `queue.redis_url` of the
// file given with --ecosystem, in that order.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstring>
#include <ctime>
#include <map>
#include <fstream>
#include <iostream>
#include <optional>
#include <string_view>

#include "cli/commands.h"
#include "common/nesting.h"
#include "config/load.h"
#include "queue/client.h"
#include "queue/redis.h"

namespace clusterd::cli {
namespace {

using queue::Client;

struct QueueCli {
  std::string ecosystem;
  // enqueue
  std::string queue_name, job_name, payload = "null", delay, run_at, bulk, unique, unique_ttl, backoff,
                                    backoff_type, timeout;
  int priority = 0, attempts = 0;
  bool strict = false;  // refuse when Redis may lose or evict jobs
  // jobs / job / queue
  std::string state = "waiting", id, action = "show", older_than;
  int limit = 50;
};

// A loop with one client, run until the current call finishes.
class Session {
 public:
  Session() { uv_loop_init(&loop_); }
  ~Session() {
    client_.reset();
    for (int i = 0; i < 100 && uv_loop_close(&loop_) == UV_EBUSY; ++i) uv_run(&loop_, UV_RUN_NOWAIT);
  }
  bool open(CliContext& ctx, const QueueCli& o) {
    std::string url = ctx.redis_url;
    queue::ClientOptions opts;
    if (!o.ecosystem.empty()) {
      auto loaded = config::loadEcosystem(o.ecosystem);
      if (!loaded.ok()) {
        for (auto& d : loaded.diagnostics) std::cerr << d.toString() << "\n";
        ctx.exit_code = kExitFailed;
        return false;
      }
      if (url.empty()) url = loaded.ecosystem.queue.redis_url;
      opts.defaults = loaded.ecosystem.queue.queues;
      opts.strict = loaded.ecosystem.queue.strict;
    }
    opts.strict = opts.strict || o.strict;
    opts.redis_url = url.empty() ? "redis://127.0.0.1:6379" : url;
    opts.client_name = "clusterd-cli";
    auto c = Client::create(&loop_, std::move(opts));
    if (!c) {
      std::cerr << "clusterd: " << c.error().message << "\n";
      ctx.exit_code = kExitUsage;
      return false;
    }
    client_ = std::move(c).value();
    return true;
  }
  Client& client() { return *client_; }
  // Runs the loop until *done or 30 s pass.
  bool runUntil(const bool& done) {
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    uv_timer_t tick;
    uv_timer_init(&loop_, &tick);
    uv_timer_start(&tick, [](uv_timer_t*) {}, 50, 50);
    while (!done && std::chrono::steady_clock::now() < end) uv_run(&loop_, UV_RUN_ONCE);
    uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
    uv_run(&loop_, UV_RUN_NOWAIT);
    return done;
  }
  // Issues one call and waits for its result.
  template <typename T, typename F>
  std::optional<Result<T>> await(F&& call) {
    std::optional<Result<T>> out;
    bool done = false;
    call([&](Result<T> r) {
      out.emplace(std::move(r));
      done = true;
    });
    runUntil(done);
    return out;
  }

 private:
  uv_loop_t loop_;
  std::unique_ptr<Client> client_;
};

// Prints an error and sets the exit code: Redis trouble is a system error.
template <typename T>
bool check(CliContext& ctx, const std::optional<Result<T>>& r) {
  if (!r) {
    std::cerr << "clusterd: timed out waiting for Redis\n";
    ctx.exit_code = kExitSystem;
    return false;
  }
  if (!*r) {
    std::cerr << "clusterd: " << r->error().message << "\n";
    const auto& m = r->error().message;
    bool system = m.find("cannot reach Redis") != std::string::npos || m.find("connection") != std::string::npos;
    ctx.exit_code = system ? kExitSystem : kExitFailed;
    return false;
  }
  return true;
}

// "1500", "500ms", "30s", "5m", "1h", "2d" -> milliseconds.
bool parseDurationText(const std::string& text, std::chrono::milliseconds& out) {
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || v < 0) return false;
  std::string unit(end);
  double mult = unit.empty() || unit == "ms" ? 1 : unit == "s" ? 1e3 : unit == "m" ? 6e4 : unit == "h" ? 3.6e6
              : unit == "d" ? 8.64e7 : -1;
  if (mult < 0) return false;
  out = std::chrono::milliseconds(static_cast<int64_t>(v * mult));
  return true;
}

bool parseMs(CliContext& ctx, const std::string& flag, const std::string& text, std::chrono::milliseconds& out) {
  if (text.empty()) return true;
  if (!parseDurationText(text, out)) {
    std::cerr << fmt::format("clusterd: {} '{}' is not a duration (e.g. 500ms, 30s, 5m, 1h)\n", flag, text);
    ctx.exit_code = kExitUsage;
    return false;
  }
  return true;
}

bool jobOptions(CliContext& ctx, const QueueCli& o, queue::JobOptions& jo) {
  if (!parseMs(ctx, "--delay", o.delay, jo.delay) || !parseMs(ctx, "--backoff", o.backoff, jo.backoff) ||
      !parseMs(ctx, "--timeout", o.timeout, jo.timeout) || !parseMs(ctx, "--unique-ttl", o.unique_ttl, jo.unique_ttl))
    return false;
  if (!o.run_at.empty()) {
    char* end = nullptr;
    long long v = std::strtoll(o.run_at.c_str(), &end, 10);
    if (*end || v <= 0) {
      std::cerr << "clusterd: --run-at wants Unix time in milliseconds\n";
      ctx.exit_code = kExitUsage;
      return false;
    }
    jo.run_at_ms = v;
  }
  if (!o.backoff_type.empty()) {
    if (o.backoff_type != "fixed" && o.backoff_type != "exponential") {
      std::cerr << "clusterd: --backoff-type is 'exponential' or 'fixed'\n";
      ctx.exit_code = kExitUsage;
      return false;
    }
    jo.backoff_type = o.backoff_type == "fixed" ? queue::BackoffType::kFixed : queue::BackoffType::kExponential;
    jo.backoff_set = true;
  }
  jo.priority = o.priority;
  jo.attempts = o.attempts;
  jo.unique_key = o.unique;
  return true;
}

std::optional<nlohmann::json> parseJson(CliContext& ctx, const std::string& text, const std::string& where) {
  auto j = parseJsonLimited(text);
  if (!j) {
    std::cerr << fmt::format("clusterd: {}: {}\n", where, j.error().message);
    ctx.exit_code = kExitUsage;
    return std::nullopt;
  }
  return std::move(*j);
}

// Before enqueueing: warn (stderr) when Redis may lose or evict jobs; under
// --strict or queue.strict, refuse (exit 1) instead.
bool durable(CliContext& ctx, Session& s) {
  auto r = s.await<bool>([&](auto cb) { s.client().checkDurability(cb); });
  return check(ctx, r);
}

void runEnqueue(CliContext& ctx, const QueueCli& o) {
  queue::JobOptions jo;
  if (!jobOptions(ctx, o, jo)) return;
  Session s;
  if (o.bulk.empty()) {
    auto payload = parseJson(ctx, o.payload, "the payload");
    if (!payload) return;
    if (!s.open(ctx, o) || !durable(ctx, s)) return;
    auto r = s.await<queue::Enqueued>([&](auto cb) {
      s.client().enqueue(o.queue_name, {o.job_name, queue::payloadFromJson(*payload), jo}, cb);
    });
    if (!check(ctx, r)) return;
    std::cout << (*r)->id << "\n";
    return;
  }
  std::ifstream file;
  std::istream* in = &std::cin;
  if (o.bulk != "-") {
    file.open(o.bulk);
    if (!file) {
      std::cerr << fmt::format("clusterd: cannot read {}: {}\n", o.bulk, std::strerror(errno));
      ctx.exit_code = kExitFailed;
      return;
    }
    in = &file;
  }
  if (!s.open(ctx, o) || !durable(ctx, s)) return;
  constexpr size_t kChunk = 10'000;
  std::string line;
  size_t line_no = 0, total = 0;
  std::vector<queue::NewJob> chunk;
  auto flush = [&]() {
    if (chunk.empty()) return true;
    size_t n = chunk.size();
    auto r = s.await<std::vector<queue::Enqueued>>(
        [&](auto cb) { s.client().enqueueBulk(o.queue_name, std::move(chunk), cb); });
    chunk.clear();
    if (!check(ctx, r)) {
      std::cerr << fmt::format("clusterd: {} jobs were enqueued before the error\n", total);
      return false;
    }
    total += n;
    return true;
  };
  while (std::getline(*in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto payload = parseJson(ctx, line, fmt::format("{}:{}", o.bulk == "-" ? "stdin" : o.bulk, line_no));
    if (!payload) return;
    chunk.push_back({o.job_name, queue::payloadFromJson(*payload), jo});
    if (chunk.size() >= kChunk && !flush()) return;
  }
  if (!flush()) return;
  std::cout << total << "\n";
}

void runQueues(CliContext& ctx, const QueueCli& o, bool json) {
  Session s;
  if (!s.open(ctx, o)) return;
  auto names = s.await<std::vector<std::string>>([&](auto cb) { s.client().queues(cb); });
  if (!check(ctx, names)) return;
  std::vector<queue::QueueCounts> all;
  for (const auto& q : **names) {
    auto c = s.await<queue::QueueCounts>([&](auto cb) { s.client().counts(q, cb); });
    if (!check(ctx, c)) return;
    all.push_back(**c);
  }
  if (json) {
    auto arr = nlohmann::json::array();
    for (auto& c : all) arr.push_back(queue::toJson(c));
    std::cout << arr.dump() << "\n";
    return;
  }
  std::cout << fmt::format("{:<20} {:>9} {:>7} {:>8} {:>11} {:>8} {:>7} {:>7} {:>8}\n", "QUEUE", "WAITING", "ACTIVE",
                           "DELAYED", "COMPLETED", "FAILED", "DEAD", "PAUSED", "PER_MIN");
  for (auto& c : all)
    std::cout << fmt::format("{:<20} {:>9} {:>7} {:>8} {:>11} {:>8} {:>7} {:>7} {:>8}\n", c.queue, c.waiting,
                             c.active, c.delayed, c.completed_total, c.failed_total, c.dead,
                             c.paused ? "yes" : "no", c.per_min);
}

void runJobs(CliContext& ctx, const QueueCli& o, bool json) {
  queue::JobState st;
  if (!queue::parseJobState(o.state, st)) {
    std::cerr << "clusterd: --state is one of waiting, active, delayed, completed, dead\n";
    ctx.exit_code = kExitUsage;
    return;
  }
  Session s;
  if (!s.open(ctx, o)) return;
  auto r = s.await<std::vector<queue::Job>>([&](auto cb) { s.client().listJobs(o.queue_name, st, 0, o.limit, cb); });
  if (!check(ctx, r)) return;
  if (json) {
    auto arr = nlohmann::json::array();
    for (auto& j : **r) arr.push_back(j.toJson());
    std::cout << arr.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return;
  }
  std::cout << fmt::format("{:<12} {:<24} {:<10} {:>8} {}\n", "ID", "NAME", "STATE", "ATTEMPTS", "PAYLOAD / ERROR");
  for (auto& j : **r) {
    // A record written by another language may hold text that is not UTF-8.
    std::string detail =
        j.reason.empty() ? j.payloadJson().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) : j.reason;
    if (detail.size() > 60) detail = detail.substr(0, 57) + "...";
    std::cout << fmt::format("{:<12} {:<24} {:<10} {:>8} {}\n", j.id, j.name, queue::jobStateName(j.state),
                             fmt::format("{}/{}", j.attempt, j.attempts), detail);
  }
}

// Unix ms -> "2026-11-30T23:12:12.644Z".
std::string isoTime(int64_t ms) {
  time_t secs = static_cast<time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03}Z", buf, ms % 1000);
}

std::string jsonText(const nlohmann::json& j) {
  // Replace, not throw, on text that is not UTF-8 (a command's raw output).
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// `clusterd job Q ID` without --json: one "field: value" line each, the
// errors last, one line per attempt.
void printJob(const queue::Job& j) {
  auto line = [](std::string_view label, const std::string& value) {
    std::cout << fmt::format("{:<10} {}\n", std::string(label) + ":", value);
  };
  line("job", fmt::format("{} in queue {}", j.id, j.queue));
  line("name", j.name);
  line("state", queue::jobStateName(j.state));
  const char* when = j.state == queue::JobState::kDelayed  ? "runs at"
                     : j.state == queue::JobState::kActive ? "lease to"
                     : j.state == queue::JobState::kWaiting ? nullptr
                                                            : "finished";
  if (when && j.when_ms > 0) line(when, isoTime(j.when_ms));
  line("created", isoTime(j.created_ms));
  line("attempts", fmt::format("{} failed of {} allowed, {} stalls", j.attempt, j.attempts, j.stalls));
  line("priority", std::to_string(j.priority));
  if (!j.unique_key.empty()) line("unique", j.unique_key);
  line("payload", jsonText(j.payloadJson()));
  if (!j.result.empty()) line("result", jsonText(j.resultJson()));
  if (!j.reason.empty()) line("reason", j.reason + (j.permanent ? " (permanent)" : ""));
  for (const auto& e : j.errors) line("error", fmt::format("attempt {} at {}: {}", e.attempt, isoTime(e.at_ms), e.error));
}

void runJob(CliContext& ctx, const QueueCli& o, bool json) {
  Session s;
  if (o.action != "show" && o.action != "retry" && o.action != "delete") {
    std::cerr << "clusterd: job action is show, retry or delete\n";
    ctx.exit_code = kExitUsage;
    return;
  }
  if (!s.open(ctx, o)) return;
  if (o.action == "show") {
    auto r = s.await<std::optional<queue::Job>>([&](auto cb) { s.client().job(o.queue_name, o.id, cb); });
    if (!check(ctx, r)) return;
    if (!**r) {
      std::cerr << fmt::format("clusterd: no job {} in queue '{}'\n", o.id, o.queue_name);
      ctx.exit_code = kExitFailed;
      return;
    }
    if (json)
      std::cout << jsonText((**r)->toJson()) << "\n";
    else
      printJob(***r);
    return;
  }
  auto op = o.action == "retry" ? queue::AdminOp::kRetry : queue::AdminOp::kDelete;
  auto r = s.await<int64_t>([&](auto cb) { s.client().admin(o.queue_name, op, o.id, cb); });
  if (!check(ctx, r)) return;
  if (**r == 0) {
    std::cerr << fmt::format("clusterd: no job {} in queue '{}'\n", o.id, o.queue_name);
    ctx.exit_code = kExitFailed;
    return;
  }
  std::cout << fmt::format("{} {}\n", o.action == "retry" ? "retrying" : "deleted", o.id);
}

void runQueueAdmin(CliContext& ctx, const QueueCli& o) {
  static const std::map<std::string, queue::AdminOp> kOps = {{"pause", queue::AdminOp::kPause},
                                                             {"resume", queue::AdminOp::kResume},
                                                             {"drain", queue::AdminOp::kDrain},
                                                             {"clean", queue::AdminOp::kClean}};
  auto it = kOps.find(o.action);
  if (it == kOps.end()) {
    std::cerr << "clusterd: queue action is pause, resume, drain or clean\n";
    ctx.exit_code = kExitUsage;
    return;
  }
  std::chrono::milliseconds age{0};
  if (!parseMs(ctx, "--older-than", o.older_than, age)) return;
  Session s;
  if (!s.open(ctx, o)) return;
  auto r = s.await<int64_t>(
      [&](auto cb) { s.client().admin(o.queue_name, it->second, std::to_string(age.count()), cb); });
  if (!check(ctx, r)) return;
  if (o.action == "pause" || o.action == "resume")
    std::cout << fmt::format("{} {}\n", o.queue_name, o.action == "pause" ? "paused" : "resumed");
  else
    std::cout << fmt::format("{} jobs removed\n", **r);
}

}  // namespace

void addQueueCommands(CLI::App& app, CliContext& ctx) {
  auto o = std::make_shared<QueueCli>();

  auto* enq = app.add_subcommand("enqueue",
                                 "Add a job to a queue; prints its id (or, with --bulk, the count).\n"
                                 "\n"
                                 "Examples:\n"
                                 "  clusterd enqueue orders order.process '{\"order_id\": 42}'\n"
                                 "  id=$(clusterd enqueue mail email.batch '{\"ids\":[1,2]}' --delay 5m)\n"
                                 "  clusterd enqueue orders order.process '{}' --unique order-42 --attempts 5\n"
                                 "  seq 1000 | sed 's/.*/{\"n\": &}/' | clusterd enqueue work noop --bulk -\n");
  enq->add_option("queue", o->queue_name, "Queue name")->required();
  enq->add_option("name", o->job_name, "Job name (selects the handler)")->required();
  enq->add_option("payload", o->payload, "Payload as JSON (default null)");
  enq->add_option("--bulk", o->bulk, "Read one JSON payload per line from FILE or - (stdin)");
  enq->add_option("--delay", o->delay, "Run no earlier than after this delay (500ms, 30s, 5m)");
  enq->add_option("--run-at", o->run_at, "Run no earlier than this Unix time in ms");
  enq->add_option("--priority", o->priority, "-1000..1000, higher first (default 0: FIFO)");
  enq->add_option("--attempts", o->attempts, "Total runs allowed (default: queue's, else 3)");
  enq->add_option("--backoff", o->backoff, "Base delay between attempts (default 1s)");
  enq->add_option("--backoff-type", o->backoff_type, "exponential (with jitter, default) or fixed");
  enq->add_option("--timeout", o->timeout, "Time limit per attempt (default 60s)");
  enq->add_option("--unique", o->unique, "Unique key: while a job with it is pending, return that job's id");
  enq->add_option("--unique-ttl", o->unique_ttl, "Keep the unique key taken this long after the job finished");
  enq->add_option("--ecosystem", o->ecosystem, "Ecosystem file (Redis URL and queue defaults)");
  enq->add_flag("--strict", o->strict,
                "Refuse (exit 1) if Redis may lose or evict jobs (appendonly off or an evicting "
                "maxmemory-policy); without it, warn on stderr. Also queue.strict in the ecosystem file");
  enq->callback([&ctx, o] { runEnqueue(ctx, *o); });

  auto* qs = app.add_subcommand("queues",
                                "List queues with their sizes and counters.\n"
                                "\n"
                                "Examples:\n"
                                "  clusterd queues\n"
                                "  clusterd queues --json | jq '.[] | select(.dead > 0)'\n");
  qs->add_flag("--json", ctx.json, "One JSON array, one object per queue");
  qs->add_option("--ecosystem", o->ecosystem, "Ecosystem file (for the Redis URL)");
  qs->callback([&ctx, o] { runQueues(ctx, *o, ctx.json); });

  auto* jobs = app.add_subcommand("jobs",
                                  "List the jobs of a queue in one state.\n"
                                  "\n"
                                  "Examples:\n"
                                  "  clusterd jobs orders\n"
                                  "  clusterd jobs orders --state dead --json\n");
  jobs->add_option("queue", o->queue_name, "Queue name")->required();
  jobs->add_option("--state", o->state, "waiting (default), active, delayed, completed or dead");
  jobs->add_option("--limit", o->limit, "At most this many (default 50)");
  jobs->add_flag("--json", ctx.json, "JSON array of jobs");
  jobs->add_option("--ecosystem", o->ecosystem, "Ecosystem file (for the Redis URL)");
  jobs->callback([&ctx, o] { runJobs(ctx, *o, ctx.json); });

  auto* job = app.add_subcommand("job",
                                 "Show, retry (dead jobs) or delete one job. show prints its state, payload,\n"
                                 "result (when the handler returned one) and the error of each failed attempt.\n"
                                 "\n"
                                 "Examples:\n"
                                 "  clusterd job orders 17\n"
                                 "  clusterd job orders 17 --json | jq .result\n"
                                 "  clusterd job orders 17 retry\n"
                                 "  clusterd job orders 17 delete\n");
  job->add_option("queue", o->queue_name, "Queue name")->required();
  job->add_option("id", o->id, "Job id")->required();
  job->add_option("action", o->action, "show (default), retry or delete");
  job->add_flag("--json", ctx.json, "show: the job as one JSON object (with result when there is one)");
  job->add_option("--ecosystem", o->ecosystem, "Ecosystem file (for the Redis URL)");
  job->callback([&ctx, o] { runJob(ctx, *o, ctx.json); });

  auto* q = app.add_subcommand("queue",
                               "Per-queue controls: pause, resume, drain (delete waiting and delayed jobs),\n"
                               "clean (drop completed and dead jobs, optionally only older ones).\n"
                               "\n"
                               "Examples:\n"
                               "  clusterd queue orders pause\n"
                               "  clusterd queue orders resume\n"
                               "  clusterd queue orders clean --older-than 1h\n");
  q->add_option("queue", o->queue_name, "Queue name")->required();
  q->add_option("action", o->action, "pause, resume, drain or clean")->required();
  q->add_option("--older-than", o->older_than, "clean: only jobs finished longer ago than this");
  q->add_option("--ecosystem", o->ecosystem, "Ecosystem file (for the Redis URL)");
  q->callback([&ctx, o] { runQueueAdmin(ctx, *o); });
}

}  // namespace clusterd::cli
