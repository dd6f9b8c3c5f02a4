// The daemon's own limits: what one control client may make it hold or do,
// and how large its log may grow. Each has a default and an environment
// variable of the daemon that overrides it (docs/MASTER.md, "Limits").
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/result.h"
#include "master/control.h"

namespace clusterd::master {

struct DaemonLimits {
  ControlLimits control;
  size_t max_apps = 512;      // apps known to the daemon at once
  size_t max_workers = 1024;  // worker slots over all apps
  // daemon.log: rotated past log_max_size, keeping log_retain old files
  // (as log_max_size and log_retain do for apps).
  uint64_t log_max_size = 10 << 20;
  int log_retain = 3;
};

// The defaults with every CLUSTERD_* variable below applied; an error names
// the variable, its value and what it takes.
//   CLUSTERD_CONTROL_MAX_REQUEST (size), CLUSTERD_CONTROL_MAX_DEPTH,
//   CLUSTERD_CONTROL_MAX_QUEUED (size), CLUSTERD_CONTROL_MAX_CLIENTS,
//   CLUSTERD_CONTROL_IDLE_TIMEOUT (duration), CLUSTERD_MAX_APPS,
//   CLUSTERD_MAX_WORKERS, CLUSTERD_DAEMON_LOG_MAX_SIZE (size, 0 = never
//   rotate), CLUSTERD_DAEMON_LOG_RETAIN.
Result<DaemonLimits> limitsFromEnvironment();

}  // namespace clusterd::master
