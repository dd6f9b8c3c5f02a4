// The daemon's start-up checks: the home directory must be the daemon
// user's alone, and nothing the daemon inherited may leak into the workers.
//
// Design: the home holds the control socket, the notify socket, the saved
// apps and the default log directory. Anyone who can write the home or one
// of its parents can swap these for links to files the daemon (often root)
// then writes, so the daemon refuses to start on such a home and says how to
// fix it, as sshd's StrictModes does, rather than repairing it silently.
#pragma once

#include <string>

#include "common/result.h"

namespace clusterd::master {

// Checks that `home`, its parent directories, and every entry of the home
// and of its logs/ directory belong to the daemon's user (parents: or
// root) and are not writable by group or others (parents: unless sticky,
// like /tmp). The error names the path, what is wrong and the command that
// fixes it.
Result<void> checkHome(const std::string& home);

// Marks every descriptor above 2 close-on-exec: whatever the daemon was
// started with (a shell's, a service manager's, a test's) never reaches a
// worker. Descriptors a worker must inherit are passed explicitly.
void closeInheritedOnExec();

}  // namespace clusterd::master
