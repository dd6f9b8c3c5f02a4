// The built-in worker's keys of an app (`script: builtin:worker`): `queues`
// (queue name -> concurrency) and `http` (limits, access log, bearer-token
// auth and rate-limit tiers of its HTTP front).
#include <fmt/format.h>

#include <set>

#include "config/internal.h"

namespace clusterd::config {
namespace {

YAML::Mark at(const Reader::Entry& e) {
  return Reader::markOf(e.value, e.key_node);
}

bool isEnvName(const std::string& s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

void readRateLimits(Reader& r, const Reader::Entry& e, const std::string& path, WorkerSpec& w) {
  if (!e.value.IsSequence()) {
    r.error(at(e), path,
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
           if (auto v = r.string(e.value, at(e), p)) t.name = *v;
         }},
        {"path_prefix",
         [](Reader& r, const E& e, const std::string& p, RateLimitTier& t) {
           auto v = r.string(e.value, at(e), p);
           if (v && (v->empty() || (*v)[0] != '/')) {
             r.error(at(e), p, fmt::format("expected a URL path starting with `/`, got `{}`", *v));
           } else if (v) {
             t.path_prefix = *v;
           }
         }},
        {"method",
         [](Reader& r, const E& e, const std::string& p, RateLimitTier& t) {
           if (auto v = r.choice(e.value, at(e), p,
                                 {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})) {
             t.method = *v;
           }
         }},
        {"limit",
         [&has_limit](Reader& r, const E& e, const std::string& p, RateLimitTier& t) {
           has_limit = true;
           if (auto v = r.integer(e.value, at(e), p, 1, 1'000'000'000))
             t.limit = static_cast<uint64_t>(*v);
         }},
        {"window",
         [&has_window](Reader& r, const E& e, const std::string& p, RateLimitTier& t) {
           has_window = true;
           if (auto v = r.duration(e.value, at(e), p, Millis(1))) t.window = *v;
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

}  // namespace

void readWorkerQueues(Reader& r, const Reader::Entry& e, const std::string& path,
                      WorkerSpec& worker) {
  std::vector<Reader::Entry> entries;
  if (!r.entries(e.value, at(e), path, entries)) return;
  if (entries.empty()) {
    r.error(at(e), path, "expected at least one queue (queue name: concurrency, e.g. `orders: 8`)");
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
    if (auto n = r.integer(q.value, at(q), p, 1, 10'000))
      worker.queues[q.key] = static_cast<int>(*n);
  }
}

void readWorkerHttp(Reader& r, const Reader::Entry& e, const std::string& path,
                    WorkerSpec& worker) {
  std::vector<Reader::Entry> entries;
  if (!r.entries(e.value, at(e), path, entries)) return;
  using E = Reader::Entry;
  static const std::vector<Field<WorkerSpec>> fields = {
      {"max_body",
       [](Reader& r, const E& e, const std::string& p, WorkerSpec& w) {
         if (auto v = r.memory(e.value, at(e), p, 1)) w.max_body_bytes = *v;
       }},
      {"max_header",
       [](Reader& r, const E& e, const std::string& p, WorkerSpec& w) {
         if (auto v = r.memory(e.value, at(e), p, 1024)) w.max_header_bytes = *v;
       }},
      {"request_timeout",
       [](Reader& r, const E& e, const std::string& p, WorkerSpec& w) {
         if (auto v = r.duration(e.value, at(e), p, Millis(1))) w.request_timeout = *v;
       }},
      {"keepalive_timeout",
       [](Reader& r, const E& e, const std::string& p, WorkerSpec& w) {
         if (auto v = r.duration(e.value, at(e), p)) w.keepalive_timeout = *v;
       }},
      {"max_connections",
       [](Reader& r, const E& e, const std::string& p, WorkerSpec& w) {
         if (auto v = r.integer(e.value, at(e), p, 1, 1'000'000))
           w.max_connections = static_cast<int>(*v);
       }},
      {"access_log",
       [](Reader& r, const E& e, const std::string& p, WorkerSpec& w) {
         if (auto v = r.boolean(e.value, at(e), p)) w.access_log = *v;
       }},
      {"auth_token_env",
       [](Reader& r, const E& e, const std::string& p, WorkerSpec& w) {
         auto v = r.string(e.value, at(e), p);
         if (v && !isEnvName(*v)) {
           r.error(
               at(e), p,
               fmt::format(
                   "expected the name of an environment variable (e.g. SHOP_TOKEN), got `{}`", *v));
         } else if (v) {
           w.auth_token_env = *v;
         }
       }},
      {"rate_limits", [](Reader& r, const E& e, const std::string& p,
                         WorkerSpec& w) { readRateLimits(r, e, p, w); }},
  };
  readFields(r, entries, path, "the `http` settings", fields, worker);
}

}  // namespace clusterd::config
