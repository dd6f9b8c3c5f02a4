// A built-in worker with queues and no listen address, as real processes on
// a real Redis: it runs its consumers alone (no socket), says READY=1 once
// they take jobs and drains on SIGTERM; --health-listen gives it /health and
// /metrics (nothing else) on the base port plus its instance number; under
// the master, a fork-mode app's instances each answer on their own port;
// and what it refuses at start (exit 100).
#include <catch2/catch.hpp>

#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "tests/support/servers.h"
#include "tests/worker/http_client.h"

namespace worker_queue_only_test {

using namespace clusterd::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// A NOTIFY_SOCKET for one worker: a Unix datagram socket in a temp dir.
class NotifySocket {
 public:
  NotifySocket() : dir_("clusterd-notify"), path_(dir_.file("notify")) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path_.c_str(), sizeof a.sun_path - 1);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      throw std::runtime_error("cannot bind the notify socket " + path_);
  }
  ~NotifySocket() { ::close(fd_); }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  const std::string& path() const { return path_; }
  // The first datagram holding `line` within `timeout`, or "".
  std::string waitFor(const std::string& line, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                      deadline - std::chrono::steady_clock::now())
                      .count();
      if (left <= 0) return "";
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) <= 0) return "";
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) continue;
      std::string msg(buf, static_cast<size_t>(n));
      if (("\n" + msg + "\n").find("\n" + line + "\n") != std::string::npos) return msg;
    }
  }

 private:
  TempDir dir_;
  std::string path_;
  int fd_ = -1;
};

// The TCP ports process `pid` listens on (its sockets found in
// /proc/net/tcp and tcp6 in state LISTEN).
std::set<int> listeningPorts(pid_t pid) {
  std::set<std::string> inodes;
  std::string fd_dir = "/proc/" + std::to_string(pid) + "/fd";
  if (DIR* d = ::opendir(fd_dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      char target[256];
      ssize_t n = ::readlink((fd_dir + "/" + e->d_name).c_str(), target, sizeof target - 1);
      if (n <= 0) continue;
      std::string t(target, static_cast<size_t>(n));
      if (t.rfind("socket:[", 0) == 0) inodes.insert(t.substr(8, t.size() - 9));
    }
    ::closedir(d);
  }
  std::set<int> ports;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // the header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
      fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >>
          timeout >> inode;
      if (state == "0A" && inodes.count(inode))
        ports.insert(std::stoi(local.substr(local.rfind(':') + 1), nullptr, 16));
    }
  }
  return ports;
}

// Enqueues `count` noop jobs on `queue`.
void enqueueNoops(const RedisServer& redis, const std::string& queue, int count) {
  std::string lines;
  for (int i = 0; i < count; ++i) lines += "{\"n\": " + std::to_string(i) + "}\n";
  auto r = runClusterd({"enqueue", queue, "noop", "--bulk", "-"},
                       {.env = {{"CLUSTERD_REDIS_URL", redis.url()}}, .stdin_data = lines});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
}

// Jobs of `queue` completed, as `clusterd queues --json` counts them.
int64_t completed(const RedisServer& redis, const std::string& queue) {
  auto r = runClusterd({"queues", "--json"}, {.env = {{"CLUSTERD_REDIS_URL", redis.url()}}});
  REQUIRE(r.exit_code == 0);
  for (const auto& q : json::parse(r.out))
    if (q["queue"] == queue) return q["completed"].get<int64_t>();
  return 0;
}

// The value of one sample line (`name{labels} value`) in a /metrics body.
int64_t sample(const std::string& body, const std::string& series) {
  size_t p = body.find("\n" + series + " ");
  if (p == std::string::npos) return -1;
  return std::stoll(body.substr(p + series.size() + 2));
}

}  // namespace

TEST_CASE(
    "with queues and no listen address the worker runs its consumers alone and drains on SIGTERM",
    "[worker][queue-only]") {
  RedisServer redis;
  NotifySocket notify;
  TempDir dir("clusterd-queue-only");
  Child w({CLUSTERD_BIN, "worker", "--redis", redis.url(), "--queues", "q:4"},
          {{"NOTIFY_SOCKET", notify.path()}}, dir.file("out.log"));
  // READY=1 once the consumers take jobs, with a status saying so.
  std::string ready = notify.waitFor("READY=1", 20s);
  INFO(readFile(dir.file("out.log")));
  REQUIRE(!ready.empty());
  CHECK(ready.find("STATUS=consuming q") != std::string::npos);
  CHECK(ready.find("not reachable") == std::string::npos);

  enqueueNoops(redis, "q", 25);
  CHECK(waitFor([&] { return completed(redis, "q") == 25; }, 20s));
  // It serves no socket at all, and it stays up with nothing left to do.
  CHECK(listeningPorts(w.pid()).empty());
  std::this_thread::sleep_for(300ms);
  REQUIRE(w.running());

  w.signal(SIGTERM);
  int status = w.wait(10s);
  REQUIRE(status >= 0);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(readFile(dir.file("out.log")).find("drained; exiting") != std::string::npos);
}

TEST_CASE("a queue-only worker says READY=1 only once it reaches Redis", "[worker][queue-only]") {
  RedisServer redis;
  redis.stop();
  NotifySocket notify;
  TempDir dir("clusterd-queue-only");
  Child w(
      {CLUSTERD_BIN, "worker", "--redis", redis.url(), "--queues", "q:2", "--ready-wait", "60s"},
      {{"NOTIFY_SOCKET", notify.path()}}, dir.file("out.log"));
  CHECK(notify.waitFor("READY=1", 1500ms).empty());
  REQUIRE(w.running());
  redis.start();
  INFO(readFile(dir.file("out.log")));
  CHECK(!notify.waitFor("READY=1", 20s).empty());
  enqueueNoops(redis, "q", 3);
  CHECK(waitFor([&] { return completed(redis, "q") == 3; }, 20s));
}

TEST_CASE("the health listener serves only /health and /metrics on the base port plus the instance",
          "[worker][queue-only][health]") {
  RedisServer redis;
  int base = reservedTcpPorts(2);
  TempDir dir("clusterd-queue-only");
  Child w({CLUSTERD_BIN, "worker", "--redis", redis.url(), "--queues", "q:2", "--job-api", "q=*",
           "--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:" + std::to_string(base),
           "--name", "jobs"},
          {{"CLUSTERD_INSTANCE", "1"}}, dir.file("out.log"));
  int port = base + 1;
  INFO(readFile(dir.file("out.log")));
  REQUIRE(waitFor([&] { return !w.running() || httpGet(port, "/health").has_value(); }, 20s));
  REQUIRE(w.running());
  auto health = httpGet(port, "/health");
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(json::parse(health->body)["redis"] == "ok");
  auto metrics = httpGet(port, "/metrics");
  REQUIRE(metrics);
  CHECK(metrics->status == 200);
  CHECK(sample(metrics->body, "clusterd_worker_info{app=\"jobs\",instance=\"1\"}") == 1);
  // The front's job API is open, but not on this address.
  CHECK(httpGet(port, "/v1/queues")->status == 404);
  CHECK(httpPost(port, "/v1/queues/q/jobs", R"({"name":"noop"})")->status == 404);
  CHECK(httpPost(port, "/health", "{}")->status == 405);
  CHECK(completed(redis, "q") == 0);
  // Instance 1 took base + 1, not the base port.
  CHECK_FALSE(tcpConnects(base));
  CHECK(listeningPorts(w.pid()).count(port) == 1);
}

TEST_CASE("a queue-only worker with --health-listen keeps answering /health while it drains",
          "[worker][queue-only][health]") {
  RedisServer redis;
  int port = reservedTcpPort();
  TempDir dir("clusterd-queue-only");
  Child w({CLUSTERD_BIN, "worker", "--redis", redis.url(), "--queues", "slow:1", "--kill-timeout",
           "20s", "--health-listen", "127.0.0.1:" + std::to_string(port)},
          {}, dir.file("out.log"));
  INFO(readFile(dir.file("out.log")));
  REQUIRE(waitFor([&] { return !w.running() || httpGet(port, "/health").has_value(); }, 20s));
  auto r = runClusterd({"enqueue", "slow", "sleep", R"({"ms": 3000})"},
                       {.env = {{"CLUSTERD_REDIS_URL", redis.url()}}});
  REQUIRE(r.exit_code == 0);
  REQUIRE(waitFor([&] {
    auto m = httpGet(port, "/metrics");
    return m && sample(m->body, "clusterd_jobs_in_flight{queue=\"slow\"}") == 1;
  }));
  w.signal(SIGTERM);
  std::this_thread::sleep_for(300ms);
  REQUIRE(w.running());  // the job still runs
  auto health = httpGet(port, "/health");
  REQUIRE(health);
  CHECK(health->status == 200);
  int status = w.wait(20s);
  REQUIRE(status >= 0);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(completed(redis, "slow") == 1);
}

TEST_CASE("the worker refuses to start with nothing to do or addresses it cannot serve",
          "[worker][queue-only][cli]") {
  RunOptions no_redis{.env = {{"CLUSTERD_REDIS_URL", ""}}, .timeout = 10s};
  auto nothing = runClusterd({"worker"}, no_redis);
  CHECK(nothing.exit_code == 100);
  CHECK(nothing.err.find("nothing to do: pass --listen HOST:PORT to serve HTTP, --queues") !=
        std::string::npos);

  RunOptions redis_url{.env = {{"CLUSTERD_REDIS_URL", "redis://127.0.0.1:1"}}, .timeout = 10s};
  auto job_api = runClusterd({"worker", "--queues", "q", "--job-api", "q=*"}, redis_url);
  CHECK(job_api.exit_code == 100);
  CHECK(job_api.err.find("--job-api needs --listen HOST:PORT") != std::string::npos);

  auto bad = runClusterd({"worker", "--queues", "q", "--health-listen", "9100"}, redis_url);
  CHECK(bad.exit_code == 100);
  CHECK(bad.err.find("--health-listen wants HOST:PORT") != std::string::npos);

  RunOptions last_instance = redis_url;
  last_instance.env["CLUSTERD_INSTANCE"] = "3";
  auto past =
      runClusterd({"worker", "--queues", "q", "--health-listen", "127.0.0.1:65534"}, last_instance);
  CHECK(past.exit_code == 100);
  CHECK(past.err.find("instance 3 would be on port 65534 + 3, past 65535") != std::string::npos);
}

TEST_CASE(
    "under the master each instance of a fork-mode queue-only app answers on its own health port",
    "[worker][queue-only][health][master]") {
  RedisServer redis;
  TempDir home("clusterd-queue-only");
  int base = reservedTcpPorts(2);
  writeFile(home.file("eco.yaml"),
            "apps:\n"
            "  - name: jobs\n"
            "    script: builtin:worker\n"
            "    instances: 2\n"
            "    wait_ready: true\n"
            "    health_listen: 127.0.0.1:" +
                std::to_string(base) +
                "\n"
                "    queues:\n"
                "      q: 2\n"
                "queue:\n"
                "  redis_url: " +
                redis.url() + "\n");
  RunOptions env{.env = {{"CLUSTERD_HOME", home.path()}}, .timeout = 30s};
  struct Stopper {
    RunOptions env;
    ~Stopper() { runClusterd({"kill"}, env); }
  } stopper{env};
  auto started = runClusterd({"start", home.file("eco.yaml")}, env);
  INFO(started.out << started.err);
  REQUIRE(started.exit_code == 0);

  // Both instances said READY=1 (wait_ready), in fork mode.
  json rows;
  REQUIRE(waitFor(
      [&] {
        auto r = runClusterd({"status", "--json"}, env);
        if (r.exit_code != 0) return false;
        rows = json::parse(r.out);
        int online = 0;
        for (auto& w : rows) online += w["state"] == "online";
        return online == 2;
      },
      20s));
  INFO(rows.dump());
  for (auto& w : rows) CHECK(w["mode"] == "fork");

  enqueueNoops(redis, "q", 40);
  REQUIRE(waitFor([&] { return completed(redis, "q") == 40; }, 20s));
  int64_t processed = 0;
  for (int instance = 0; instance < 2; ++instance) {
    int port = base + instance;
    auto health = httpGet(port, "/health");
    REQUIRE(health);
    CHECK(health->status == 200);
    auto metrics = httpGet(port, "/metrics");
    REQUIRE(metrics);
    // Each port is one instance: its own identity and its own counters.
    CHECK(sample(metrics->body, "clusterd_worker_info{app=\"jobs\",instance=\"" +
                                    std::to_string(instance) + "\"}") == 1);
    CHECK(sample(metrics->body, "clusterd_worker_info{app=\"jobs\",instance=\"" +
                                    std::to_string(1 - instance) + "\"}") == -1);
    int64_t mine = sample(metrics->body, "clusterd_jobs_processed_total{queue=\"q\"}");
    CHECK(mine >= 0);
    processed += mine;
    CHECK(httpGet(port, "/v1/queues")->status == 404);
  }
  // The two scrapes together account for every job exactly once.
  CHECK(processed == 40);
}

}  // namespace worker_queue_only_test
