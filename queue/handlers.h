// Ready-made job handlers: the built-in `noop` and `sleep` (payload {"ms": N})
// for smoke tests and benchmarks, and command handlers from the ecosystem
// file's `handlers:` section, which let any language process jobs.
//
// A command handler runs its argv (no shell) in one of two modes, in a
// process group of its own with only stdin, stdout and stderr open
// (queue/process_group.h):
//
// - per job (the default): once per job, with the payload as one line of
//   JSON on stdin and CLUSTERD_QUEUE, CLUSTERD_JOB_ID, CLUSTERD_JOB_NAME and
//   CLUSTERD_JOB_ATTEMPT in its environment. Exit 0 completes the job, with
//   its stdout as the job's result: JSON when the whole output parses as
//   JSON, else the text without trailing newlines, none when empty, and the
//   oversizedResult() marker past kMaxResultBytes. Exit 65 (EX_DATAERR) is a
//   permanent failure (dead at once, no retry); any other exit fails the
//   attempt with the last 2 KB of stderr as the error.
// - persistent: the command stays up and takes one job per line on stdin,
//   answering one line per job on stdout (the protocol is in
//   queue/persistent.h and docs/QUEUE.md).
//
// Past the handler's timeout (or the job's), the command's whole group gets
// SIGTERM, then SIGKILL after `kill_grace`; the attempt fails with
// "timed out", and the job's concurrency slot frees only once the group is
// gone and its pipes are closed.
#pragma once

#include <uv.h>

#include <vector>

#include "config/spec.h"
#include "queue/consumer.h"

namespace clusterd::queue {

// The exit status of a command handler that reports a permanent failure.
inline constexpr int kPermanentExit = 65;

void registerBuiltinHandlers(Consumer& consumer, uv_loop_t* loop);
void registerCommandHandlers(Consumer& consumer, uv_loop_t* loop, const std::vector<config::HandlerSpec>& specs);

// Runs one job through a per-job command; `done` gets the outcome once the
// command's group is gone. Returns how to stop it (null if done already ran).
Stop runCommand(uv_loop_t* loop, const config::HandlerSpec& spec, const Job& job, Done done);

}  // namespace clusterd::queue
