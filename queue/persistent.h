// Command handlers in persistent mode: a process that stays up and takes one
// job per line on stdin, answering one line per job on stdout, as BullMQ's
// sandboxed processors keep their child. A handler has one such process per
// job running at once (at most the queue's concurrency), started on demand
// and kept for the next job.
//
// Protocol (docs/QUEUE.md, "Persistent command handlers"): one JSON object
// per line, '\n'-terminated; JSON escapes every newline inside strings.
//   stdin, one per job:
//   {"id":"17","queue":"reports","name":"report.build","attempt":1,"payload":<JSON>} stdout, one
//   answer per job, after its request:
//     {"result": <JSON>}                    completes the job (null or absent: no result)
//     {"error": "why"}                      fails the attempt (retried with backoff)
//     {"error": "why", "permanent": true}   fails the job for good (dead at once)
// stderr is the process's log: each line goes to the worker's log. The
// process should exit when stdin reaches EOF.
//
// Design: a process serves one job at a time, so an answer always belongs to
// the job in hand. Anything else on stdout (a line that is not such an
// object, a line longer than `max_line`, a line while no job is in hand)
// means the stream no longer lines up with the jobs: the job fails and the
// process is killed. A job past its timeout, or stopped by the consumer,
// kills the process's group (SIGTERM, SIGKILL after `kill_grace`); a process
// that dies mid-job fails that job (retried). Either way the job's slot
// frees only once the group is gone and its pipes are closed, and the next
// job starts a new process.
#pragma once

#include <uv.h>

#include <memory>
#include <set>
#include <vector>

#include "config/spec.h"
#include "queue/consumer.h"

namespace clusterd::queue {

class PersistentPool {
 public:
  PersistentPool(uv_loop_t* loop, config::HandlerSpec spec);
  // Idle processes get EOF on stdin and SIGTERM (SIGKILL after the grace);
  // busy ones are stopped the same way and their jobs' done still runs.
  ~PersistentPool();
  PersistentPool(const PersistentPool&) = delete;
  PersistentPool& operator=(const PersistentPool&) = delete;

  // Hands the job to an idle process, or to a new one.
  Stop run(const Job& job, Done done);
  // Live processes, busy or idle (for tests and the log).
  size_t processes() const { return all_.size(); }

  struct Child;

 private:
  friend struct Child;
  uv_loop_t* loop_;
  config::HandlerSpec spec_;
  std::vector<Child*> idle_;
  std::set<Child*> all_;
};

}  // namespace clusterd::queue
