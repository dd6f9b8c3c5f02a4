// clusterd's top-level sections: `queue` (Redis URL, strictness, per-queue
// defaults), `postgres`, `mail` (transport for email.batch) and `handlers`
// (jobs run as external commands).
#include <fmt/format.h>

#include "config/internal.h"
#include "config/smtp_tls.h"

namespace clusterd::config {
namespace {

using E = Reader::Entry;

bool hasScheme(const std::string& url, std::initializer_list<std::string_view> schemes) {
  for (auto s : schemes) {
    if (url.rfind(s, 0) == 0) return true;
  }
  return false;
}

void readQueueDefaults(Reader& r, const E& e, const std::string& path, QueueDefaults& q) {
  std::vector<E> entries;
  if (!r.entries(e.value, e.mark(), path, entries)) return;
  bool has_rate_window = false;
  static const std::vector<Field<QueueDefaults>> fields = {
      {"attempts",
       [](Reader& r, const E& e, const std::string& p, QueueDefaults& q) {
         if (auto v = r.integer(e.value, e.mark(), p, 1, 1000)) q.attempts = static_cast<int>(*v);
       }},
      {"backoff",
       [](Reader& r, const E& e, const std::string& p, QueueDefaults& q) {
         if (auto v = r.duration(e.value, e.mark(), p)) q.backoff = *v;
       }},
      {"backoff_type",
       [](Reader& r, const E& e, const std::string& p, QueueDefaults& q) {
         if (auto v = r.choice(e.value, e.mark(), p, {"exponential", "fixed"})) q.backoff_type = *v;
       }},
      {"timeout",
       [](Reader& r, const E& e, const std::string& p, QueueDefaults& q) {
         if (auto v = r.duration(e.value, e.mark(), p, Millis(1))) q.timeout = *v;
       }},
      {"lease",
       [](Reader& r, const E& e, const std::string& p, QueueDefaults& q) {
         if (auto v = r.duration(e.value, e.mark(), p, Millis(100))) q.lease = *v;
       }},
      {"keep_completed",
       [](Reader& r, const E& e, const std::string& p, QueueDefaults& q) {
         if (auto v = r.integer(e.value, e.mark(), p, 0, INT64_MAX))
           q.keep_completed = static_cast<uint64_t>(*v);
       }},
      {"keep_completed_age",
       [](Reader& r, const E& e, const std::string& p, QueueDefaults& q) {
         if (auto v = r.duration(e.value, e.mark(), p)) q.keep_completed_age = *v;
       }},
      {"keep_dead",
       [](Reader& r, const E& e, const std::string& p, QueueDefaults& q) {
         if (auto v = r.integer(e.value, e.mark(), p, 0, INT64_MAX))
           q.keep_dead = static_cast<uint64_t>(*v);
       }},
      {"keep_dead_age",
       [](Reader& r, const E& e, const std::string& p, QueueDefaults& q) {
         if (auto v = r.duration(e.value, e.mark(), p)) q.keep_dead_age = *v;
       }},
      {"rate_limit",
       [](Reader& r, const E& e, const std::string& p, QueueDefaults& q) {
         if (auto v = r.integer(e.value, e.mark(), p, 0, INT64_MAX))
           q.rate_limit = static_cast<uint64_t>(*v);
       }},
      {"rate_window",
       [](Reader& r, const E& e, const std::string& p, QueueDefaults& q) {
         if (auto v = r.duration(e.value, e.mark(), p)) q.rate_window = *v;
       }},
  };
  for (const auto& x : entries) has_rate_window = has_rate_window || x.key == "rate_window";
  readFields(r, entries, path, "a queue's defaults", fields, q);
  if (q.rate_limit > 0 && q.rate_window.count() == 0 && !has_rate_window) {
    r.error(e.mark(), path + ".rate_window",
            "missing; `rate_limit` needs `rate_window` (e.g. rate_limit: 100, rate_window: 1s)");
  } else if (q.rate_limit > 0 && q.rate_window.count() == 0) {
    r.error(e.mark(), path + ".rate_window", "must be more than 0 when `rate_limit` is set");
  }
}

}  // namespace

bool isValidQueueName(const std::string& name) {
  if (name.empty() || name.size() > 128) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' &&
        c != ':')
      return false;
  }
  return true;
}

void readQueueSection(Reader& r, const E& e, QueueSection& out) {
  std::vector<E> entries;
  if (!r.entries(e.value, e.mark(), "queue", entries)) return;
  static const std::vector<Field<QueueSection>> fields = {
      {"redis_url",
       [](Reader& r, const E& e, const std::string& p, QueueSection& q) {
         auto v = r.string(e.value, e.mark(), p);
         if (v && !hasScheme(*v, {"redis://", "rediss://", "unix://"})) {
           r.error(
               e.mark(), p,
               fmt::format(
                   "expected a URL redis://host:port[/db], rediss://… or unix:///path, got `{}`",
                   *v));
         } else if (v) {
           q.redis_url = *v;
         }
       }},
      {"strict",
       [](Reader& r, const E& e, const std::string& p, QueueSection& q) {
         if (auto v = r.boolean(e.value, e.mark(), p)) q.strict = *v;
       }},
      {"queues",
       [](Reader& r, const E& e, const std::string& p, QueueSection& q) {
         std::vector<E> queues;
         if (!r.entries(e.value, e.mark(), p, queues)) return;
         for (const auto& qe : queues) {
           if (!isValidQueueName(qe.key)) {
             r.error(
                 qe.key_node.Mark(), p + "." + qe.key,
                 fmt::format(
                     "`{}` is not a valid queue name: use letters, digits, `-`, `_`, `.` or `:`",
                     qe.key));
             continue;
           }
           readQueueDefaults(r, qe, p + "." + qe.key, q.queues[qe.key]);
         }
       }},
  };
  readFields(r, entries, "queue", "the `queue` section", fields, out);
}

void readPostgresSection(Reader& r, const E& e, PostgresSection& out) {
  std::vector<E> entries;
  if (!r.entries(e.value, e.mark(), "postgres", entries)) return;
  static const std::vector<Field<PostgresSection>> fields = {
      {"url",
       [](Reader& r, const E& e, const std::string& p, PostgresSection& s) {
         if (auto v = r.string(e.value, e.mark(), p)) s.url = *v;
       }},
      {"pool_size",
       [](Reader& r, const E& e, const std::string& p, PostgresSection& s) {
         if (auto v = r.integer(e.value, e.mark(), p, 1, 1000)) s.pool_size = static_cast<int>(*v);
       }},
      {"connect_timeout",
       [](Reader& r, const E& e, const std::string& p, PostgresSection& s) {
         if (auto v = r.duration(e.value, e.mark(), p, Millis(1))) s.connect_timeout = *v;
       }},
      {"slow_query",
       [](Reader& r, const E& e, const std::string& p, PostgresSection& s) {
         if (auto v = r.duration(e.value, e.mark(), p)) s.slow_query = *v;
       }},
  };
  readFields(r, entries, "postgres", "the `postgres` section", fields, out);
}

void readMailSection(Reader& r, const E& e, const std::string& base_dir, MailSection& out) {
  std::vector<E> entries;
  if (!r.entries(e.value, e.mark(), "mail", entries)) return;
  static const std::vector<Field<MailSection>> fields = {
      {"transport",
       [](Reader& r, const E& e, const std::string& p, MailSection& m) {
         if (auto v = r.choice(e.value, e.mark(), p, {"maildir", "smtp"})) m.transport = *v;
       }},
      {"maildir",
       [](Reader& r, const E& e, const std::string& p, MailSection& m) {
         if (auto v = r.string(e.value, e.mark(), p)) m.maildir = *v;
       }},
      {"smtp_url",
       [](Reader& r, const E& e, const std::string& p, MailSection& m) {
         auto v = r.string(e.value, e.mark(), p);
         if (v && !hasScheme(*v, {"smtp://", "smtps://"})) {
           r.error(e.mark(), p,
                   fmt::format("expected smtp://host:port or smtps://host:port, got `{}`", *v));
         } else if (v) {
           m.smtp_url = *v;
         }
       }},
      {"smtp_tls",
       [](Reader& r, const E& e, const std::string& p, MailSection& m) {
         if (auto v = r.choice(e.value, e.mark(), p, {"required", "opportunistic", "off"}))
           m.smtp_tls = *v == "required"        ? SmtpTls::kRequired
                        : *v == "opportunistic" ? SmtpTls::kOpportunistic
                                                : SmtpTls::kOff;
       }},
      {"user",
       [](Reader& r, const E& e, const std::string& p, MailSection& m) {
         if (auto v = r.string(e.value, e.mark(), p)) m.smtp_user = *v;
       }},
      {"password",
       [](Reader& r, const E& e, const std::string& p, MailSection& m) {
         if (auto v = r.string(e.value, e.mark(), p)) m.smtp_password = *v;
       }},
      {"from",
       [](Reader& r, const E& e, const std::string& p, MailSection& m) {
         auto v = r.string(e.value, e.mark(), p);
         if (v && v->find('@') == std::string::npos) {
           r.error(e.mark(), p,
                   fmt::format("expected a mail address such as shop@example.com, got `{}`", *v));
         } else if (v) {
           m.from = *v;
         }
       }},
      {"per_domain_per_min",
       [](Reader& r, const E& e, const std::string& p, MailSection& m) {
         std::vector<E> domains;
         if (!r.entries(e.value, e.mark(), p, domains)) return;
         for (const auto& d : domains) {
           if (auto v = r.integer(d.value, d.mark(), p + "." + d.key, 1, 1'000'000)) {
             m.per_domain_per_min[d.key] = static_cast<uint64_t>(*v);
           }
         }
       }},
  };
  bool has_transport = false;
  for (const auto& x : entries) has_transport = has_transport || x.key == "transport";
  readFields(r, entries, "mail", "the `mail` section", fields, out);
  if (out.transport == "smtp" && out.smtp_url.empty()) {
    r.error(e.mark(), "mail.smtp_url",
            "missing; `transport: smtp` needs `smtp_url` (smtp://host:port)");
  }
  if (!out.smtp_url.empty() && !has_transport) out.transport = "smtp";
  if (!out.maildir.empty()) out.maildir = absolutePath(out.maildir, base_dir);
  // Only an explicit `opportunistic` or `off` can break the rule, so the
  // error points at it.
  if (std::string problem = smtpTlsProblem(out); !problem.empty()) {
    YAML::Mark mark = e.mark();
    for (const auto& x : entries)
      if (x.key == "smtp_tls") mark = x.mark();
    r.error(mark, "mail.smtp_tls", problem);
  }
}

void readHandlersSection(Reader& r, const E& e, std::vector<HandlerSpec>& out) {
  std::vector<E> entries;
  if (!r.entries(e.value, e.mark(), "handlers", entries)) return;
  for (const auto& h : entries) {
    const std::string path = "handlers." + h.key;
    if (!isValidQueueName(h.key)) {
      r.error(h.key_node.Mark(), path,
              fmt::format("`{}` is not a valid job name: use letters, digits, `-`, `_`, `.` or `:`",
                          h.key));
      continue;
    }
    HandlerSpec spec;
    spec.job_name = h.key;
    if (h.value.IsMap()) {
      std::vector<E> fields_in;
      if (!r.entries(h.value, h.mark(), path, fields_in)) continue;
      bool has_command = false;
      static const std::vector<Field<HandlerSpec>> fields = {
          {"command",
           [](Reader& r, const E& e, const std::string& p, HandlerSpec& s) {
             if (auto v = r.words(e.value, e.mark(), p)) s.command = std::move(*v);
           }},
          {"timeout",
           [](Reader& r, const E& e, const std::string& p, HandlerSpec& s) {
             if (auto v = r.duration(e.value, e.mark(), p, Millis(1))) s.timeout = *v;
           }},
          {"mode",
           [](Reader& r, const E& e, const std::string& p, HandlerSpec& s) {
             if (auto v = r.choice(e.value, e.mark(), p, {"per_job", "persistent"}))
               s.mode = *v == "persistent" ? HandlerMode::kPersistent : HandlerMode::kPerJob;
           }},
          {"kill_grace",
           [](Reader& r, const E& e, const std::string& p, HandlerSpec& s) {
             auto v = r.duration(e.value, e.mark(), p);
             if (v && *v > Millis(3'600'000)) {
               r.error(e.mark(), p, "at most 1h: past it, a stuck command would hold its job's slot that long");
             } else if (v) {
               s.kill_grace = *v;
             }
           }},
          {"max_line",
           [](Reader& r, const E& e, const std::string& p, HandlerSpec& s) {
             auto v = r.memory(e.value, e.mark(), p, 64);
             if (v && *v > (64u << 20)) {
               r.error(e.mark(), p, "at most 64M: each persistent process may buffer one line this long");
             } else if (v) {
               s.max_line = *v;
             }
           }},
      };
      for (const auto& x : fields_in) has_command = has_command || x.key == "command";
      readFields(r, fields_in, path, "a handler", fields, spec);
      bool has_max_line = false;
      for (const auto& x : fields_in) has_max_line = has_max_line || x.key == "max_line";
      if (has_max_line && spec.mode != HandlerMode::kPersistent) {
        r.error(h.mark(), path + ".max_line", "applies only with `mode: persistent` (a per-job command's "
                                           "stdout is its result, capped at 64 KiB)");
      }
      if (!has_command) {
        r.error(h.mark(), path + ".command",
                "missing; a handler needs `command` (a list of words or a command line)");
        continue;
      }
    } else if (auto v = r.words(h.value, h.mark(), path)) {
      spec.command = std::move(*v);
    } else {
      continue;
    }
    if (spec.command.empty()) {
      r.error(h.mark(), path, "the command is empty");
      continue;
    }
    out.push_back(std::move(spec));
  }
}

}  // namespace clusterd::config
