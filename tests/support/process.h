// Test helpers for running programs: temp directories, free loopback ports,
// spawning a child with captured output under a timeout, and waiting for a
// condition. Everything here is for tests only.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace clusterd::test {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "clusterd-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, read
// back, closed). Used for servers that cannot report the port they took.
int freeTcpPort();

// A TCP port on 127.0.0.1 held for the rest of this test process by a bound,
// non-listening socket with SO_REUSEADDR and SO_REUSEPORT, for servers of
// ours (the worker, the master's cluster sockets), which bind beside it,
// while no other test process can be handed the port. With a
// plain freeTcpPort() two tests starting at once could pick the same port,
// and their servers would silently share one SO_REUSEPORT group.
int reservedTcpPort();

// `count` consecutive ports on 127.0.0.1 held like reservedTcpPort()'s;
// returns the first. For servers that take a base port plus an offset.
int reservedTcpPorts(int count);

// True when a TCP connect to 127.0.0.1:port succeeds.
bool tcpConnects(int port);

struct RunResult {
  int exit_code = -1;  // -1 when killed by a signal or timed out
  int signal = 0;
  bool timed_out = false;
  std::string out;
  std::string err;
};

struct RunOptions {
  std::map<std::string, std::string> env;  // added to (or overriding) the environment
  std::string stdin_data;
  std::string cwd;
  std::chrono::milliseconds timeout{30'000};
};

// Runs argv[0] (looked up in PATH) to completion, capturing stdout/stderr.
RunResult run(const std::vector<std::string>& argv, const RunOptions& options = {});

// Runs the clusterd binary under test with the given arguments.
RunResult runClusterd(const std::vector<std::string>& args, const RunOptions& options = {});

// A child process left running; killed (SIGKILL) and reaped on destruction
// unless waited for. Output goes to the given file (or /dev/null).
class Child {
 public:
  Child(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env = {},
        const std::string& output_file = "", uid_t uid = 0, gid_t gid = 0);
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  pid_t pid() const { return pid_; }
  bool running();
  void signal(int sig);
  // Waits up to `timeout` for exit; returns the wait status, or -1 on timeout.
  int wait(std::chrono::milliseconds timeout);

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
};

// Polls `cond` every few milliseconds until it is true or `timeout` passes.
bool waitFor(const std::function<bool()>& cond,
             std::chrono::milliseconds timeout = std::chrono::seconds(10));

std::string readFile(const std::string& path);
void writeFile(const std::string& path, const std::string& content);

}  // namespace clusterd::test
