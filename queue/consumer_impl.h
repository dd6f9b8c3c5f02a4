// The consumer's internals (queue/consumer.h), shared by consumer.cpp (the
// reserve/acknowledge cycle) and consumer_run.cpp (running handlers).
//
// Design: per queue, at most two reservations are in flight at a time (a
// plain reserve, or the fetch part of an acknowledgement), each for at most
// half the queue's concurrency, and never for more slots than are free and
// not already asked for, so a consumer never holds more than its concurrency.
// Two in flight keep Redis busy while this process runs the jobs of the other
// batch: with one, Redis would wait for the consumer and the consumer for
// Redis, in turn. Completions of one loop turn are acknowledged by one script
// call, flushed from a zero timer. A lease (fencing token) covers
// one reserved batch; the consumer counts the batch's jobs still running and
// closes the lease with the acknowledgement of its last job, so lease
// closing is always ordered after every acknowledgement of that batch on the
// one command connection. Idle queues block on their own connection
// (BZPOPMIN on the wake-up key) with a timeout no later than the next due
// delayed job or lease deadline, capped at 5 s.
#pragma once

#include <map>
#include <memory>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include "common/uv_handle.h"
#include "queue/client.h"
#include "queue/consumer.h"
#include "queue/redis.h"
#include "queue/scripts.h"

namespace clusterd::queue {

struct QueueState;

struct Running : std::enable_shared_from_this<Running> {
  Consumer::Impl* impl = nullptr;
  QueueState* queue = nullptr;
  uint64_t seq = 0;
  Job job;
  std::string token;
  bool ended = false;       // the attempt's outcome is recorded (or the job released)
  bool timed_out = false;   // ended by the job's timeout while the handler still ran
  bool slot_held = true;    // the handler's work has not stopped yet
  Stop stop;                // how to stop a stoppable handler's work
  UvHandle<uv_timer_t> timeout;
};

// A completion waiting for the next acknowledgement call.
struct Ack {
  std::string id;
  std::string token;
  std::string result;  // msgpack; empty = none
};

struct QueueState {
  ConsumerQueue spec;
  int64_t lease_ms = 0;  // resolved: spec.lease, the queue's defaults, or the consumer's
  const config::QueueDefaults* defaults = nullptr;  // the queue's entry in ConsumerOptions::defaults
  std::vector<std::string> keys;
  std::unique_ptr<RedisConnection> block;  // BZPOPMIN only
  int in_flight = 0;    // slots taken: handlers whose work has not stopped
  int overrunning = 0;  // of those, handlers whose attempt timed out already
  int fetches = 0;     // reservations in flight (at most kMaxFetches)
  int requested = 0;   // slots those reservations asked for
  bool blocking = false;   // BZPOPMIN is in flight
  std::map<std::string, int> tokens;  // lease token -> jobs of it still running
  std::vector<Ack> acks;
  std::vector<std::string> done_tokens;
  std::map<uint64_t, std::shared_ptr<Running>> running;
  UvHandle<uv_timer_t> retry;  // after a Redis error
  int retry_ms = 0;
  QueueJobStats stats;  // in_flight is filled in by Consumer::stats()
};

class Consumer::Impl {
 public:
  Impl(uv_loop_t* loop, ConsumerOptions options, std::unique_ptr<Client> client,
       std::unique_ptr<RedisConnection> conn);
  ~Impl();

  void start(std::function<void(Result<void>)> cb);
  void drain(Millis timeout, std::function<void()> cb);

  // consumer.cpp: the reserve/acknowledge cycle.
  void pump(QueueState& q);
  void reserve(QueueState& q, int n);
  void onReserved(QueueState& q, const Reply& r);
  void block(QueueState& q, int64_t next_due);
  void scheduleFlush();
  void flushAcks();
  void flushQueue(QueueState& q);
  void extendLeases();
  void redisTrouble(QueueState& q, std::string_view what, std::string_view error);
  void checkDrained();
  int freeSlots(const QueueState& q) const { return q.spec.concurrency - q.in_flight; }
  // How many jobs a new reservation may ask for now (0: none may be sent).
  int fetchSize(const QueueState& q) const;
  static constexpr int kMaxFetches = 2;

  // consumer_run.cpp: running handlers and ending attempts.
  void dispatch(QueueState& q, const std::string& token, Job job, std::string_view record, std::string_view meta);
  void handlerDone(QueueState& q, const std::shared_ptr<Running>& run, Outcome outcome);
  void timedOut(QueueState& q, const std::shared_ptr<Running>& run);
  void endAttempt(QueueState& q, Running& run, Outcome outcome);
  void freeSlot(QueueState& q, Running& run);
  void sendFail(QueueState& q, const std::string& id, const std::string& token, const char* mode,
                const std::string& error, int64_t run_at, int priority);
  void releaseToken(QueueState& q, const std::string& token);
  void releaseAll();

  uv_loop_t* loop_;
  ConsumerOptions options_;
  std::unique_ptr<Client> client_;  // start-up checks and queue settings
  std::unique_ptr<RedisConnection> conn_;
  std::unique_ptr<ScriptRunner> scripts_;
  std::vector<std::unique_ptr<QueueState>> queues_;
  std::map<std::string, std::variant<AsyncHandler, SyncHandler, StoppableHandler>> handlers_;
  UvHandle<uv_timer_t> flush_timer_;
  UvHandle<uv_timer_t> extend_timer_;
  UvHandle<uv_timer_t> drain_timer_;
  bool started_ = false;
  bool draining_ = false;
  int outstanding_ = 0;  // acknowledgements and failures awaiting replies
  std::function<void()> drained_cb_;
  std::function<void(const std::string&, const std::string&)> completed_hook_;
  uint64_t next_seq_ = 0;
  std::minstd_rand rng_{std::random_device{}()};
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace clusterd::queue
