// Replacing a file so that a reader finds the old contents or the new ones,
// whole, even after a full disk, a crash or a power cut: write a temporary
// file beside it, check every write, fsync it, rename it over the old one,
// fsync the directory.
//
// Design: the calls block; they are meant for small files written on an
// operator's request (`clusterd save`), where a few milliseconds on the loop
// beat a reply that says "saved" before the data is on disk.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "common/result.h"

namespace clusterd {

// Writes `data` to `path` (mode `mode`) through `<path>.tmp`. On failure
// the error names the call, the file, the errno text and whether `path` was
// left unchanged (the usual case: the temporary file is removed) or was
// replaced without the directory being synced.
Result<void> replaceFileDurably(const std::string& path, std::string_view data, mode_t mode);

}  // namespace clusterd
