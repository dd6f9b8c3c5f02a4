// The exec trampoline every worker starts through:
//   clusterd __exec <master pid> <set LISTEN_PID: 0|1> <program> [args...]
// It arms PR_SET_PDEATHSIG (SIGKILL) so the worker dies with the master,
// exits at once if the master is already gone, sets LISTEN_PID to its own
// pid (which execve keeps), then execs the program. Exit 127: the program
// was not found; 126: it could not be executed (the reason goes to stderr).
//
// Design: uv_spawn cannot set an environment variable to the child's own pid
// nor arm the parent-death signal; a tiny exec of our own binary can do
// both without a shell and keeps the pid the master knows.
#pragma once

namespace clusterd::master {

// True when argv is a trampoline invocation (argv[1] == "__exec").
bool isExecTrampoline(int argc, char** argv);
// Does not return on success.
int runExecTrampoline(int argc, char** argv);

}  // namespace clusterd::master
