// clusterd-master: the master daemon's own executable, linked with the
// master module only, so the long-running daemon maps few libraries and
// every worker start (through the exec trampoline) stays cheap.
//
//   clusterd-master --home DIR [--clusterd PATH]
//   clusterd-master __exec <master pid> <0|1> <program> [args...]
//   clusterd-master __reap <home> <daemon pid> <daemon start time>
//
// Operators start it through `clusterd daemon [--foreground]` or
// `clusterd start`; --clusterd names the binary that runs builtin:worker
// apps (default: `clusterd-full` next to this file, else `clusterd`).
// Exit codes: 0 after a clean stop (SIGTERM, SIGINT, `clusterd kill`),
// 100 usage, 111 cannot start.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "master/daemon.h"
#include "master/reaper.h"
#include "master/trampoline.h"

namespace {

std::string selfPath(const char* argv0) {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : argv0;
}

int usage() {
  std::fprintf(stderr,
               "usage: clusterd-master --home DIR [--clusterd PATH]\n"
               "Runs the clusterd master daemon in the foreground; normally started by\n"
               "`clusterd daemon` or `clusterd start`.\n");
  return 100;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace clusterd::master;
  if (isExecTrampoline(argc, argv)) return runExecTrampoline(argc, argv);
  if (isReaper(argc, argv)) return runReaper(argc, argv);
  DaemonOptions o;
  o.self_exe = selfPath(argv[0]);
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--home") == 0 && i + 1 < argc) o.home = argv[++i];
    else if (std::strcmp(argv[i], "--clusterd") == 0 && i + 1 < argc) o.worker_exe = argv[++i];
    else return usage();
  }
  if (o.home.empty()) return usage();
  if (o.worker_exe.empty()) {
    std::string dir = o.self_exe.substr(0, o.self_exe.rfind('/') + 1);
    o.worker_exe = ::access((dir + "clusterd-full").c_str(), X_OK) == 0 ? dir + "clusterd-full" : dir + "clusterd";
  }
  return runDaemon(o);
}
