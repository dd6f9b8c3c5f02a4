// Fuzz target: notify datagrams, from the socket to the worker record. Each
// input is one datagram sent to a real NotifyServer (master/notify.h) on a
// socket in a temporary directory, so the kernel attaches this process's
// credentials; the server hands it to a real Supervisor (fake clock and
// processes) that routes this pid to a worker through its process group and
// parent, as it does for a worker's children. The datagram is applied to a launching worker, then again once
// it is online, and the `status` and `describe` views the control socket
// serves are rendered after each, as the daemon does.
//
// Whatever a worker sends (READY=1, STATUS=…, WATCHDOG=…, CLUSTERD_STATS=…
// with any bytes) must leave the master running and its views printable.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "common/log.h"
#include "master/notify.h"
#include "master/supervisor.h"
#include "tests/master/fake_platform.h"

namespace {

using namespace clusterd::master;
using clusterd::master::test::FakePlatform;

struct Env {
  std::string dir;  // log files of the fuzzed app
  sockaddr_un to{};
  socklen_t to_len = 0;
  int sender = -1;
  uv_loop_t* loop = uv_default_loop();
  Supervisor* target = nullptr;  // the supervisor of the input being run
  std::unique_ptr<NotifyServer> server;

  Env() {
    clusterd::log::setMinLevel(clusterd::log::Level::kError);
    char tmpl[] = "/tmp/clusterd-fuzz-notify-XXXXXX";
    if (!::mkdtemp(tmpl)) std::abort();
    dir = tmpl;
    // No per-sender budget to speak of: every input must reach the supervisor.
    server = std::make_unique<NotifyServer>(
        loop,
        [this](pid_t pid, const std::string& tag, std::string_view m) {
          if (target) target->onNotify(pid, tag, m);
        },
        1'000'000);
    std::string path = dir + "/notify.sock";
    if (!server->start(path)) std::abort();
    to.sun_family = AF_UNIX;
    std::memcpy(to.sun_path, path.c_str(), path.size() + 1);
    to_len = static_cast<socklen_t>(sizeof to);
    sender = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sender < 0) std::abort();
    int big = 1 << 20;
    ::setsockopt(sender, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  }
  ~Env() {
    ::close(sender);
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }

  // Sends one datagram and runs the loop until the server has taken it.
  void deliver(const uint8_t* data, size_t size) {
    if (::sendto(sender, data, size, 0, reinterpret_cast<sockaddr*>(&to), to_len) < 0)
      return;  // larger than the socket takes: a worker could not send it either
    uv_run(loop, UV_RUN_NOWAIT);
    uv_run(loop, UV_RUN_NOWAIT);
  }
};

Env& env() {
  static Env* e = new Env();  // lives for the process: the fuzzer never returns
  return *e;
}

void render(const Supervisor& sup) {
  auto show = [](const nlohmann::json& j) {
    (void)j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  };
  show(sup.statusJson());
  if (auto d = sup.describeJson("app")) show(*d);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Env& e = env();
  FakePlatform platform;
  SupervisorOptions o;
  o.self_exe = "/bin/true";
  o.log_dir = e.dir;
  o.use_trampoline = false;
  Supervisor sup(platform, o);
  AppConfig app;
  app.spec.name = "app";
  app.spec.script = "/bin/sleep";
  app.spec.wait_ready = true;
  app.spec.watchdog = clusterd::config::Millis{1000};
  app.base_dir = e.dir;
  if (!sup.startApp(app)) std::abort();
  pid_t worker = sup.apps().at("app")->slots.at(0)->main->pid;
  platform.group_of[::getpid()] = worker;  // our datagrams speak for the worker's group
  platform.parent_of[::getpid()] = worker;  // as its child

  e.target = &sup;
  e.deliver(data, size);  // launching
  render(sup);
  platform.advance(clusterd::config::Millis{500});
  Worker* w = sup.apps().at("app")->slots.at(0)->main.get();
  platform.group_of[::getpid()] = w->pid;
  platform.parent_of[::getpid()] = w->pid;
  e.deliver(data, size);  // online, if the first one said READY=1
  render(sup);
  platform.advance(clusterd::config::Millis{2000});  // watchdog and restarts
  render(sup);
  e.target = nullptr;
  return 0;
}
