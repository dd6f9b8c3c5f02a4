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
// If the daemon dies, its reaper process (master/reaper.h) runs the same
// sweep at once over the file, provided the file still names that daemon.
//
// File format, a three-line header and one record per line:
//   clusterd-groups 1
//   boot <contents of /proc/sys/kernel/random/boot_id>
//   daemon <pid> <start time>
//   <pgid> <leader pid> <leader start time>
// Start times are clock ticks since boot (field 22 of /proc/<pid>/stat).
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

// A process told apart from any later one with the same pid.
struct ProcessId {
  pid_t pid = 0;
  uint64_t start_time = 0;
  bool operator==(const ProcessId&) const = default;
};

struct GroupsFile {
  ProcessId daemon;  // the daemon that wrote the file
  std::vector<GroupRecord> groups;
};

// The fields of /proc/<pid>/stat the sweep needs.
struct StatIds {
  char state = '?';
  pid_t pgrp = 0;
  uint64_t start_time = 0;
  std::string comm;
};
std::optional<StatIds> parseStatIds(std::string_view stat);
// This process, or nullopt when /proc cannot tell.
std::optional<ProcessId> selfProcessId();

std::string groupsPath(const std::string& home);
std::string currentBootId();
std::string formatGroups(const std::string& boot_id, const GroupsFile& file);
// The file written during boot `boot_id`; nullopt for another boot or text
// that is not a groups file. Damaged record lines are skipped.
std::optional<GroupsFile> parseGroups(std::string_view text, const std::string& boot_id);
// Reads and parses the file at `path` (nullopt when absent or unusable).
std::optional<GroupsFile> readGroups(const std::string& path);

// Sends `sig` (SIGTERM, then SIGKILL) to each of `groups` that is still the
// worker's and still has processes, logging each process; returns the
// groups signalled. With SIGKILL, `grace` is the time since the SIGTERM
// (for the log), and a group that has ended is logged as such.
std::vector<GroupRecord> signalLeftovers(const std::vector<GroupRecord>& groups, int sig,
                                         std::chrono::milliseconds grace);
// True while any of `groups` has a process that is not a zombie.
bool anyLeftovers(const std::vector<GroupRecord>& groups);

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
  ProcessId self_;
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
