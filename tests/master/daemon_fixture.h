// Integration-test helpers for the master: a real daemon on a temp home
// (clusterd daemon --foreground), the control protocol, app configs running
// the testapp program, a one-shot HTTP client and a bounded load loop that
// counts failed requests.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "master/app.h"
#include "tests/support/process.h"

namespace clusterd::master::test {

using nlohmann::json;

class DaemonUnderTest {
 public:
  // On a temp home, or on `home` (a directory the test prepared, e.g. a
  // small tmpfs); the daemon's stdout and stderr go to a temp file either way.
  explicit DaemonUnderTest(std::string home = "");
  ~DaemonUnderTest();
  const std::string& home() const { return home_path_; }
  std::string output() const;
  pid_t pid() const { return child_ ? child_->pid() : -1; }
  // One request on a fresh connection; throws on transport errors.
  json call(const json& request);
  json status() { return call({{"cmd", "status"}})["workers"]; }
  json start(const AppConfig& app);
  // Waits until every worker of `app` is online (and no replacement runs).
  bool waitOnline(const std::string& app, size_t count,
                  std::chrono::milliseconds timeout = std::chrono::seconds(10));
  std::vector<pid_t> pids(const std::string& app);
  // SIGKILLs the daemon (a crash) and reaps it.
  void crash();
  // Starts a new daemon on the same home (after crash()).
  void startAgain();
  // Runs the CLI against this home, with `env` added to its environment
  // (not the daemon's).
  clusterd::test::RunResult cli(const std::vector<std::string>& args,
                                const std::map<std::string, std::string>& env = {});

 private:
  void launch();

  clusterd::test::TempDir home_{"cd-master"};
  std::string home_path_;
  std::unique_ptr<clusterd::test::Child> child_;
};

// An app running the testapp with `args`; cluster mode on 127.0.0.1:port
// when port > 0.
AppConfig testApp(const std::string& name, int instances, int port, std::vector<std::string> args);

// GET path over a new connection; returns the body, or "" on any failure.
std::string httpGet(int port, const std::string& path);

bool processAlive(pid_t pid);

// Keep-alive HTTP load on `connections` connections until stop() or the
// limits; a request fails when the connection cannot be made or breaks
// before a whole response arrived.
class LoadLoop {
 public:
  LoadLoop(int port, int connections, std::chrono::milliseconds max_time, int max_requests);
  ~LoadLoop();
  void stop();
  int ok() const { return ok_; }
  int failed() const { return failed_; }
  std::set<std::string> bodies();

 private:
  void run();
  int port_;
  std::chrono::steady_clock::time_point deadline_;
  int max_requests_;
  std::atomic<bool> stop_{false};
  std::atomic<int> ok_{0}, failed_{0};
  std::mutex mu_;
  std::set<std::string> bodies_;
  std::vector<std::thread> threads_;
};

}  // namespace clusterd::master::test
