// Real servers for tests: a redis-server and a PostgreSQL cluster on free
// loopback ports in temp directories, started by the constructor and stopped
// by the destructor. Both can be stopped and started again on the same port
// and data, for fault tests. When the tests run as root, Postgres runs as the
// `postgres` user (it refuses root).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "tests/support/process.h"

namespace clusterd::test {

class RedisServer {
 public:
  struct Options {
    bool appendonly = true;  // AOF: a crash of the process loses nothing acknowledged
    // With `always` every acknowledged write is on disk; with `everysec` it is
    // in the kernel's page cache, which a process crash does not lose (only a
    // host crash loses up to a second of writes).
    std::string appendfsync = "always";
    std::vector<std::string> extra_args;
  };
  RedisServer();
  explicit RedisServer(Options options);
  ~RedisServer();

  int port() const { return port_; }
  std::string url() const;  // redis://127.0.0.1:<port>
  pid_t pid() const;
  void stop();   // SIGTERM and wait: a clean shutdown
  void kill();   // SIGKILL and wait: a crash
  void start();  // same port, same data directory
  // Runs one command synchronously (hiredis) and returns the reply as text:
  // strings and status as is, integers in decimal, nil as "(nil)", arrays
  // joined with '\n'. Throws std::runtime_error on error replies.
  std::string command(const std::vector<std::string>& argv);

 private:
  Options options_;
  TempDir dir_;
  int port_;
  std::unique_ptr<Child> child_;
};

class PostgresServer {
 public:
  PostgresServer();
  ~PostgresServer();

  int port() const { return port_; }
  // postgresql://postgres@127.0.0.1:<port>/clusterd (trust auth on loopback)
  std::string url() const;
  void stop();           // fast shutdown
  void stopImmediate();  // `pg_ctl stop -m immediate`: a crash, recovered from WAL at start
  void start();
  // Runs SQL synchronously (libpq); returns the rows, each as its columns'
  // text (NULL as ""). Throws std::runtime_error on an error.
  std::vector<std::vector<std::string>> query(const std::string& sql);
  // The first column of the first row, for counts and single values.
  std::string scalar(const std::string& sql);

 private:
  std::string dir_;  // owned by the postgres user when running as root
  int port_;
  std::unique_ptr<Child> child_;
};

}  // namespace clusterd::test
