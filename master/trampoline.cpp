// The exec trampoline (see master/trampoline.h). Runs before any other
// initialisation of the binary, so it stays cheap: no allocation-heavy setup.
#include "master/trampoline.h"

#include <linux/close_range.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace clusterd::master {

bool isExecTrampoline(int argc, char** argv) {
  return argc >= 2 && std::strcmp(argv[1], "__exec") == 0;
}

int runExecTrampoline(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: clusterd __exec <master pid> <0|1> <program> [args...]\n");
    return 100;
  }
  long master = std::strtol(argv[2], nullptr, 10);
  // Already a group leader when the master started us in a session of our own.
  if (::getpgrp() != ::getpid() && ::setpgid(0, 0) != 0) {
    std::fprintf(stderr, "clusterd: setpgid: %s\n", std::strerror(errno));
    return 111;
  }
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
    std::fprintf(stderr, "clusterd: prctl(PR_SET_PDEATHSIG): %s\n", std::strerror(errno));
    return 111;
  }
  // The master may have died between fork and prctl: then nobody supervises us.
  if (::getppid() != static_cast<pid_t>(master)) return 111;
  // libuv blocks no signals in children, but the default dispositions must hold.
  ::signal(SIGPIPE, SIG_DFL);
  if (std::strcmp(argv[3], "1") == 0) {
    char pid[32];
    std::snprintf(pid, sizeof pid, "%d", static_cast<int>(::getpid()));
    ::setenv("LISTEN_PID", pid, 1);
  }
  // Only stdio and the listening socket (fd 3 with LISTEN_PID) go on to
  // the program, whatever else the master may have let through.
  ::syscall(SYS_close_range, std::strcmp(argv[3], "1") == 0 ? 4U : 3U, ~0U, CLOSE_RANGE_CLOEXEC);
  ::execvp(argv[4], argv + 4);
  int e = errno;
  std::fprintf(stderr, "clusterd: cannot execute %s: %s\n", argv[4], std::strerror(e));
  return e == ENOENT ? 127 : 126;
}

}  // namespace clusterd::master
