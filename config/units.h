// Unit parsing shared by the loader: byte sizes, durations, shell-like word
// splitting, and turning PM2's moment.js date formats into strftime ones.
// The public entry points (parseMemory, parseDuration, splitArgs) are
// declared in config/load.h; this header adds the loader-only helpers.
#pragma once

#include <cstdint>
#include <string>

namespace clusterd::config {

// "1G", "300M", "512K", "17" — the shortest exact spelling of a byte count.
std::string formatMemory(uint64_t bytes);

// PM2 writes log_date_format in moment.js tokens ("YYYY-MM-DD HH:mm:ss Z");
// clusterd formats with strftime. A format holding a '%' is taken as
// strftime already and returned unchanged.
std::string momentToStrftime(const std::string& format);

}  // namespace clusterd::config
