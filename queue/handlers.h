// Ready-made job handlers: the built-in `noop` and `sleep` (payload {"ms": N})
// for smoke tests and benchmarks, and command handlers from the ecosystem
// file's `handlers:` section, which let any language process jobs.
//
// A command handler runs its argv once per job (uv_spawn, no shell) with the
// payload as one line of JSON on stdin and CLUSTERD_QUEUE, CLUSTERD_JOB_ID,
// CLUSTERD_JOB_NAME and CLUSTERD_JOB_ATTEMPT in its environment. Exit 0
// completes the job, with its stdout as the job's result: JSON when the whole
// output parses as JSON, else the text without trailing newlines, none when
// empty, and the oversizedResult() marker past kMaxResultBytes. Exit 65
// (EX_DATAERR) is a permanent failure (dead at once, no retry); any other
// exit fails the attempt with the last 2 KB of stderr as the error. Past the
// handler's timeout the process is killed (SIGKILL) and the attempt fails
// with "timed out".
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

// Runs one job through a command; `done` gets the outcome (exposed for tests).
void runCommand(uv_loop_t* loop, const config::HandlerSpec& spec, const Job& job, Done done);

}  // namespace clusterd::queue
