// Outgoing mail for email.batch: rendering an outbox row into a message,
// the transports (a maildir spool, the default, and SMTP through libcurl),
// per-domain throttling, and Mailer, which runs the blocking transport calls
// on the libuv thread pool so the loop never waits for a disk or a server.
//
// Design: a message's file name in the maildir and its Message-ID derive
// from the outbox row id, and delivery into new/ is a link(2) that refuses
// an existing name. A maildir batch writes every file into tmp/, makes them
// durable with one syncfs(2), then links them into new/ (one flush per batch
// rather than one fsync per message). A batch that is sent again after a crash (the rows were
// not yet marked sent) therefore leaves exactly one file per message. SMTP
// cannot promise that; receivers can drop duplicates by Message-ID.
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "config/spec.h"

namespace clusterd::jobs {

struct Message {
  int64_t outbox_id = 0;
  int64_t created_epoch = 0;  // the row's created_at, part of the maildir name
  std::string from;
  std::string to;
  std::string subject;
  std::string body;
  std::string messageId() const;  // "<outbox-ID@clusterd>"
  std::string domain() const;     // of the recipient, lower case
  std::string raw() const;        // RFC 5322 text with CRLF line ends
};

// Renders template `name` with `data` for one recipient; an unknown template
// or missing fields are an error naming them.
Result<Message> renderMessage(int64_t outbox_id, int64_t created_epoch, const std::string& from,
                              const std::string& to, const std::string& name,
                              const nlohmann::json& data);

// A transport's send() blocks; it is only ever called on the thread pool.
class Transport {
 public:
  virtual ~Transport() = default;
  virtual Result<void> send(const Message& m) = 0;
  // Sends messages[begin, end) into results[begin, end); by default one by one.
  virtual void sendBatch(const std::vector<Message>& messages, size_t begin, size_t end,
                         std::vector<Result<void>>& results) {
    for (size_t i = begin; i < end; ++i) results[i] = send(messages[i]);
  }
  // How many thread-pool requests one batch may be spread over.
  virtual size_t parallelism() const { return 1; }
  virtual std::string describe() const = 0;
};

// Maildir at `dir` (tmp/, new/, cur/ created when missing).
std::unique_ptr<Transport> makeMaildirTransport(std::string dir);
// SMTP through libcurl: smtps://, or smtp:// with STARTTLS as
// `mail.smtp_tls` says (required by default with a user or password), with
// optional user/password.
std::unique_ptr<Transport> makeSmtpTransport(const config::MailSection& mail);
// The transport the mail section asks for; `home` gives the default maildir.
Result<std::unique_ptr<Transport>> makeTransport(const config::MailSection& mail,
                                                 const std::string& home);

// At most `per_min` messages a minute to one recipient domain, per process.
class DomainThrottle {
 public:
  explicit DomainThrottle(std::map<std::string, uint64_t> per_min) : limits_(std::move(per_min)) {}
  // 0 when a message to `domain` may go now (and counts it); otherwise the
  // milliseconds until it may.
  int64_t admit(const std::string& domain, uint64_t now_ms);

 private:
  struct Bucket {
    double tokens = 0;
    uint64_t last_ms = 0;
    bool started = false;
  };
  std::map<std::string, uint64_t> limits_;
  std::map<std::string, Bucket> buckets_;
};

class Mailer {
 public:
  Mailer(uv_loop_t* loop, std::shared_ptr<Transport> transport, const config::MailSection& mail);
  // Sends the messages on the thread pool, in up to transport->parallelism()
  // parts at once; `done` runs on the loop with one result per message, in order.
  void send(std::vector<Message> messages, std::function<void(std::vector<Result<void>>)> done);
  const std::string& from() const { return from_; }
  DomainThrottle& throttle() { return throttle_; }
  uv_loop_t* loop() const { return loop_; }
  struct Counters {
    uint64_t sent = 0;
    uint64_t failed = 0;
  };
  const Counters& counters() const { return *counters_; }

 private:
  uv_loop_t* loop_;
  std::shared_ptr<Transport> transport_;
  std::string from_;
  DomainThrottle throttle_;
  std::shared_ptr<Counters> counters_ = std::make_shared<Counters>();  // shared with work in flight
};

}  // namespace clusterd::jobs
