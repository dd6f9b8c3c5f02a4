// The exec trampoline every worker starts through:
//   clusterd __exec <master pid> <set LISTEN_PID: 0|1> <program> [args...]
// It makes itself the leader of a new process group (so the master can
// signal the worker and whatever it forks at once), arms PR_SET_PDEATHSIG
// (SIGKILL) so the worker dies with the master,
// exits at once if the master is already gone, sets LISTEN_PID to its own
// pid (which execve keeps), then execs the program. Exit 127: the program
// was not found; 126: it could not be executed (the reason goes to stderr).
//
// Design: uv_spawn cannot set an environment variable to the child's own pid
// nor arm the parent-death signal; a tiny exec of our own binary can do
// both without a shell and keeps the pid the master knows. The group is made
// with setpgid() rather than a new session (setsid(), libuv's DETACHED):
// the worker stays in the master's session, as nginx's and PM2's workers do,
// so Linux's scheduler autogroups (on by default) count the master and all
// its workers as one group. A session per worker made each worker a group of
// its own and cost 10% of new-connection throughput next to a load generator
// (docs/BENCHMARKS.md).
#pragma once

namespace clusterd::master {

// True when argv is a trampoline invocation (argv[1] == "__exec").
bool isExecTrampoline(int argc, char** argv);
// Does not return on success.
int runExecTrampoline(int argc, char** argv);

}  // namespace clusterd::master
