// What a shop job handler sees and answers, independent of the queue's C++
// API (jobs/install.cpp adapts queue::Consumer to it): the job, the services
// a handler may use, and the outcome.
//
// Outcomes: kDone acknowledges; kRetry asks the queue for another attempt
// with backoff (transient database errors, a mail server down); kFail is a
// permanent failure with a message that names the bad data: the job goes to
// dead at once, its remaining attempts unused (queue::permanentFailure).
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "db/pool.h"

namespace clusterd::jobs {

// Queues and job names of the shop.
inline constexpr const char* kOrdersQueue = "orders";
inline constexpr const char* kInventoryQueue = "inventory";
inline constexpr const char* kEmailQueue = "email";
inline constexpr const char* kOrderProcess = "order.process";
inline constexpr const char* kInventoryAdjust = "inventory.adjust";
inline constexpr const char* kEmailBatch = "email.batch";

struct Job {
  std::string id;    // the queue's job id (unique within its queue only)
  std::string name;  // "order.process", ...
  nlohmann::json data;
  std::string queue = {};  // the queue it came from; empty when a handler is called directly
  std::string uid = {};    // the record's random uid (queue::Job::uid); empty in older records
};

// The job's key in the exactly-once ledger: "<queue>:<id>:<uid>". The queue,
// since job ids are only unique within a queue (job 1 of `orders` is not job
// 1 of `inventory`); the uid, since Redis can hand an id out again after it
// lost its counter (a crash between fsyncs, a failover to a lagging replica,
// a restore), and a new job taken for the old one's redelivery would do
// nothing. A record without a uid (written before uids, or by a client that
// writes none) keeps "<queue>:<id>", so its redeliveries still find the row
// its first run wrote. The bare id for a job with no queue.
std::string ledgerKey(const Job& job);

enum class Outcome { kDone, kRetry, kFail };

struct JobResult {
  Outcome outcome = Outcome::kDone;
  std::string message;         // why, for kRetry/kFail; a note for kDone
  nlohmann::json result = {};  // stored with the completed job
};

using JobDone = std::function<void(JobResult)>;

struct EnqueueOptions {
  std::chrono::milliseconds delay{0};
  std::string unique;  // while a job with this key is pending, its id is returned instead
};

// Enqueues one job; `done` gets the job id or why it failed.
using EnqueueFn = std::function<void(const std::string& queue, const std::string& name,
                                     nlohmann::json data, const EnqueueOptions& options,
                                     std::function<void(Result<std::string>)> done)>;
// Tells the product cache that these SKUs' stock changed (after commit).
using InvalidateFn = std::function<void(const std::vector<std::string>& skus)>;

class Mailer;
class OrderGrouper;

struct Services {
  uv_loop_t* loop = nullptr;
  db::Pool* pool = nullptr;
  EnqueueFn enqueue;        // required by order.process and email.batch
  InvalidateFn invalidate;  // optional
  Mailer* mailer = nullptr; // required by email.batch
  // How long the first order.process job of a group waits for others to
  // join it before the group asks for a connection (a full group goes at
  // once); orderGroupWaitFromEnv() in jobs/order_group.h. Under load a few
  // milliseconds turn many small transactions into a few large ones, and
  // per-transaction work is most of PostgreSQL's CPU per order at moderate
  // rates; 0 groups only the jobs that arrive together or while a
  // connection is being found.
  std::chrono::milliseconds order_group_wait{0};
  // Gathers concurrent order.process jobs into shared transactions; made by
  // the first processOrder() call, lives as long as these services.
  std::shared_ptr<OrderGrouper> order_grouper;
};

// The JobResult for a database error: transient -> retry, permanent -> fail.
JobResult fromDbError(const std::string& what, const db::DbError& e);

// The last statement before the COMMIT of every job's transaction. A job is
// acknowledged as soon as its COMMIT returns, so that COMMIT must wait for
// its WAL flush even where the server, database or role sets
// synchronous_commit = off; otherwise a PostgreSQL crash right after the
// acknowledgement loses the job's effects and its ledger row, and the queue
// never runs it again. A setting that waits for more (remote_apply, …) is
// left as it is.
db::Statement durableCommit();

// The handlers. Each validates its payload (kFail with the field at fault),
// does its writes and its ledger row in one transaction, and answers once.
// order.process jobs that arrive together share one transaction
// (jobs/order_group.h); each still gets its own answer.
void processOrder(Services& s, const Job& job, JobDone done);
void adjustInventory(Services& s, const Job& job, JobDone done);
void sendEmailBatch(Services& s, const Job& job, JobDone done);

}  // namespace clusterd::jobs
