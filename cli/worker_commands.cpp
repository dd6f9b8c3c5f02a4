// `clusterd worker`: runs the built-in worker (HTTP front, job API, queue
// consumer) in this process, standalone from flags or as an ecosystem app
// (`--ecosystem FILE --app NAME`, which is how the master launches it).
//
// What it serves follows from what it is given: a socket (LISTEN_FDS) or a
// listen address gives it its HTTP front; queues without either make it a
// consumer alone; a health address adds a listener for /health and /metrics
// on the base port plus this instance's number (CLUSTERD_INSTANCE).
#include <signal.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/commands.h"
#include "common/cidr.h"
#include "common/log.h"
#include "config/load.h"
#include "jobs/shop.h"
#include "worker/worker.h"

namespace clusterd::cli {
namespace {

// Modules that extend the built-in worker install their routes (on
// w.router()) and job handlers here, before the worker starts.
void installWorkerExtensions(worker::Worker& w) {
  if (auto r = jobs::install(w); !r) log::error("jobs", "shop not installed: {}", r.error().message);
}

struct WorkerFlags {
  std::string listen;
  std::string health_listen;
  std::string queues;
  int concurrency = 0;
  std::string ecosystem;
  std::string app;
  std::string env;
  std::string max_body;
  std::string max_header;
  std::string request_timeout;
  std::string keepalive_timeout;
  std::string kill_timeout;
  std::string ready_wait;
  int max_connections = 0;
  bool access_log = false;
  std::string auth_token_env;
  std::vector<std::string> rate_limits;
  std::string name;
  std::string max_unsent;
  std::vector<std::string> trusted_proxies;
  std::vector<std::string> job_api;  // "QUEUE=NAME[,NAME...]"
  std::string job_api_token_env;
  std::string job_api_token_file;
};

// "QUEUE=NAME[,NAME...]" ("*" = any name) into the job API's list.
bool parseJobApi(const std::string& text, config::JobApiSpec& api) {
  size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size()) return false;
  std::vector<std::string> names;
  std::stringstream ss(text.substr(eq + 1));
  std::string name;
  while (std::getline(ss, name, ',')) {
    if (name.empty()) return false;
    names.push_back(name);
  }
  api.enabled = true;
  auto& list = api.queues[text.substr(0, eq)];
  list.insert(list.end(), names.begin(), names.end());
  return true;
}

// The job API's token from its env var or file. Errors name where the token
// was looked for, never what it holds.
Result<std::string> jobApiToken(const config::JobApiSpec& api) {
  if (!api.token_env.empty()) {
    const char* v = std::getenv(api.token_env.c_str());
    if (!v || !*v)
      return Error{"job_api.token_env names $" + api.token_env + ", which is empty; set it"};
    return std::string(v);
  }
  if (api.token_file.empty()) return std::string();
  std::ifstream in(api.token_file);
  if (!in)
    return Error{fmt::format("job_api.token_file {}: {}", api.token_file, std::strerror(errno))};
  std::string token;
  char buf[4096];
  in.read(buf, sizeof buf);
  token.assign(buf, static_cast<size_t>(in.gcount()));
  if (!in.eof()) return Error{"job_api.token_file " + api.token_file + ": longer than 4 KB"};
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  if (token.empty()) return Error{"job_api.token_file " + api.token_file + " is empty"};
  return token;
}

bool parseMillis(const std::string& text, std::chrono::milliseconds& out) {
  if (config::parseDuration(text, out)) return true;
  // Accept the common forms even where the config parser is stricter.
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || v < 0) return false;
  std::string unit(end);
  double ms = unit.empty() || unit == "ms" ? v
              : unit == "s"                ? v * 1000
              : unit == "m"                ? v * 60'000
              : unit == "h"                ? v * 3'600'000
                                           : -1;
  if (ms < 0) return false;
  out = std::chrono::milliseconds(static_cast<int64_t>(ms));
  return true;
}

bool parseBytes(const std::string& text, uint64_t& out) {
  if (config::parseMemory(text, out)) return true;
  char* end = nullptr;
  unsigned long long v = std::strtoull(text.c_str(), &end, 10);
  if (end == text.c_str()) return false;
  std::string unit(end);
  uint64_t mult = unit.empty() || unit == "B"   ? 1
                  : unit == "K" || unit == "KB" ? 1024
                  : unit == "M" || unit == "MB" ? 1024 * 1024
                  : unit == "G" || unit == "GB" ? 1024ull * 1024 * 1024
                                                : 0;
  if (mult == 0) return false;
  out = v * mult;
  return true;
}

// "[METHOD ]PREFIX=LIMIT/WINDOW", e.g. "/v1/=600/1m" or "POST /v1/orders=50/5m".
bool parseRateLimit(const std::string& text, config::RateLimitTier& tier) {
  size_t eq = text.rfind('=');
  if (eq == std::string::npos) return false;
  std::string lhs = text.substr(0, eq), rhs = text.substr(eq + 1);
  size_t sp = lhs.find(' ');
  if (sp != std::string::npos) {
    tier.method = lhs.substr(0, sp);
    lhs = lhs.substr(sp + 1);
  }
  if (lhs.empty() || lhs[0] != '/') return false;
  tier.path_prefix = lhs;
  size_t slash = rhs.find('/');
  if (slash == std::string::npos) return false;
  char* end = nullptr;
  tier.limit = std::strtoull(rhs.c_str(), &end, 10);
  if (end != rhs.c_str() + slash || tier.limit == 0) return false;
  if (!parseMillis(rhs.substr(slash + 1), tier.window) || tier.window.count() <= 0) return false;
  tier.name = (tier.method.empty() ? "" : tier.method + ":") + tier.path_prefix;
  return true;
}

// "q1,q2" or "q1:10,q2:5"; a queue without a count gets `concurrency`.
bool parseQueues(const std::string& text, int concurrency, std::map<std::string, int>& out) {
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    size_t colon = item.find(':');
    int n = concurrency;
    std::string name = item.substr(0, colon);
    if (colon != std::string::npos) {
      n = std::atoi(item.c_str() + colon + 1);
      if (n <= 0) return false;
    }
    if (name.empty()) return false;
    out[name] = n;
  }
  return true;
}

// "HOST:PORT", "[V6]:PORT" or ":PORT" (every IPv4 address); false when the
// port is not a number from `min_port` to 65535.
bool parseHostPort(const std::string& text, int min_port, std::string& host, int& port) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  std::string digits = text.substr(colon + 1);
  if (digits.empty() || digits.size() > 5 ||
      digits.find_first_not_of("0123456789") != std::string::npos)
    return false;
  port = std::atoi(digits.c_str());
  if (port < min_port || port > 65535) return false;
  host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host.empty()) host = "0.0.0.0";
  return true;
}

int usage(CliContext& ctx, const std::string& message) {
  std::cerr << "clusterd worker: " << message << "\n";
  ctx.exit_code = kExitUsage;
  return kExitUsage;
}

int runWorker(CliContext& ctx, const WorkerFlags& f) {
  worker::WorkerOptions o;
  // The app's `listen` asks for a front even when it is a Unix socket, which
  // only the master can hand over.
  bool wants_front = !f.listen.empty();
  if (!f.ecosystem.empty()) {
    if (f.app.empty()) return usage(ctx, "--ecosystem needs --app NAME");
    config::LoadOptions lo;
    lo.env_name = f.env;
    config::LoadResult lr = config::loadEcosystem(f.ecosystem, lo);
    if (!lr.ok()) {
      for (const auto& d : lr.diagnostics) std::cerr << d.toString() << "\n";
      ctx.exit_code = kExitFailed;
      return kExitFailed;
    }
    const config::AppSpec* app = nullptr;
    for (const auto& a : lr.ecosystem.apps) {
      if (a.name == f.app) app = &a;
    }
    if (!app) return usage(ctx, "no app named '" + f.app + "' in " + f.ecosystem);
    o.name = app->name;
    o.spec = app->worker;
    o.kill_timeout = app->kill_timeout;
    wants_front = wants_front || app->listen.has_value();
    if (app->listen && app->listen->kind == config::ListenAddress::Kind::kTcp) {
      o.listen_host = app->listen->host;
      o.listen_port = app->listen->port;
    }
    o.queue = lr.ecosystem.queue;
    o.postgres = lr.ecosystem.postgres;
    o.mail = lr.ecosystem.mail;
    o.handlers = lr.ecosystem.handlers;
    o.redis_url = lr.ecosystem.queue.redis_url;
    o.postgres_url = lr.ecosystem.postgres.url;
    // The app's env applies to this process too (the master set it already
    // when it launched us; standalone runs get it here).
    for (const auto& [k, v] : app->env) setenv(k.c_str(), v.c_str(), 0);
  }
  if (!ctx.redis_url.empty()) o.redis_url = ctx.redis_url;        // --redis, then $CLUSTERD_REDIS_URL
  if (!ctx.postgres_url.empty()) o.postgres_url = ctx.postgres_url;
  if (!f.name.empty()) o.name = f.name;

  if (!f.listen.empty()) {
    std::string host;
    int port = 0;
    if (!parseHostPort(f.listen, 0, host, port))
      return usage(ctx, "--listen wants HOST:PORT with a port up to 65535, e.g. 127.0.0.1:8080");
    o.listen_host = host;
    o.listen_port = static_cast<uint16_t>(port);
  }
  // The master numbers the instances of an app 0, 1, ... (CLUSTERD_INSTANCE).
  if (const char* text = std::getenv("CLUSTERD_INSTANCE"); text && *text) {
    char* end = nullptr;
    long n = std::strtol(text, &end, 10);
    if (*end != '\0' || n < 0 || n > 65535)
      return usage(ctx, fmt::format("CLUSTERD_INSTANCE={} is not an instance number (0, 1, ...); "
                                    "unset it or fix it",
                                    text));
    o.instance = static_cast<int>(n);
  }
  {
    std::string host;
    int base = 0;
    if (!f.health_listen.empty()) {
      if (!parseHostPort(f.health_listen, 1, host, base))
        return usage(ctx,
                     "--health-listen wants HOST:PORT with a base port from 1 to 65535, e.g. "
                     "127.0.0.1:9100");
    } else if (o.spec.health_listen) {
      host = o.spec.health_listen->host;
      base = o.spec.health_listen->port;
    }
    if (base > 0) {
      if (base + o.instance > 65535)
        return usage(ctx, fmt::format("the health listener of instance {} would be on port {} + "
                                      "{}, past 65535; lower the base port",
                                      o.instance, base, o.instance));
      o.health_host = host;
      o.health_port = static_cast<uint16_t>(base + o.instance);
    }
  }
  if (!f.queues.empty() && !parseQueues(f.queues, f.concurrency > 0 ? f.concurrency : 10, o.spec.queues)) {
    return usage(ctx, "--queues wants q1,q2 or q1:10,q2:5");
  }
  if (f.queues.empty() && f.concurrency > 0) {
    for (auto& [q, n] : o.spec.queues) n = f.concurrency;
  }
  if (!f.max_body.empty() && !parseBytes(f.max_body, o.spec.max_body_bytes)) return usage(ctx, "--max-body wants a size such as 1M");
  if (!f.max_header.empty() && !parseBytes(f.max_header, o.spec.max_header_bytes)) return usage(ctx, "--max-header wants a size such as 16K");
  if (!f.request_timeout.empty() && !parseMillis(f.request_timeout, o.spec.request_timeout)) return usage(ctx, "--request-timeout wants a duration such as 30s");
  if (!f.keepalive_timeout.empty() && !parseMillis(f.keepalive_timeout, o.spec.keepalive_timeout)) return usage(ctx, "--keepalive-timeout wants a duration such as 5s");
  if (!f.kill_timeout.empty() && !parseMillis(f.kill_timeout, o.kill_timeout)) return usage(ctx, "--kill-timeout wants a duration such as 1600ms");
  if (!f.ready_wait.empty() && !parseMillis(f.ready_wait, o.ready_wait))
    return usage(ctx, "--ready-wait wants a duration such as 2s");
  if (f.max_connections > 0) o.spec.max_connections = f.max_connections;
  if (f.access_log) o.spec.access_log = true;
  if (!f.auth_token_env.empty()) o.spec.auth_token_env = f.auth_token_env;
  for (const auto& text : f.rate_limits) {
    config::RateLimitTier tier;
    if (!parseRateLimit(text, tier)) {
      return usage(ctx, "--rate-limit '" + text + "': want [METHOD ]PREFIX=LIMIT/WINDOW, e.g. '/v1/=600/1m'");
    }
    o.spec.rate_limits.push_back(tier);
  }
  if (!f.max_unsent.empty() && !parseBytes(f.max_unsent, o.spec.max_unsent_bytes))
    return usage(ctx, "--max-unsent wants a size such as 1M");
  for (const auto& p : f.trusted_proxies) {
    if (!parseCidr(p))
      return usage(ctx, "--trusted-proxy '" + p +
                            "': want an IP address or a CIDR block such as 10.0.0.0/8");
    o.spec.trusted_proxies.push_back(p);
  }
  for (const auto& text : f.job_api) {
    if (!parseJobApi(text, o.spec.job_api))
      return usage(
          ctx, "--job-api '" + text +
                   "': want QUEUE=NAME[,NAME...] (\"*\" for any name), e.g. 'email=email.send'");
  }
  if (!f.job_api_token_env.empty()) o.spec.job_api.token_env = f.job_api_token_env;
  if (!f.job_api_token_file.empty()) o.spec.job_api.token_file = f.job_api_token_file;
  if (auto token = jobApiToken(o.spec.job_api); !token) {
    std::cerr << "clusterd worker: " << token.error().message << "\n";
    ctx.exit_code = kExitUsage;
    return kExitUsage;
  } else {
    o.job_api_token = std::move(*token);
  }
  if (!o.spec.auth_token_env.empty()) {
    const char* token = std::getenv(o.spec.auth_token_env.c_str());
    if (!token || !*token) {
      std::cerr << "clusterd worker: auth_token_env names $" << o.spec.auth_token_env
                << ", which is empty; set it or drop the setting\n";
      ctx.exit_code = kExitUsage;
      return kExitUsage;
    }
    o.auth_token = token;
  }

  if (!o.spec.queues.empty() && o.redis_url.empty()) {
    return usage(ctx, "--queues needs Redis: pass --redis URL or set CLUSTERD_REDIS_URL");
  }

  // The master passes the listening socket as fd 3 (sd_listen_fds protocol).
  if (const char* fds = std::getenv("LISTEN_FDS"); fds && std::atoi(fds) >= 1) {
    const char* pid = std::getenv("LISTEN_PID");
    if (!pid || !*pid || std::atol(pid) == static_cast<long>(getpid())) o.listen_fd = 3;
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDNAMES");
  }
  if (o.listen_fd < 0 && f.listen.empty() && o.listen_port == 0) {
    if (wants_front)
      return usage(ctx, "no socket to serve: app '" + o.name +
                            "' listens where only the master can bind; run it under the master "
                            "or pass --listen HOST:PORT");
    if (o.spec.queues.empty())
      return usage(ctx,
                   "nothing to do: pass --listen HOST:PORT to serve HTTP, --queues Q[:N],... to "
                   "consume jobs (with --redis URL), or both");
    if (!f.job_api.empty())
      return usage(ctx,
                   "--job-api needs --listen HOST:PORT: the job API is served on the worker's "
                   "front, which a queue-only worker does not have (--health-listen serves "
                   "/health and /metrics alone)");
    if (o.spec.job_api.enabled) {
      // From the file, where `clusterd validate` warns about it too.
      log::warn("worker",
                "app '{}' has http.job_api but no listen address: the job API is off (add "
                "`listen` to serve it)",
                o.name);
      o.spec.job_api = {};
    }
    // Queues and no address: the consumers run alone.
    o.front = worker::Front::kNone;
  }

  ::signal(SIGPIPE, SIG_IGN);
  uv_loop_t loop;
  uv_loop_init(&loop);
  int code;
  {
    worker::Worker w(&loop, std::move(o));
    installWorkerExtensions(w);
    Result<void> started = w.start();
    if (!started) {
      std::cerr << "clusterd worker: " << started.error().message << "\n";
      code = kExitSystem;
    } else {
      code = w.run();
    }
  }
  // Let the handles closed by the destructors finish closing.
  for (int i = 0; i < 100 && uv_run(&loop, UV_RUN_NOWAIT) != 0; ++i) {
  }
  uv_loop_close(&loop);
  ctx.exit_code = code;
  return code;
}

}  // namespace

void addWorkerCommands(CLI::App& app, CliContext& ctx) {
  auto f = std::make_shared<WorkerFlags>();
  CLI::App* cmd = app.add_subcommand(
      "worker",
      "Run the built-in worker: HTTP job API, /health, /metrics and queue consumers.\n"
      "With --queues and no --listen (and no socket from the master) it runs only its\n"
      "consumers; --health-listen then gives each instance its own /health and /metrics.\n"
      "\n"
      "Examples:\n"
      "  clusterd worker --listen 127.0.0.1:8080 --redis redis://127.0.0.1:6379\n"
      "  clusterd worker --listen :8080 --queues orders:20,email:5 --postgres "
      "postgresql://localhost/shop\n"
      "  clusterd worker --queues orders:50 --redis redis://127.0.0.1:6379 --health-listen "
      "127.0.0.1:9100\n"
      "  clusterd worker --ecosystem ecosystem/shop.yaml --app shop-api --env production\n"
      "\n"
      "Signals: SIGTERM/SIGINT drain (stop accepting, finish requests and jobs) and exit 0.\n"
      "Exit codes: 0 drained, 100 usage (also: neither --listen nor --queues), 111 cannot\n"
      "listen or start.");
  cmd->fallthrough();
  cmd->add_option("--listen", f->listen,
                  "HOST:PORT to listen on (ignored when LISTEN_FDS passes a socket); with neither, "
                  "a worker with --queues only consumes");
  cmd->add_option("--health-listen", f->health_listen,
                  "HOST:PORT for /health and /metrics alone; instance N (CLUSTERD_INSTANCE) "
                  "takes port + N");
  cmd->add_option("--queues", f->queues, "Queues to consume: q1,q2 or q1:10,q2:5 (concurrency per queue)");
  cmd->add_option("--concurrency", f->concurrency, "Jobs run at once per queue (default 10)");
  cmd->add_option("--ecosystem", f->ecosystem, "Ecosystem file to read this worker's settings from");
  cmd->add_option("--app", f->app, "App name in the ecosystem file");
  cmd->add_option("--env", f->env, "Select env_<ENV> of the ecosystem file");
  cmd->add_option("--name", f->name, "Name in logs and status (default: the app name or 'worker')");
  cmd->add_option("--max-body", f->max_body, "Largest request body (default 1M); larger gets 413");
  cmd->add_option("--max-header", f->max_header, "Largest request head (default 16K); larger gets 431");
  cmd->add_option("--request-timeout", f->request_timeout, "Time to receive a request and to answer it (default 30s)");
  cmd->add_option("--keepalive-timeout", f->keepalive_timeout, "Idle keep-alive connections close after this (default 5s)");
  cmd->add_option("--kill-timeout", f->kill_timeout, "Drain budget after SIGTERM (default 1600ms)");
  cmd->add_option("--ready-wait", f->ready_wait,
                  "Longest wait for Redis before accepting anyway (default 2s)");
  cmd->add_option("--max-connections", f->max_connections, "Open connections per worker (default 10000); more get 503");
  cmd->add_flag("--access-log", f->access_log, "One JSON line per request on stdout");
  cmd->add_option("--auth-token-env", f->auth_token_env, "Env var holding the bearer token required on /v1/");
  cmd->add_option("--rate-limit", f->rate_limits, "Per-IP limit, '[METHOD ]PREFIX=LIMIT/WINDOW' (repeatable), e.g. '/v1/=600/1m'");
  cmd->add_option("--max-unsent", f->max_unsent,
                  "Unsent responses per connection before reading pauses (default 1M)");
  cmd->add_option("--trusted-proxy", f->trusted_proxies,
                  "Proxy address or CIDR whose X-Forwarded-For names the client (repeatable)");
  cmd->add_option(
      "--job-api", f->job_api,
      "Open the job API for QUEUE=NAME[,NAME...] ('*' = any name; repeatable); off without it");
  cmd->add_option(
      "--job-api-token-env", f->job_api_token_env,
      "Env var holding the job API's bearer token (required unless listening on loopback)");
  cmd->add_option("--job-api-token-file", f->job_api_token_file,
                  "File holding the job API's bearer token");
  cmd->callback([&ctx, f] { runWorker(ctx, *f); });
}

}  // namespace clusterd::cli
