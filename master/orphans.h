// The orphan sweep: the record of live worker process groups kept in the
// daemon's home, and the sweep a starting daemon runs over the groups that a
// daemon killed with SIGKILL left behind.
//
// Design: a worker dies with the master (PR_SET_PDEATHSIG, see
// master/trampoline.h), but the parent-death signal is not inherited by what
// the worker forks, so after a SIGKILLed master those grandchildren would run
// on in the dead worker's process group. GroupLedger keeps <home>/workers.groups
// naming every live worker's group, rewritten (write + rename) on a zero
// timer after spawns and exits, never on a sample. OrphanSweep reads it when
// the next daemon for the home starts, SIGTERMs each recorded group that
// still has members and SIGKILLs what is left after a grace period, on a uv
// timer. Pid reuse: the kernel does not hand a process group's id to a new
// process while the group has members, so a group whose leader is gone is
// still the worker's; a leader pid alive with a start time other than the
// recorded one means the group died and the number was reused, and it is
// left alone. Records from an earlier boot (another boot id) are ignored.
//
// File format, one record per line after a two-line header:
//   clusterd-groups 1
//   boot <contents of /proc/sys/kernel/random/boot_id>
//   <pgid> <leader pid> <leader start time, clock ticks since boot (stat field 22)>
#pragma once

#include <sys/types.h>
#include <uv.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/uv_handle.h"

namespace clusterd::master {

struct GroupRecord {
  pid_t pgid = 0;
  pid_t pid = 0;
  uint64_t start_time = 0;
  bool operator==(const GroupRecord&) const = default;
};

// The fields of /proc/<pid>/stat the sweep needs.
struct StatIds {
  char state = '?';
  pid_t pgrp = 0;
  uint64_t start_time = 0;
  std::string comm;
};
std::optional<StatIds> parseStatIds(std::string_view stat);

std::string groupsPath(const std::string& home);
std::string currentBootId();
std::string formatGroups(const std::string& boot_id, const std::vector<GroupRecord>& groups);
// The records of `text` when it was written during boot `boot_id`; none
// otherwise (another boot, or not a groups file).
std::vector<GroupRecord> parseGroups(std::string_view text, const std::string& boot_id);

// Keeps the groups file of a running daemon in step with its workers.
class GroupLedger {
 public:
  GroupLedger(uv_loop_t* loop, std::string path);
  // A worker was spawned; it leads its own process group.
  void add(pid_t pid);
  // A worker exited (the master has signalled what was left of its group).
  void remove(pid_t pid);
  // Writes the file now if it is out of date.
  void flush();

 private:
  void schedule();

  std::string path_;
  std::string boot_id_;
  std::map<pid_t, uint64_t> live_;  // leader pid -> start time
  UvHandle<uv_timer_t> timer_;
  bool dirty_ = false;
};

// Terminates the process groups a previous daemon recorded.
class OrphanSweep {
 public:
  OrphanSweep(uv_loop_t* loop, std::chrono::milliseconds grace);
  // Reads the records at `path`, SIGTERMs every group that still has
  // members and arms the SIGKILL timer. Returns the number of groups
  // signalled. Call before a GroupLedger rewrites the file.
  int start(const std::string& path);

 private:
  void finish();

  uv_loop_t* loop_;
  std::chrono::milliseconds grace_;
  std::vector<GroupRecord> pending_;
  UvHandle<uv_timer_t> timer_;
};

}  // namespace clusterd::master
