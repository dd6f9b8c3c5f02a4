// Queue names: which are valid, and the rule as error messages state it.
// Public so that callers outside the queue module (the worker's job API, the
// CLI) check a name before it reaches Redis, where it becomes part of every
// key of the queue (`cq:{<name>}:...`). The rule matches the ecosystem file's
// (config::isValidQueueName), so any queue a file can configure can be used.
#pragma once

#include <cctype>
#include <string_view>

namespace clusterd::queue {

inline constexpr size_t kMaxQueueNameLength = 128;
// For messages: "invalid queue name 'x y': use 1-128 characters of ...".
inline constexpr const char* kQueueNameRule = "1-128 characters of A-Z a-z 0-9 _ . - :";

inline bool validQueueName(std::string_view name) {
  if (name.empty() || name.size() > kMaxQueueNameLength) return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-' || c == ':')) return false;
  }
  return true;
}

}  // namespace clusterd::queue
