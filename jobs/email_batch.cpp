// email.batch: send pending outbox rows in batches.
//
// Payload (all optional): {"limit": 100}. The job locks up to `limit` due
// rows with FOR UPDATE SKIP LOCKED (so concurrent email jobs split the work
// instead of waiting on each other), renders each, sends them through the
// Mailer on the thread pool, and in one COMMIT marks the sent rows sent and
// reschedules each failed or throttled row on its own: a bad recipient
// never holds back or repeats the rest of its batch. A full batch or a
// rescheduled row enqueues a follow-up email.batch, so the outbox drains
// without polling.
#include <fmt/format.h>

#include <algorithm>

#include "common/log.h"
#include "jobs/job.h"
#include "jobs/mail.h"

namespace clusterd::jobs {
namespace {

constexpr int kDefaultLimit = 100;
constexpr int kMaxAttempts = 8;

struct Row {
  int64_t id;
  int attempts;
  std::string recipient;
};

// Seconds until a failed row's next try: 2, 4, 8, ... capped at an hour.
int64_t retryDelaySeconds(int attempts) {
  return std::min<int64_t>(int64_t{1} << std::min(attempts + 1, 12), 3600);
}

struct Outcomes {
  std::vector<int64_t> sent;
  std::vector<int64_t> failed_ids;
  std::vector<std::string> failed_errors;
  std::vector<int64_t> failed_delays;  // seconds; -1 = give up (status failed)
  std::vector<int64_t> deferred_ids;
  std::vector<int64_t> deferred_ms;
};

void finish(Services& s, db::TransactionPtr tx, Outcomes o, int rows, int limit, JobDone done) {
  std::vector<db::Statement> writes;
  if (!o.sent.empty())
    writes.push_back(db::stmt("UPDATE email_outbox SET status = 'sent', sent_at = now(),"
                              " attempts = attempts + 1, last_error = NULL"
                              " WHERE id = ANY($1::bigint[])",
                              db::int64Array(o.sent)));
  if (!o.failed_ids.empty())
    writes.push_back(db::stmt(
        "UPDATE email_outbox e SET attempts = e.attempts + 1, last_error = d.err,"
        " status = CASE WHEN d.delay < 0 THEN 'failed' ELSE 'pending' END,"
        " next_attempt_at = now() + make_interval(secs => greatest(d.delay, 0))"
        " FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS d(id, err, delay)"
        " WHERE e.id = d.id",
        db::int64Array(o.failed_ids), db::textArray(o.failed_errors),
        db::int64Array(o.failed_delays)));
  if (!o.deferred_ids.empty())
    writes.push_back(db::stmt(
        "UPDATE email_outbox e SET next_attempt_at = now() + d.ms * interval '1 millisecond'"
        " FROM unnest($1::bigint[], $2::bigint[]) AS d(id, ms) WHERE e.id = d.id",
        db::int64Array(o.deferred_ids), db::int64Array(o.deferred_ms)));
  int64_t follow_up_ms = -1;
  if (rows >= limit) follow_up_ms = 0;
  for (size_t i = 0; i < o.failed_ids.size(); ++i)
    if (o.failed_delays[i] >= 0) {
      int64_t ms = o.failed_delays[i] * 1000;
      follow_up_ms = follow_up_ms < 0 ? ms : std::min(follow_up_ms, ms);
    }
  for (int64_t ms : o.deferred_ms) follow_up_ms = follow_up_ms < 0 ? ms : std::min(follow_up_ms, ms);

  nlohmann::json result{{"sent", o.sent.size()},
                        {"failed", o.failed_ids.size()},
                        {"deferred", o.deferred_ids.size()}};
  writes.push_back(durableCommit());
  tx->commit(std::move(writes), [&s, result, follow_up_ms, done = std::move(done)](db::Reply c) {
    if (!c.ok()) return done(fromDbError("email.batch", *c.error));
    JobResult res{Outcome::kDone,
                  fmt::format("sent {}, failed {}, deferred {}", result["sent"].get<size_t>(),
                              result["failed"].get<size_t>(), result["deferred"].get<size_t>()),
                  result};
    if (follow_up_ms < 0 || !s.enqueue) return done(std::move(res));
    s.enqueue(kEmailQueue, kEmailBatch, nlohmann::json::object(),
              EnqueueOptions{std::chrono::milliseconds(follow_up_ms), {}},
              [res, done](Result<std::string> r) mutable {
                // The rows stay pending in the outbox; the next batch finds them.
                if (!r) log::warn("email", "follow-up email.batch not enqueued: {}", r.error().message);
                done(std::move(res));
              });
  });
}

}  // namespace

void sendEmailBatch(Services& s, const Job& job, JobDone done) {
  int limit = kDefaultLimit;
  // The shop enqueues {} (or {"limit": n}); anything else is not its job.
  if (!job.data.is_object())
    return done(JobResult{Outcome::kFail, "data: expected an object ({} or {\"limit\": n})"});
  for (const auto& [key, value] : job.data.items()) {
    if (key != "limit")
      return done(JobResult{Outcome::kFail,
                            "data." + key + ": unknown field; email.batch takes only limit"});
  }
  if (job.data.contains("limit")) {
    const auto& v = job.data["limit"];
    if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > 10'000)
      return done(JobResult{Outcome::kFail, "data.limit: expected an integer from 1 to 10000"});
    limit = static_cast<int>(v.get<int64_t>());
  }
  if (!s.mailer) return done(JobResult{Outcome::kFail, "email.batch: no mail transport configured"});
  s.pool->transaction([&s, limit, done = std::move(done)](db::TransactionPtr tx,
                                                          std::optional<db::DbError> err) mutable {
    if (err) return done(fromDbError("email.batch", *err));
    // The rows come from walking the pending-email index in due order. The
    // planner would rather collect a few rows with a bitmap scan and sort
    // them, but a bitmap scan reads every entry the index still holds for
    // emails sent since the last vacuum and, unlike a plain index scan,
    // never marks them dead so that the next batch can skip them.
    tx->run(
        {db::Statement{"SELECT set_config('enable_bitmapscan', 'off', true)", {}},
         db::stmt("SELECT id, recipient, template, data::text, attempts,"
                  " extract(epoch FROM created_at)::bigint"
                  " FROM email_outbox WHERE status = 'pending' AND next_attempt_at <= now()"
                  " ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED",
                  limit)},
        [&s, tx, limit, done = std::move(done)](db::Reply r) mutable {
          if (!r.ok()) return done(fromDbError("email.batch", *r.error));
          const db::Rows& rows = r[1];
          if (rows.size() == 0) {
            tx->rollback();
            return done(JobResult{Outcome::kDone, "outbox empty", {{"sent", 0}}});
          }
          auto outcomes = std::make_shared<Outcomes>();
          std::vector<Message> messages;
          std::vector<Row> sending;
          uint64_t now = uv_now(s.loop);
          for (int i = 0; i < rows.size(); ++i) {
            Row row{rows.int64(i, 0), static_cast<int>(rows.int64(i, 4)), rows.str(i, 1)};
            nlohmann::json data = nlohmann::json::parse(rows.text(i, 3), nullptr, false);
            auto m = renderMessage(row.id, rows.int64(i, 5), s.mailer->from(), row.recipient,
                                   rows.str(i, 2), data);
            if (!m) {
              // Bad data does not get better: fail the row at once.
              outcomes->failed_ids.push_back(row.id);
              outcomes->failed_errors.push_back(m.error().message);
              outcomes->failed_delays.push_back(-1);
              continue;
            }
            if (int64_t wait = s.mailer->throttle().admit(m->domain(), now); wait > 0) {
              outcomes->deferred_ids.push_back(row.id);
              outcomes->deferred_ms.push_back(wait);
              continue;
            }
            messages.push_back(std::move(*m));
            sending.push_back(std::move(row));
          }
          int count = rows.size();
          if (messages.empty())
            return finish(s, tx, std::move(*outcomes), count, limit, std::move(done));
          s.mailer->send(std::move(messages), [&s, tx, outcomes, sending, count, limit,
                                               done = std::move(done)](
                                                  std::vector<Result<void>> results) mutable {
            for (size_t i = 0; i < results.size(); ++i) {
              if (results[i]) {
                outcomes->sent.push_back(sending[i].id);
                continue;
              }
              int attempts = sending[i].attempts + 1;
              outcomes->failed_ids.push_back(sending[i].id);
              outcomes->failed_errors.push_back(results[i].error().message);
              outcomes->failed_delays.push_back(
                  attempts >= kMaxAttempts ? -1 : retryDelaySeconds(attempts));
              log::warn("email", "outbox row {} to {} failed (attempt {}): {}", sending[i].id,
                        sending[i].recipient, attempts, results[i].error().message);
            }
            finish(s, tx, std::move(*outcomes), count, limit, std::move(done));
          });
        });
  });
}

}  // namespace clusterd::jobs
