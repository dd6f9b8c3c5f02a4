// Implementation of tests/support/servers.h.
//
// Design: initdb is slow (a second of CPU), and CTest runs every test case
// in a process of its own, so the first process that needs Postgres runs it
// into a template directory named after the build tree, shared by every
// later test process, and every PostgresServer copies that template. Redis starts in
// milliseconds and gets a fresh directory each time.
#include "tests/support/servers.h"

#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <filesystem>
#include <mutex>
#include <stdexcept>

namespace clusterd::test {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

const char* kPgBin = "/usr/lib/postgresql/15/bin";

std::string replyText(redisReply* r) {
  switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS: return std::string(r->str, r->len);
    case REDIS_REPLY_INTEGER: return std::to_string(r->integer);
    case REDIS_REPLY_NIL: return "(nil)";
    case REDIS_REPLY_ARRAY: {
      std::string out;
      for (size_t i = 0; i < r->elements; ++i) {
        if (i) out += '\n';
        out += replyText(r->element[i]);
      }
      return out;
    }
    case REDIS_REPLY_ERROR: throw std::runtime_error("redis: " + std::string(r->str, r->len));
  }
  return "";
}

bool redisPings(int port) {
  timeval tv{0, 200'000};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port, tv);
  if (!c || c->err) {
    if (c) redisFree(c);
    return false;
  }
  auto* r = static_cast<redisReply*>(redisCommand(c, "PING"));
  bool ok = r && r->type == REDIS_REPLY_STATUS;
  if (r) freeReplyObject(r);
  redisFree(c);
  return ok;
}

struct PgUser {
  uid_t uid = 0;
  gid_t gid = 0;
};

// When root, Postgres must run as `postgres`; otherwise as ourselves.
PgUser pgUser() {
  if (geteuid() != 0) return {};
  passwd* pw = getpwnam("postgres");
  if (!pw) throw std::runtime_error("running as root but there is no `postgres` user");
  return {pw->pw_uid, pw->pw_gid};
}

void chownTree(const std::string& dir, const PgUser& u) {
  if (u.uid == 0) return;
  if (chown(dir.c_str(), u.uid, u.gid) != 0) throw std::runtime_error("chown " + dir);
  for (auto& e : fs::recursive_directory_iterator(dir))
    if (lchown(e.path().c_str(), u.uid, u.gid) != 0) throw std::runtime_error("chown " + e.path().string());
}

std::string makePgDir(const char* prefix) {
  std::string tmpl = std::string("/tmp/") + prefix + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) throw std::runtime_error("mkdtemp for postgres");
  return buf.data();
}

// One initdb per build tree (and Postgres binary), reused by copying. A
// process builds the template in a directory of its own and renames it into
// place, so a concurrent test either finds the whole template or builds its
// own and, losing the rename, throws it away.
std::string templateDir() {
  static std::once_flag once;
  static std::string dir;
  std::call_once(once, [] {
    // In /tmp, which the postgres user can reach (a build tree under /root
    // is not), named after the build tree and the binary it was made by.
    dir = fmt::format("/tmp/clusterd-pgtemplate-{:x}",
                      std::hash<std::string>{}(std::string(CLUSTERD_BINARY_DIR) + "|" + kPgBin));
    if (fs::exists(dir + "/data/PG_VERSION")) return;
    PgUser u = pgUser();
    std::string tmpl = dir + ".tmp-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data())) throw std::runtime_error("mkdtemp for the postgres template in " + dir);
    std::string tmp = buf.data();
    chownTree(tmp, u);
    Child initdb({fmt::format("{}/initdb", kPgBin), "-D", tmp + "/data", "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync", "--no-instructions"},
                 {{"LC_ALL", "C"}}, tmp + "/initdb.log", u.uid, u.gid);
    int st = initdb.wait(120s);
    if (st != 0) {
      std::string log = readFile(tmp + "/initdb.log");
      std::error_code ec;
      fs::remove_all(tmp, ec);
      throw std::runtime_error("initdb failed: " + log);
    }
    if (::rename(tmp.c_str(), dir.c_str()) != 0) {
      std::error_code ec;
      fs::remove_all(tmp, ec);  // another test process put its template in place first
    }
  });
  return dir + "/data";
}

}  // namespace

// ---- Redis ----

RedisServer::RedisServer() : RedisServer(Options{}) {}

RedisServer::RedisServer(Options options)
    : options_(std::move(options)), dir_("clusterd-redis"), port_(freeTcpPort()) {
  start();
}

RedisServer::~RedisServer() { kill(); }

std::string RedisServer::url() const { return fmt::format("redis://127.0.0.1:{}", port_); }

pid_t RedisServer::pid() const { return child_ ? child_->pid() : -1; }

void RedisServer::start() {
  if (child_ && child_->running()) return;
  std::vector<std::string> argv{"redis-server", "--port", std::to_string(port_), "--bind",
                                "127.0.0.1", "--dir", dir_.path(), "--save", "",
                                "--daemonize", "no", "--protected-mode", "no"};
  if (options_.appendonly) {
    argv.insert(argv.end(), {"--appendonly", "yes", "--appendfsync", options_.appendfsync});
  }
  argv.insert(argv.end(), options_.extra_args.begin(), options_.extra_args.end());
  child_ = std::make_unique<Child>(argv, std::map<std::string, std::string>{},
                                   dir_.file("redis.log"));
  if (!waitFor([&] { return redisPings(port_); }, 15s))
    throw std::runtime_error("redis-server did not start: " + readFile(dir_.file("redis.log")));
}

void RedisServer::stop() {
  if (!child_) return;
  child_->signal(SIGTERM);
  if (child_->wait(15s) == -1) child_->signal(SIGKILL), child_->wait(5s);
  child_.reset();
}

void RedisServer::kill() {
  if (!child_) return;
  child_->signal(SIGKILL);
  child_->wait(5s);
  child_.reset();
}

std::string RedisServer::command(const std::vector<std::string>& argv) {
  timeval tv{5, 0};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
  if (!c || c->err) {
    std::string e = c ? c->errstr : "alloc";
    if (c) redisFree(c);
    throw std::runtime_error("connect to redis: " + e);
  }
  std::vector<const char*> args;
  std::vector<size_t> lens;
  for (auto& a : argv) args.push_back(a.data()), lens.push_back(a.size());
  auto* r = static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(args.size()), args.data(), lens.data()));
  if (!r) {
    std::string e = c->errstr;
    redisFree(c);
    throw std::runtime_error("redis command: " + e);
  }
  std::string out;
  try {
    out = replyText(r);
  } catch (...) {
    freeReplyObject(r);
    redisFree(c);
    throw;
  }
  freeReplyObject(r);
  redisFree(c);
  return out;
}

// ---- Postgres ----

PostgresServer::PostgresServer() : dir_(makePgDir("clusterd-pg")), port_(freeTcpPort()) {
  PgUser u = pgUser();
  std::string tmpl = templateDir();
  fs::copy(tmpl, dir_ + "/data", fs::copy_options::recursive);
  chownTree(dir_, u);
  fs::permissions(dir_ + "/data", fs::perms::owner_all, fs::perm_options::replace);
  start();
  // A database of our own, so tests never touch `postgres`.
  query("CREATE DATABASE clusterd");
}

PostgresServer::~PostgresServer() {
  if (child_) {
    child_->signal(SIGQUIT);  // immediate shutdown: the data is thrown away
    child_->wait(10s);
    child_.reset();
  }
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

std::string PostgresServer::url() const {
  return fmt::format("postgresql://postgres@127.0.0.1:{}/clusterd", port_);
}

void PostgresServer::start() {
  if (child_ && child_->running()) return;
  PgUser u = pgUser();
  child_ = std::make_unique<Child>(
      std::vector<std::string>{fmt::format("{}/postgres", kPgBin), "-D", dir_ + "/data", "-p",
                               std::to_string(port_), "-k", dir_, "-c",
                               "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c",
                               "synchronous_commit=off", "-c", "full_page_writes=off", "-c",
                               "max_connections=200"},
      std::map<std::string, std::string>{{"LC_ALL", "C"}}, dir_ + "/postgres.log", u.uid, u.gid);
  std::string ping = fmt::format("host=127.0.0.1 port={} user=postgres dbname=postgres", port_);
  if (!waitFor([&] { return PQping(ping.c_str()) == PQPING_OK; }, 30s))
    throw std::runtime_error("postgres did not start: " + readFile(dir_ + "/postgres.log"));
}

void PostgresServer::stop() {
  if (!child_) return;
  child_->signal(SIGINT);  // fast shutdown: roll back open transactions, checkpoint
  if (child_->wait(30s) == -1) child_->signal(SIGKILL), child_->wait(5s);
  child_.reset();
}

void PostgresServer::stopImmediate() {
  if (!child_) return;
  PgUser u = pgUser();
  Child ctl({fmt::format("{}/pg_ctl", kPgBin), "stop", "-D", dir_ + "/data", "-m", "immediate", "-w",
             "-t", "30"},
            {{"LC_ALL", "C"}}, dir_ + "/pg_ctl.log", u.uid, u.gid);
  int st = ctl.wait(40s);
  if (st != 0) throw std::runtime_error("pg_ctl stop -m immediate failed: " + readFile(dir_ + "/pg_ctl.log"));
  if (child_->wait(10s) == -1) throw std::runtime_error("postgres did not exit after pg_ctl stop");
  child_.reset();
}

std::vector<std::vector<std::string>> PostgresServer::query(const std::string& sql) {
  // CREATE DATABASE runs against the maintenance database.
  bool maintenance = sql.rfind("CREATE DATABASE", 0) == 0;
  std::string conninfo = fmt::format("host=127.0.0.1 port={} user=postgres dbname={}", port_,
                                     maintenance ? "postgres" : "clusterd");
  PGconn* c = PQconnectdb(conninfo.c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    std::string e = PQerrorMessage(c);
    PQfinish(c);
    throw std::runtime_error("connect to postgres: " + e);
  }
  PGresult* r = PQexec(c, sql.c_str());
  auto st = PQresultStatus(r);
  if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
    std::string e = PQresultErrorMessage(r);
    PQclear(r);
    PQfinish(c);
    throw std::runtime_error("postgres: " + e + " in: " + sql);
  }
  std::vector<std::vector<std::string>> rows;
  for (int i = 0; i < PQntuples(r); ++i) {
    std::vector<std::string> row;
    for (int j = 0; j < PQnfields(r); ++j) row.emplace_back(PQgetvalue(r, i, j));
    rows.push_back(std::move(row));
  }
  PQclear(r);
  PQfinish(c);
  return rows;
}

std::string PostgresServer::scalar(const std::string& sql) {
  auto rows = query(sql);
  if (rows.empty() || rows[0].empty()) return "";
  return rows[0][0];
}

}  // namespace clusterd::test
