// Worker log files: each app's stdout and stderr lines are appended to files
// under <home>/logs (or the configured paths), optionally prefixed with a
// timestamp (log_date_format, strftime syntax), and rotated by size:
// past log_max_size, <file> becomes <file>.1, <file>.1 becomes <file>.2, …,
// keeping log_retain old files.
//
// Design: workers write into pipes the master reads; the master assembles
// whole lines per pipe (LineSplitter) so lines of instances sharing a file
// never interleave mid-line. Writes are plain write(2) with O_APPEND on a
// local file, which does not block the loop in practice.
//
// The master is often root and an app may run as another user, who must not
// be able to point a log at a file of root's (/root/.ssh/authorized_keys,
// /etc/cron.d/…). So the file's directory is opened once and held: opening,
// rotating and truncating are *at() calls on that directory, none follows a
// symbolic link, and a log whose file is a link, is not a regular file or
// a character device (/dev/null), or (for an app of another user) whose
// directory that user could write or swap, is refused.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/uv_handle.h"

namespace clusterd::master {

// The user an app runs as when it is not the master's own: the one whose
// writes a log's directory must be safe from.
struct LogUser {
  uid_t uid = 0;
  gid_t gid = 0;
};

class LogFile {
 public:
  // Opens (creating) `path`. Without `untrusted` the app runs as the
  // master's own user (or root) and only links are refused. A refused file
  // writes nothing and says why in refusal().
  LogFile(std::string path, uint64_t max_size, int retain, std::string date_format,
          std::optional<LogUser> untrusted = std::nullopt);
  const std::string& path() const { return path_; }
  // Why the file was refused ("" when it was not); names the path and the fix.
  const std::string& refusal() const { return refusal_; }
  // Appends complete lines (each ending in '\n').
  void writeLines(std::string_view lines);
  // Empties the file (clusterd flush); rotated files are removed too.
  void truncate();

 private:
  void openDir();
  void open();
  void rotate();

  std::string path_;
  std::string name_;  // the file's name in dir_
  uint64_t max_size_;
  int retain_;
  std::string date_format_;
  std::optional<LogUser> untrusted_;
  std::string refusal_;
  UniqueFd dir_;  // O_PATH descriptor of the file's directory
  UniqueFd fd_;
  bool regular_ = true;  // false for a character device: no rotation
  uint64_t size_ = 0;
};

// Shifts `name`.1 … `name`.(retain-1) up by one and renames `name` to
// `name`.1 inside the directory `dir_fd` (retain 0: removes `name`), never
// following a link. Shared by every size-rotated file of the master.
void rotateFiles(int dir_fd, const std::string& name, int retain);

// Splits a byte stream into lines for one LogFile; keeps the partial tail.
class LineSplitter {
 public:
  explicit LineSplitter(std::shared_ptr<LogFile> file) : file_(std::move(file)) {}
  void feed(std::string_view data);
  void finish();  // end of stream: writes a partial last line

 private:
  std::shared_ptr<LogFile> file_;
  std::string partial_;
};

}  // namespace clusterd::master
