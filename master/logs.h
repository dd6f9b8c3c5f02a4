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
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/uv_handle.h"

namespace clusterd::master {

class LogFile {
 public:
  LogFile(std::string path, uint64_t max_size, int retain, std::string date_format);
  const std::string& path() const { return path_; }
  // Appends complete lines (each ending in '\n').
  void writeLines(std::string_view lines);
  // Empties the file (clusterd flush); rotated files are removed too.
  void truncate();

 private:
  void open();
  void rotate();

  std::string path_;
  uint64_t max_size_;
  int retain_;
  std::string date_format_;
  UniqueFd fd_;
  uint64_t size_ = 0;
};

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
