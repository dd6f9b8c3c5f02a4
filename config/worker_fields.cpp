// The built-in worker's keys of an app (`script: builtin:worker`): `queues`
// (queue name -> concurrency), `health_listen` (the per-instance address of
// /health and /metrics) and `http` (limits, access log, bearer-token auth,
// rate-limit tiers, trusted proxies and the job API of its HTTP front).
#include <fmt/format.h>

#include <set>

#include "common/cidr.h"
#include "config/internal.h"

namespace clusterd::config {
namespace {

bool isEnvName(const std::string& s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

void readRateLimits(Reader& r, const Reader::Entry& e, const std::string& path, WorkerSpec& w) {
  if (!e.value.IsSequence()) {
    r.error(e.mark(), path,
            "expected a list of tiers ({name, path_prefix, method, limit, window}), got " +
                Reader::describe(e.value));
    return;
  }
  std::set<std::string> names;
  for (size_t i = 0; i < e.value.size(); ++i) {
    const YAML::Node node = e.value[i];
    const std::string p = fmt::format("{}[{}]", path, i);
    std::vector<Reader::Entry> entries;
    if (!r.entries(node, node.Mark(), p, entries)) continue;
    RateLimitTier tier;
    tier.path_prefix = "/";
    bool has_limit = false, has_window = false;
    using E = Reader::Entry;
    const std::vector<Field<RateLimitTier>> fields = {
        {"name",
         [](Reader& r, const E& e, const std::string& p, RateLimitTier& t) {
           if (auto v = r.string(e.value, e.mark(), p)) t.name = *v;
         }},
        {"path_prefix",
         [](Reader& r, const E& e, const std::string& p, RateLimitTier& t) {
           auto v = r.string(e.value, e.mark(), p);
           if (v && (v->empty() || (*v)[0] != '/')) {
             r.error(e.mark(), p, fmt::format("expected a URL path starting with `/`, got `{}`", *v));
           } else if (v) {
             t.path_prefix = *v;
           }
         }},
        {"method",
         [](Reader& r, const E& e, const std::string& p, RateLimitTier& t) {
           if (auto v = r.choice(e.value, e.mark(), p,
                                 {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})) {
             t.method = *v;
           }
         }},
        {"limit",
         [&has_limit](Reader& r, const E& e, const std::string& p, RateLimitTier& t) {
           has_limit = true;
           if (auto v = r.integer(e.value, e.mark(), p, 1, 1'000'000'000))
             t.limit = static_cast<uint64_t>(*v);
         }},
        {"window",
         [&has_window](Reader& r, const E& e, const std::string& p, RateLimitTier& t) {
           has_window = true;
           if (auto v = r.duration(e.value, e.mark(), p, Millis(1))) t.window = *v;
         }},
    };
    readFields(r, entries, p, "a rate-limit tier", fields, tier);
    if (tier.name.empty()) tier.name = fmt::format("tier{}", i);
    if (!names.insert(tier.name).second) {
      r.error(node.Mark(), p + ".name",
              fmt::format("duplicate rate-limit tier name `{}`", tier.name));
    }
    if (!has_limit)
      r.error(node.Mark(), p + ".limit", "missing; a tier needs `limit` (requests per window)");
    if (!has_window)
      r.error(node.Mark(), p + ".window",
              "missing; a tier needs `window` (a duration such as 1s or 1m)");
    w.rate_limits.push_back(std::move(tier));
  }
}

void readTrustedProxies(Reader& r, const Reader::Entry& e, const std::string& path, WorkerSpec& w) {
  if (!e.value.IsSequence()) {
    r.error(e.mark(), path,
            "expected a list of proxy addresses or CIDR blocks (e.g. [10.0.0.0/8, 127.0.0.1]), "
            "got " +
                Reader::describe(e.value));
    return;
  }
  for (size_t i = 0; i < e.value.size(); ++i) {
    const std::string p = fmt::format("{}[{}]", path, i);
    auto v = r.string(e.value[i], e.value[i].Mark(), p);
    if (!v) continue;
    if (!parseCidr(*v)) {
      r.error(e.value[i].Mark(), p,
              fmt::format("expected an IP address or a CIDR block such as 10.0.0.0/8 or fd00::/8, "
                          "got `{}`",
                          *v));
      continue;
    }
    w.trusted_proxies.push_back(*v);
  }
}

// job_api: {queues: {QUEUE: [JOB NAME, ...]}, token_env: VAR, token_file: PATH}
void readJobApi(Reader& r, const Reader::Entry& e, const std::string& path, WorkerSpec& w) {
  std::vector<Reader::Entry> entries;
  if (!r.entries(e.value, e.mark(), path, entries)) return;
  JobApiSpec& api = w.job_api;
  api.enabled = true;
  bool has_queues = false;
  using E = Reader::Entry;
  const std::vector<Field<JobApiSpec>> fields = {
      {"queues",
       [&has_queues](Reader& r, const E& e, const std::string& p, JobApiSpec& api) {
         has_queues = true;
         std::vector<Reader::Entry> qs;
         if (!r.entries(e.value, e.mark(), p, qs)) return;
         for (const auto& q : qs) {
           const std::string qp = p + "." + q.key;
           if (!isValidQueueName(q.key)) {
             r.error(q.key_node.Mark(), qp,
                     fmt::format("`{}` is not a valid queue name: use letters, digits, `-`, `_`, "
                                 "`.` or `:`",
                                 q.key));
             continue;
           }
           if (!q.value.IsSequence() || q.value.size() == 0) {
             r.error(q.mark(), qp,
                     "expected a list of the job names this queue takes through the job API "
                     "(e.g. [email.send]; [\"*\"] for any)");
             continue;
           }
           std::vector<std::string> names;
           for (size_t i = 0; i < q.value.size(); ++i) {
             auto n = r.string(q.value[i], q.value[i].Mark(), fmt::format("{}[{}]", qp, i));
             if (n && n->empty()) {
               r.error(q.value[i].Mark(), fmt::format("{}[{}]", qp, i), "a job name is not empty");
             } else if (n) {
               names.push_back(*n);
             }
           }
           api.queues[q.key] = std::move(names);
         }
       }},
      {"token_env",
       [](Reader& r, const E& e, const std::string& p, JobApiSpec& api) {
         auto v = r.string(e.value, e.mark(), p);
         if (v && !isEnvName(*v)) {
           r.error(e.mark(), p,
                   fmt::format("expected the name of an environment variable (e.g. "
                               "JOB_API_TOKEN), got `{}`",
                               *v));
         } else if (v) {
           api.token_env = *v;
         }
       }},
      {"token_file",
       [](Reader& r, const E& e, const std::string& p, JobApiSpec& api) {
         auto v = r.string(e.value, e.mark(), p);
         if (v && (v->empty() || (*v)[0] != '/')) {
           r.error(e.mark(), p, fmt::format("expected an absolute path, got `{}`", *v));
         } else if (v) {
           api.token_file = *v;
         }
       }},
  };
  readFields(r, entries, path, "the `job_api` settings", fields, api);
  if (!has_queues)
    r.error(e.mark(), path + ".queues",
            "missing; the job API takes jobs only for the queues and job names listed here");
  if (!api.token_env.empty() && !api.token_file.empty())
    r.error(e.mark(), path, "give one of token_env and token_file, not both");
}

}  // namespace

bool isLoopbackHost(const std::string& host) {
  if (host == "localhost") return true;
  static const Cidr v4 = *parseCidr("127.0.0.0/8"), v6 = *parseCidr("::1");
  auto ip = parseIp(host);
  return ip && (v4.contains(*ip) || v6.contains(*ip));
}

void checkJobApi(Reader& r, const AppSpec& app, const YAML::Mark& at, const std::string& path) {
  const JobApiSpec& api = app.worker.job_api;
  if (!api.enabled || !api.token_env.empty() || !api.token_file.empty() ||
      !app.worker.auth_token_env.empty())
    return;
  if (!app.listen || app.listen->kind == ListenAddress::Kind::kUnix ||
      isLoopbackHost(app.listen->host))
    return;
  r.error(at, path + ".http.job_api",
          fmt::format("the job API needs a bearer token when the worker listens on {} (not "
                      "loopback only): set job_api.token_env or job_api.token_file, or listen "
                      "on 127.0.0.1",
                      app.listen->text));
}

void readWorkerQueues(Reader& r, const Reader::Entry& e, const std::string& path,
                      WorkerSpec& worker) {
  std::vector<Reader::Entry> entries;
  if (!r.entries(e.value, e.mark(), path, entries)) return;
  if (entries.empty()) {
    r.error(e.mark(), path, "expected at least one queue (queue name: concurrency, e.g. `orders: 8`)");
    return;
  }
  for (const auto& q : entries) {
    const std::string p = path + "." + q.key;
    if (!isValidQueueName(q.key)) {
      r.error(
          q.key_node.Mark(), p,
          fmt::format("`{}` is not a valid queue name: use letters, digits, `-`, `_`, `.` or `:`",
                      q.key));
      continue;
    }
    if (auto n = r.integer(q.value, q.mark(), p, 1, 10'000))
      worker.queues[q.key] = static_cast<int>(*n);
  }
}

// Only host:port: each instance adds its number to the port, which a Unix
// socket path has no counterpart for. The range the instances take is
// checked once `instances` is resolved (checkApps).
void readHealthListen(Reader& r, const Reader::Entry& e, const std::string& path,
                      const std::string& base_dir, WorkerSpec& worker) {
  auto t = r.text(e.value, e.mark(), path, "`host:port` (instance N listens on port + N)");
  if (!t) return;
  std::string why;
  auto addr = parseListen(*t, base_dir, why);
  if (!addr) {
    r.error(e.mark(), path, why + " (instance N listens on port + N)");
    return;
  }
  if (addr->kind != ListenAddress::Kind::kTcp) {
    r.error(e.mark(), path,
            fmt::format("expected `host:port`, got the Unix socket path `{}`: each instance "
                        "listens on the base port plus its number (127.0.0.1:9100 gives "
                        "instance 0 port 9100, instance 1 port 9101)",
                        *t));
    return;
  }
  worker.health_listen = std::move(*addr);
}

void readWorkerHttp(Reader& r, const Reader::Entry& e, const std::string& path,
                    WorkerSpec& worker) {
  std::vector<Reader::Entry> entries;
  if (!r.entries(e.value, e.mark(), path, entries)) return;
  using E = Reader::Entry;
  static const std::vector<Field<WorkerSpec>> fields = {
      {"max_body",
       [](Reader& r, const E& e, const std::string& p, WorkerSpec& w) {
         if (auto v = r.memory(e.value, e.mark(), p, 1)) w.max_body_bytes = *v;
       }},
      {"max_unsent",
       [](Reader& r, const E& e, const std::string& p, WorkerSpec& w) {
         if (auto v = r.memory(e.value, e.mark(), p, 4096)) w.max_unsent_bytes = *v;
       }},
      {"max_header",
       [](Reader& r, const E& e, const std::string& p, WorkerSpec& w) {
         if (auto v = r.memory(e.value, e.mark(), p, 1024)) w.max_header_bytes = *v;
       }},
      {"request_timeout",
       [](Reader& r, const E& e, const std::string& p, WorkerSpec& w) {
         if (auto v = r.duration(e.value, e.mark(), p, Millis(1))) w.request_timeout = *v;
       }},
      {"keepalive_timeout",
       [](Reader& r, const E& e, const std::string& p, WorkerSpec& w) {
         if (auto v = r.duration(e.value, e.mark(), p)) w.keepalive_timeout = *v;
       }},
      {"max_connections",
       [](Reader& r, const E& e, const std::string& p, WorkerSpec& w) {
         if (auto v = r.integer(e.value, e.mark(), p, 1, 1'000'000))
           w.max_connections = static_cast<int>(*v);
       }},
      {"access_log",
       [](Reader& r, const E& e, const std::string& p, WorkerSpec& w) {
         if (auto v = r.boolean(e.value, e.mark(), p)) w.access_log = *v;
       }},
      {"auth_token_env",
       [](Reader& r, const E& e, const std::string& p, WorkerSpec& w) {
         auto v = r.string(e.value, e.mark(), p);
         if (v && !isEnvName(*v)) {
           r.error(
               e.mark(), p,
               fmt::format(
                   "expected the name of an environment variable (e.g. SHOP_TOKEN), got `{}`", *v));
         } else if (v) {
           w.auth_token_env = *v;
         }
       }},
      {"rate_limits", [](Reader& r, const E& e, const std::string& p,
                         WorkerSpec& w) { readRateLimits(r, e, p, w); }},
      {"trusted_proxies", [](Reader& r, const E& e, const std::string& p,
                             WorkerSpec& w) { readTrustedProxies(r, e, p, w); }},
      {"job_api",
       [](Reader& r, const E& e, const std::string& p, WorkerSpec& w) { readJobApi(r, e, p, w); }},
  };
  readFields(r, entries, path, "the `http` settings", fields, worker);
}

}  // namespace clusterd::config
