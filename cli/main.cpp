// Entry point of clusterd-full, the command line with every verb: parses the
// command line and runs one verb. Verbs are grouped by module; see
// cli/commands.h for the exit codes. Users run `clusterd` (the lean front,
// cli/master_front.cpp), which runs the control-socket verbs itself and
// execs this binary, installed next to it, for all the others.
#include "cli/commands.h"
#include "cli/root.h"
#include "master/reaper.h"
#include "master/trampoline.h"

int main(int argc, char** argv) {
  using namespace clusterd::cli;
  // Workers may start through this trampoline; it must not pay for the CLI setup.
  if (clusterd::master::isExecTrampoline(argc, argv)) return clusterd::master::runExecTrampoline(argc, argv);
  if (clusterd::master::isReaper(argc, argv)) return clusterd::master::runReaper(argc, argv);
  CliContext ctx = defaultContext(argv[0]);
  auto app = makeRootApp(ctx);
  addConfigCommands(*app, ctx);
  addMasterCommands(*app, ctx);
  addQueueCommands(*app, ctx);
  addWorkerCommands(*app, ctx);
  addDbCommands(*app, ctx);
  return runCommandLine(*app, ctx, argc, argv);
}
