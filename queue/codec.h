// Encoding of job records and meta entries as msgpack (internal; the layout
// is documented in docs/QUEUE.md).
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"
#include "queue/job.h"

namespace clusterd::queue {

// The immutable record stored in the queue's `jobs` hash.
std::string encodeRecord(const Job& job);
// Fills the record fields of `job`; an error names what is wrong.
Result<void> decodeRecord(std::string_view bytes, Job& job);
// Fills attempt/stalls/errors/reason from a meta entry ("" = none yet).
Result<void> decodeMeta(std::string_view bytes, Job& job);

}  // namespace clusterd::queue
