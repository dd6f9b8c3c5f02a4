// Entry point of `clusterd`, the lean front: it runs the verbs that only
// talk to the daemon (status, stop, logs, …; see
// addMasterControlCommands) itself and execs clusterd-full, installed next
// to it, with the same arguments for every other verb and for --help and
// --version, so users see one command line with one help text.
//
// Design: `clusterd status` is the command operators run most, and its
// wall time is mostly the dynamic linking of the executable. This binary
// links the control client, the status table and CLI11 only (-Wl,--as-needed
// keeps libcurl, libpq, hiredis and yaml-cpp out of it). Whether a command
// line is ours is decided before any parsing, from the verb: the first
// argument that is neither a global option (--home, --redis, --postgres)
// nor such an option's value. Anything else, including a global option this
// rule does not know and any -h/--help, goes to clusterd-full, whose parser
// is the reference; exec keeps the pid, so signals and exit codes are the
// full binary's own.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "cli/control_client.h"
#include "cli/master_verbs.h"
#include "cli/root.h"
#include "master/reaper.h"
#include "master/trampoline.h"

namespace {

// Not `restart` and `reload`: they read ecosystem files again (cli/app_specs.h).
constexpr std::string_view kOurVerbs[] = {"daemon", "stop",      "delete", "status", "list",
                                          "ls",     "describe",  "scale",  "ping",   "kill",
                                          "save",   "resurrect", "logs",   "flush"};
constexpr std::string_view kValueOptions[] = {"--home", "--redis", "--postgres"};

bool oneOf(std::string_view s, auto& set) {
  for (std::string_view x : set)
    if (s == x) return true;
  return false;
}

// True when this binary runs the command line itself.
bool runsHere(int argc, char** argv) {
  int i = 1;
  for (; i < argc; ++i) {
    std::string_view a = argv[i];
    if (oneOf(a, kValueOptions)) {
      ++i;
      continue;
    }
    size_t eq = a.find('=');
    if (eq != std::string_view::npos && oneOf(a.substr(0, eq), kValueOptions)) continue;
    break;
  }
  if (i >= argc || !oneOf(std::string_view(argv[i]), kOurVerbs)) return false;
  for (int j = i + 1; j < argc; ++j) {
    std::string_view a = argv[j];
    if (a == "-h" || a == "--help" || a == "--help-all") return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace clusterd::cli;
  // The in-process daemon (no clusterd-master installed) starts workers
  // through this trampoline.
  if (clusterd::master::isExecTrampoline(argc, argv)) return clusterd::master::runExecTrampoline(argc, argv);
  if (clusterd::master::isReaper(argc, argv)) return clusterd::master::runReaper(argc, argv);
  if (!runsHere(argc, argv)) {
    std::string full = siblingExe(selfExe(argv[0]), "clusterd-full");
    ::execv(full.c_str(), argv);
    std::fprintf(stderr, "clusterd: cannot execute %s: %s (clusterd-full is installed next to clusterd)\n",
                 full.c_str(), std::strerror(errno));
    return kExitSystem;
  }
  CliContext ctx = defaultContext(argv[0]);
  auto app = makeRootApp(ctx);
  addMasterControlCommands(*app, ctx);
  return runCommandLine(*app, ctx, argc, argv);
}
