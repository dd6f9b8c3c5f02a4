// The `clusterd status` table, PM2-style: one row per worker process with
// id, app, mode, instance, pid, state, uptime, restarts, CPU and memory.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace clusterd::cli {

// `workers` is the "workers" array of a status reply (docs/CONTROL.md).
// ANSI colours only when `color` (the CLI passes isatty(stdout)).
std::string renderStatusTable(const nlohmann::json& workers, bool color);

// "1.5 KiB"-style sizes and "3m 12s"-style durations for the table.
std::string humanBytes(uint64_t bytes);
std::string humanDuration(int64_t ms);

}  // namespace clusterd::cli
