// The typed ecosystem: what an operator's ecosystem file (YAML or JSON) says,
// after parsing, environment interpolation, `--env` selection and validation.
//
// Every other module reads these structs and never the file. Units are
// normalised here: durations in milliseconds, memory in bytes, `instances`
// resolved against this machine's core count. Field names follow PM2's
// ecosystem file so an operator coming from PM2 reads them unchanged.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace clusterd::config {

using Millis = std::chrono::milliseconds;

enum class ExecMode { kFork, kCluster };

// Where a cluster-mode app listens: a TCP host:port or a Unix socket path.
struct ListenAddress {
  enum class Kind { kTcp, kUnix };
  Kind kind = Kind::kTcp;
  std::string host;   // kTcp: "127.0.0.1", "0.0.0.0", "::1"
  uint16_t port = 0;  // kTcp
  std::string path;   // kUnix
  std::string text;   // as written in the file, for messages
};

// One rate-limit tier of the built-in worker's HTTP front: `limit` requests
// per `window` per client IP on paths starting with `path_prefix` (and, when
// set, only for `method`).
struct RateLimitTier {
  std::string name;
  std::string path_prefix;
  std::string method;  // empty = any method
  uint64_t limit = 0;
  Millis window{0};
};

// Settings of the built-in worker (`script: builtin:worker`).
// The job API of the built-in worker (`http.job_api`): off unless set. It
// takes jobs only for the listed queues and job names ("*" = any name of
// that queue), and requires a bearer token unless the worker listens on
// loopback only.
struct JobApiSpec {
  bool enabled = false;
  std::map<std::string, std::vector<std::string>> queues;  // queue -> job names
  std::string token_env;   // env var holding the token; empty = none
  std::string token_file;  // file holding the token; empty = none
};

struct WorkerSpec {
  std::map<std::string, int> queues;  // queue name -> concurrency
  // `health_listen`: a TCP base address on which instance N serves only
  // /health and /metrics at port + N, so each instance can be scraped on its
  // own (PM2's `increment_var` idea). Absent = no such listener.
  std::optional<ListenAddress> health_listen;
  uint64_t max_body_bytes = 1 << 20;
  uint64_t max_unsent_bytes = 1 << 20;  // a connection's unsent responses before reading pauses
  uint64_t max_header_bytes = 16 << 10;
  Millis request_timeout{30'000};
  Millis keepalive_timeout{5'000};
  int max_connections = 10'000;
  bool access_log = false;
  std::string auth_token_env;  // name of the env var holding the bearer token; empty = no auth
  std::vector<RateLimitTier> rate_limits;
  // Peers (addresses or CIDR blocks) whose X-Forwarded-For names the client.
  std::vector<std::string> trusted_proxies;
  JobApiSpec job_api;
};

struct AppSpec {
  std::string name;
  std::string script;  // path, command name, or "builtin:worker"
  std::vector<std::string> args;
  std::string cwd;          // empty = the ecosystem file's directory
  std::string interpreter;  // empty = run the script directly
  ExecMode exec_mode = ExecMode::kFork;
  int instances = 1;           // resolved: "max" = cores, -1 = cores-1 (at least 1)
  std::string instances_text;  // as written ("max", "-1", "4")
  std::optional<ListenAddress> listen;
  uint64_t max_memory_restart = 0;  // bytes; 0 = no limit
  Millis min_uptime{1000};
  int max_restarts = 16;
  Millis restart_delay{0};
  Millis exp_backoff_restart_delay{0};  // 0 = no exponential backoff
  Millis kill_timeout{1600};
  Millis listen_timeout{3000};
  bool wait_ready = false;
  Millis watchdog{0};  // 0 = off; else a worker must send WATCHDOG=1 this often
  Millis memory_check_interval{500};
  bool autorestart = true;
  std::map<std::string, std::string> env;  // `env` merged with the selected `env_<name>`
  std::string out_file;                    // empty = <home>/logs/<name>-out.log
  std::string error_file;                  // empty = <home>/logs/<name>-error.log
  bool merge_logs = false;
  std::string log_date_format;          // strftime-like; empty = no timestamp prefix
  uint64_t log_max_size = 10ull << 20;  // rotate each log file past this size
  int log_retain = 3;                   // rotated files kept
  std::string uid;                      // user name or number; empty = unchanged
  std::string gid;
  bool builtin_worker = false;  // script == "builtin:worker"
  WorkerSpec worker;            // meaningful when builtin_worker
};

// Defaults for one queue (the `queue.queues.<name>` section).
struct QueueDefaults {
  int attempts = 3;
  Millis backoff{1000};
  std::string backoff_type = "exponential";  // "exponential" | "fixed"
  Millis timeout{60'000};
  Millis lease{10'000};
  uint64_t keep_completed = 1000;
  Millis keep_completed_age{3'600'000};
  uint64_t keep_dead = 10'000;
  Millis keep_dead_age{7ull * 24 * 3'600'000};
  uint64_t rate_limit = 0;  // jobs per rate_window across all consumers; 0 = none
  Millis rate_window{0};
};

struct QueueSection {
  std::string redis_url = "redis://127.0.0.1:6379";
  bool strict = false;  // refuse to run on a Redis that may lose or evict data
  std::map<std::string, QueueDefaults> queues;
};

// A job handler run as an external command: the payload arrives as JSON on
// stdin; exit 0 completes the job, anything else fails it with stderr.
// How a command handler runs: a process per job, or one that stays up and
// takes one job per line (docs/QUEUE.md, "Command handlers").
enum class HandlerMode { kPerJob, kPersistent };

struct HandlerSpec {
  std::string job_name;
  std::vector<std::string> command;  // argv
  Millis timeout{60'000};            // per job; past it the command's group is stopped
  HandlerMode mode = HandlerMode::kPerJob;
  Millis kill_grace{5'000};          // SIGTERM to the group, SIGKILL after this
  uint64_t max_line = 1 << 20;       // persistent: the longest answer line, in bytes
};

struct PostgresSection {
  std::string url;  // libpq connection string or URI; empty = not configured
  int pool_size = 4;
  Millis connect_timeout{5000};
  Millis slow_query{200};
};

// How SMTP delivery uses TLS (`mail.smtp_tls`; config/smtp_tls.h has the
// rule): kRequired = TLS for the whole session (smtps://, or STARTTLS that
// must succeed), kOpportunistic = STARTTLS when the server offers it,
// kOff = never.
enum class SmtpTls { kRequired, kOpportunistic, kOff };

// Mail transport for email.batch.
struct MailSection {
  std::string transport = "maildir";  // "maildir" | "smtp"
  std::string maildir;                // empty = <home>/mail
  std::string smtp_url;               // smtp://host:port or smtps://
  std::string smtp_user;
  std::string smtp_password;
  // Unset: kRequired with a user or password, else kOpportunistic
  // (config::smtpTls()).
  std::optional<SmtpTls> smtp_tls;
  std::string from = "shop@localhost";
  std::map<std::string, uint64_t> per_domain_per_min;  // throttle
};

struct Ecosystem {
  std::string path;      // the file it came from (absolute)
  std::string base_dir;  // its directory, for relative paths
  std::vector<AppSpec> apps;
  QueueSection queue;
  PostgresSection postgres;
  MailSection mail;
  std::vector<HandlerSpec> handlers;
};

}  // namespace clusterd::config
