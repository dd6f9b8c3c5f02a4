// The groups file and the orphan sweep (see master/orphans.h).
#include "master/orphans.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <set>

#include "common/log.h"

namespace clusterd::master {

namespace {

constexpr std::string_view kOrphansLog = "sweep";
constexpr std::string_view kMagic = "clusterd-groups 1";

std::string readSmallFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return "";
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

template <typename T>
bool toNumber(std::string_view s, T& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && end == s.data() + s.size();
}

std::optional<StatIds> readStatIds(pid_t pid) {
  std::string text = readSmallFile("/proc/" + std::to_string(pid) + "/stat");
  if (text.empty()) return std::nullopt;
  return parseStatIds(text);
}

struct Member {
  pid_t pid;
  std::string comm;
};

// The running (not zombie) processes of each of `groups`, by pgid; never
// this process.
std::map<pid_t, std::vector<Member>> scanGroups(const std::vector<GroupRecord>& groups) {
  std::map<pid_t, std::vector<Member>> out;
  std::set<pid_t> wanted;
  for (auto& g : groups) wanted.insert(g.pgid);
  if (wanted.empty()) return out;
  DIR* dir = ::opendir("/proc");
  if (!dir) {
    log::warn(kOrphansLog, "opendir /proc: {}", std::strerror(errno));
    return out;
  }
  pid_t self = ::getpid();
  while (dirent* e = ::readdir(dir)) {
    pid_t pid = 0;
    if (!toNumber(std::string_view(e->d_name), pid) || pid == self) continue;
    auto ids = readStatIds(pid);
    if (!ids || ids->state == 'Z' || !wanted.count(ids->pgrp)) continue;
    out[ids->pgrp].push_back({pid, ids->comm});
  }
  ::closedir(dir);
  return out;
}

// False when the group's number was reused: its leader pid runs, but it is
// not the process that was recorded.
bool stillTheWorkersGroup(const GroupRecord& g) {
  auto leader = readStatIds(g.pid);
  return !leader || leader->start_time == g.start_time;
}

std::string describe(const std::vector<Member>& members) {
  std::string out;
  for (auto& m : members) {
    if (!out.empty()) out += ", ";
    out += std::to_string(m.pid) + " (" + m.comm + ")";
  }
  return out;
}

}  // namespace

std::optional<StatIds> parseStatIds(std::string_view stat) {
  size_t open = stat.find('(');
  size_t close = stat.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open ||
      close + 2 >= stat.size())
    return std::nullopt;
  StatIds ids;
  ids.comm = std::string(stat.substr(open + 1, close - open - 1));
  // Fields restart after ") ": index 0 is field 3 (state), so field N is N - 3.
  std::string_view rest = stat.substr(close + 2);
  std::vector<std::string_view> f;
  while (!rest.empty() && f.size() < 20) {
    size_t sp = rest.find(' ');
    f.push_back(rest.substr(0, sp));
    rest = sp == std::string_view::npos ? std::string_view{} : rest.substr(sp + 1);
  }
  if (f.size() < 20 || f[0].size() != 1) return std::nullopt;
  ids.state = f[0][0];
  if (!toNumber(f[2], ids.pgrp) || !toNumber(f[19], ids.start_time)) return std::nullopt;
  return ids;
}

std::string groupsPath(const std::string& home) { return home + "/workers.groups"; }

std::string currentBootId() {
  std::string id = readSmallFile("/proc/sys/kernel/random/boot_id");
  while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
  return id;
}

std::optional<ProcessId> selfProcessId() {
  auto ids = readStatIds(::getpid());
  if (!ids) return std::nullopt;
  return ProcessId{::getpid(), ids->start_time};
}

std::string formatGroups(const std::string& boot_id, const GroupsFile& file) {
  std::string out = std::string(kMagic) + "\nboot " + boot_id + "\ndaemon " +
                    std::to_string(file.daemon.pid) + " " + std::to_string(file.daemon.start_time) + "\n";
  for (auto& g : file.groups)
    out += std::to_string(g.pgid) + " " + std::to_string(g.pid) + " " + std::to_string(g.start_time) + "\n";
  return out;
}

namespace {

// "<a> <b>" and "<a> <b> <c>": numbers separated by one space.
bool twoNumbers(std::string_view line, pid_t& a, uint64_t& b) {
  size_t sp = line.find(' ');
  return sp != std::string_view::npos && toNumber(line.substr(0, sp), a) && toNumber(line.substr(sp + 1), b);
}

bool threeNumbers(std::string_view line, pid_t& a, pid_t& b, uint64_t& c) {
  size_t sp = line.find(' ');
  return sp != std::string_view::npos && toNumber(line.substr(0, sp), a) && twoNumbers(line.substr(sp + 1), b, c);
}

}  // namespace

std::optional<GroupsFile> parseGroups(std::string_view text, const std::string& boot_id) {
  GroupsFile out;
  int line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++line_no;
    if (line_no == 1 && line != kMagic) return std::nullopt;
    if (line_no == 2 && (boot_id.empty() || line != "boot " + boot_id)) return std::nullopt;
    if (line_no == 3) {
      std::string_view word = "daemon ";
      if (!line.starts_with(word) || !twoNumbers(line.substr(word.size()), out.daemon.pid, out.daemon.start_time))
        return std::nullopt;
      continue;
    }
    if (line_no <= 3 || line.empty()) continue;
    GroupRecord g;
    // A damaged line names no group that could be signalled safely; pid 0
    // and 1 never are.
    if (threeNumbers(line, g.pgid, g.pid, g.start_time) && g.pgid > 1 && g.pid > 1) out.groups.push_back(g);
  }
  if (line_no < 3) return std::nullopt;
  return out;
}

std::optional<GroupsFile> readGroups(const std::string& path) {
  return parseGroups(readSmallFile(path), currentBootId());
}

std::vector<GroupRecord> signalLeftovers(const std::vector<GroupRecord>& groups, int sig,
                                         std::chrono::milliseconds grace) {
  std::vector<GroupRecord> ours;
  for (auto& g : groups)
    if (stillTheWorkersGroup(g)) ours.push_back(g);
  auto members = scanGroups(ours);
  std::vector<GroupRecord> signalled;
  for (auto& g : ours) {
    auto it = members.find(g.pgid);
    if (it == members.end()) {
      if (sig == SIGKILL) log::info(kOrphansLog, "process group {} ended after SIGTERM", g.pgid);
      continue;
    }
    if (sig == SIGKILL)
      log::warn(kOrphansLog, "process group {} still runs {} {} ms after SIGTERM; SIGKILL", g.pgid,
                describe(it->second), grace.count());
    else
      log::warn(kOrphansLog, "process group {} of worker pid {} of a daemon that is gone still runs {}; SIGTERM",
                g.pgid, g.pid, describe(it->second));
    ::kill(-g.pgid, sig);
    signalled.push_back(g);
  }
  return signalled;
}

bool anyLeftovers(const std::vector<GroupRecord>& groups) {
  std::vector<GroupRecord> ours;
  for (auto& g : groups)
    if (stillTheWorkersGroup(g)) ours.push_back(g);
  return !scanGroups(ours).empty();
}

GroupLedger::GroupLedger(uv_loop_t* loop, std::string path)
    : path_(std::move(path)), boot_id_(currentBootId()), self_(selfProcessId().value_or(ProcessId{})) {
  uv_timer_init(loop, timer_.get());
  timer_->data = this;
  uv_unref(timer_.handle());
}

void GroupLedger::add(pid_t pid) {
  auto ids = readStatIds(pid);
  if (!ids) return;  // gone already; its exit follows
  live_[pid] = ids->start_time;
  schedule();
}

void GroupLedger::remove(pid_t pid) {
  if (live_.erase(pid)) schedule();
}

void GroupLedger::schedule() {
  dirty_ = true;
  if (uv_is_active(timer_.handle())) return;
  uv_timer_start(timer_.get(), [](uv_timer_t* t) {
    if (t->data) static_cast<GroupLedger*>(t->data)->flush();
  }, 0, 0);
}

void GroupLedger::flush() {
  if (!dirty_) return;
  dirty_ = false;
  GroupsFile file{self_, {}};
  for (auto& [pid, start] : live_) file.groups.push_back({pid, pid, start});
  std::string text = formatGroups(boot_id_, file);
  std::string tmp = path_ + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  bool ok = static_cast<bool>(fd) &&
            ::write(fd.get(), text.data(), text.size()) == static_cast<ssize_t>(text.size());
  fd.reset();
  if (!ok || ::rename(tmp.c_str(), path_.c_str()) != 0)
    log::warn(kOrphansLog, "cannot record the worker process groups in {}: {}; a daemon killed with "
              "SIGKILL may leave the workers' children running", path_, std::strerror(errno));
}

OrphanSweep::OrphanSweep(uv_loop_t* loop, std::chrono::milliseconds grace)
    : loop_(loop), grace_(grace) {}

int OrphanSweep::start(const std::string& path) {
  auto file = readGroups(path);
  if (!file) return 0;
  pending_ = signalLeftovers(file->groups, SIGTERM, grace_);
  if (!pending_.empty()) {
    uv_timer_init(loop_, timer_.get());
    timer_->data = this;
    uv_timer_start(timer_.get(), [](uv_timer_t* t) {
      if (t->data) static_cast<OrphanSweep*>(t->data)->finish();
    }, static_cast<uint64_t>(grace_.count()), 0);
  }
  return static_cast<int>(pending_.size());
}

void OrphanSweep::finish() {
  signalLeftovers(std::exchange(pending_, {}), SIGKILL, grace_);
  timer_.reset();
}

}  // namespace clusterd::master
