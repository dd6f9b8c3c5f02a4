// The daemon's own log, <home>/daemon.log, when the daemon runs in the
// background (the CLI starts it with stdout and stderr on that file): the
// file is rotated past a size, keeping a number of old files, like app logs
// (log_max_size, log_retain), and a line identical to the one before it is
// counted instead of written, then reported once as "last message repeated
// N times", as syslog does. A crash-looping app thus cannot fill the disk
// through the daemon's log.
//
// Design: the daemon's log lines come here through common/log's sink and are
// written to fd 2; after a rotation the new file is put on fds 1 and 2, so
// whatever else the process (or a child started later) writes to stderr
// lands in the current file too. The size is read from the file itself
// (fstat), since others may write to it.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/uv_handle.h"

namespace clusterd::master {

class DaemonLog {
 public:
  // Repeats of one line are summed up for at most this long: a line that
  // repeats for hours still shows every kRepeatSummary.
  static constexpr std::chrono::seconds kRepeatSummary{30};

  DaemonLog(std::string home, uint64_t max_size, int retain);
  // Writes a pending repeat count and gives logging back to stderr.
  ~DaemonLog();
  DaemonLog(const DaemonLog&) = delete;
  DaemonLog& operator=(const DaemonLog&) = delete;

  // When fd 2 is <home>/daemon.log, takes over the process's log lines and
  // returns true; otherwise (a foreground daemon) changes nothing.
  bool adopt();

 private:
  void write(std::string_view line, std::string_view key);
  void flushRepeats();
  void append(std::string_view text);
  void rotate();

  std::string home_;
  uint64_t max_size_;
  int retain_;
  bool adopted_ = false;
  UniqueFd dir_;  // the home, for rotating by name without following links
  std::string last_key_;
  std::string last_stamp_;  // timestamp of the last repeat, for its summary
  uint64_t repeats_ = 0;
  std::chrono::steady_clock::time_point first_repeat_;
};

}  // namespace clusterd::master
