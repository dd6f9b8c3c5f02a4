// Implementation of jobs/mail.h except SMTP (jobs/smtp.cpp): templates, the
// maildir spool, throttling and the thread-pool hand-off.
#include "jobs/mail.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <mutex>

#include "common/uv_handle.h"
#include "config/smtp_tls.h"

namespace clusterd::jobs {

std::string Message::messageId() const { return fmt::format("<outbox-{}@clusterd>", outbox_id); }

std::string Message::domain() const {
  auto at = to.rfind('@');
  std::string d = at == std::string::npos ? "" : to.substr(at + 1);
  std::transform(d.begin(), d.end(), d.begin(), [](unsigned char c) { return std::tolower(c); });
  return d;
}

std::string Message::raw() const {
  std::time_t t = static_cast<std::time_t>(created_epoch);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char date[64];
  std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  std::string out = fmt::format(
      "From: {}\r\nTo: {}\r\nSubject: {}\r\nDate: {}\r\nMessage-ID: {}\r\nMIME-Version: 1.0\r\n"
      "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
      from, to, subject, date, messageId());
  // Body lines end in CRLF; a line starting with '.' is left to the SMTP layer.
  size_t start = 0;
  while (start < body.size()) {
    size_t nl = body.find('\n', start);
    if (nl == std::string::npos) nl = body.size();
    out.append(body, start, nl - start);
    out += "\r\n";
    start = nl + 1;
  }
  return out;
}

Result<Message> renderMessage(int64_t outbox_id, int64_t created_epoch, const std::string& from,
                              const std::string& to, const std::string& name,
                              const nlohmann::json& data) {
  Message m{outbox_id, created_epoch, from, to};
  if (name != "order_confirmed")
    return Error{fmt::format("outbox row {}: unknown template '{}'", outbox_id, name)};
  if (!data.contains("order_id") || !data.contains("lines") || !data["lines"].is_array())
    return Error{fmt::format("outbox row {}: template order_confirmed needs order_id and lines",
                             outbox_id)};
  int64_t order_id = data["order_id"].get<int64_t>();
  int64_t total = data.value("total_cents", int64_t{0});
  m.subject = fmt::format("Order #{} confirmed", order_id);
  std::string body = fmt::format("Hello {},\n\nthank you for your order #{}. It is confirmed:\n\n",
                                 to, order_id);
  for (const auto& l : data["lines"]) {
    int64_t qty = l.value("qty", int64_t{0});
    int64_t price = l.value("price_cents", int64_t{0});
    body += fmt::format("  {:>4} x {:<12} {:>8}.{:02}\n", qty, l.value("sku", std::string("?")),
                        qty * price / 100, qty * price % 100);
  }
  body += fmt::format("\n  Total: {}.{:02}\n\nOrder id: {}\n", total / 100, total % 100, order_id);
  m.body = std::move(body);
  return m;
}

// ---- maildir ----

namespace {

class MaildirTransport final : public Transport {
 public:
  explicit MaildirTransport(std::string dir) : dir_(std::move(dir)) {}

  std::string describe() const override { return "maildir " + dir_; }

  Result<void> send(const Message& m) override {
    std::vector<Message> one{m};
    std::vector<Result<void>> results(1, success());
    sendBatch(one, 0, 1, results);
    return results[0];
  }

  void sendBatch(const std::vector<Message>& messages, size_t begin, size_t end,
                 std::vector<Result<void>>& results) override {
    auto fail_all = [&](const Error& e) {
      for (size_t i = begin; i < end; ++i) results[i] = e;
    };
    if (auto r = ensureDirs(); !r) return fail_all(r.error());
    // 1. Every message into tmp/ under a name derived from its outbox row, so
    //    a re-sent message cannot make a second file.
    std::vector<std::string> names(end - begin);
    for (size_t i = begin; i < end; ++i) {
      const Message& m = messages[i];
      names[i - begin] = fmt::format("{}.O{}.clusterd", m.created_epoch, m.outbox_id);
      results[i] = writeTmp(dir_ + "/tmp/" + names[i - begin], m.raw());
    }
    // 2. One flush makes them all durable before any is visible in new/.
    UniqueFd dirfd(::open((dir_ + "/tmp").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dirfd || ::syncfs(dirfd.get()) != 0) {
      Error e{fmt::format("syncfs {}/tmp: {}", dir_, std::strerror(errno))};
      for (size_t i = begin; i < end; ++i) ::unlink((dir_ + "/tmp/" + names[i - begin]).c_str());
      return fail_all(e);
    }
    // 3. Deliver: link into new/ (an existing name means already delivered).
    for (size_t i = begin; i < end; ++i) {
      if (!results[i]) continue;
      std::string tmp = dir_ + "/tmp/" + names[i - begin], dst = dir_ + "/new/" + names[i - begin];
      int rc = ::link(tmp.c_str(), dst.c_str());
      int e = errno;
      ::unlink(tmp.c_str());
      if (rc != 0 && e != EEXIST) results[i] = Error{fmt::format("link {}: {}", dst, std::strerror(e))};
    }
    UniqueFd newfd(::open((dir_ + "/new").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (newfd) ::fsync(newfd.get());
  }

 private:
  static Result<void> writeTmp(const std::string& path, const std::string& raw) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640));
    if (!fd) return Error{fmt::format("open {}: {}", path, std::strerror(errno))};
    size_t off = 0;
    while (off < raw.size()) {
      ssize_t n = ::write(fd.get(), raw.data() + off, raw.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        int e = errno;
        ::unlink(path.c_str());
        return Error{fmt::format("write {}: {}", path, std::strerror(e))};
      }
      off += static_cast<size_t>(n);
    }
    return success();
  }

  Result<void> ensureDirs() {
    std::lock_guard<std::mutex> lock(mu_);
    if (ready_) return success();
    for (const char* sub : {"", "/tmp", "/new", "/cur"}) {
      std::string d = dir_ + sub;
      if (::mkdir(d.c_str(), 0750) != 0 && errno != EEXIST)
        return Error{fmt::format("mkdir {}: {} (set mail.maildir to a writable directory)", d,
                                 std::strerror(errno))};
    }
    ready_ = true;
    return success();
  }

  std::string dir_;
  std::mutex mu_;  // ensureDirs runs on pool threads
  bool ready_ = false;
};

}  // namespace

std::unique_ptr<Transport> makeMaildirTransport(std::string dir) {
  return std::make_unique<MaildirTransport>(std::move(dir));
}

Result<std::unique_ptr<Transport>> makeTransport(const config::MailSection& mail,
                                                 const std::string& home) {
  if (mail.transport == "smtp") {
    if (mail.smtp_url.empty())
      return Error{"mail.smtp_url: required when mail.transport is smtp (smtp://host:port)"};
    // The loader refuses these already; a section built elsewhere is held
    // to the same rule.
    if (std::string problem = config::smtpTlsProblem(mail); !problem.empty())
      return Error{"mail.smtp_tls: " + problem};
    return makeSmtpTransport(mail);
  }
  if (mail.transport != "maildir" && !mail.transport.empty())
    return Error{"mail.transport: expected maildir or smtp, got '" + mail.transport + "'"};
  std::string dir = mail.maildir.empty() ? home + "/mail" : mail.maildir;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Error{fmt::format("mail.maildir: cannot create {}: {}", dir, ec.message())};
  return makeMaildirTransport(dir);
}

// ---- throttle ----

int64_t DomainThrottle::admit(const std::string& domain, uint64_t now_ms) {
  auto lim = limits_.find(domain);
  if (lim == limits_.end()) lim = limits_.find("*");
  if (lim == limits_.end() || lim->second == 0) return 0;
  double rate_per_ms = static_cast<double>(lim->second) / 60'000.0;
  double cap = static_cast<double>(lim->second);
  Bucket& b = buckets_[domain];
  if (!b.started) b = Bucket{cap, now_ms, true};
  b.tokens = std::min(cap, b.tokens + static_cast<double>(now_ms - b.last_ms) * rate_per_ms);
  b.last_ms = now_ms;
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return 0;
  }
  return static_cast<int64_t>((1.0 - b.tokens) / rate_per_ms) + 1;
}

// ---- mailer ----

Mailer::Mailer(uv_loop_t* loop, std::shared_ptr<Transport> transport,
               const config::MailSection& mail)
    : loop_(loop), transport_(std::move(transport)), from_(mail.from),
      throttle_(mail.per_domain_per_min) {}

namespace {

// One batch split over several thread-pool requests; `done` runs when the
// last part comes back.
struct SendBatch {
  std::shared_ptr<Transport> transport;
  std::shared_ptr<Mailer::Counters> counters;
  std::vector<Message> messages;
  std::vector<Result<void>> results;
  size_t parts_left = 0;
  std::function<void(std::vector<Result<void>>)> done;
};

struct SendPart {
  uv_work_t req;
  std::shared_ptr<SendBatch> batch;
  size_t begin, end;
  int status = 0;
};

void finishPart(SendPart* part) {
  std::unique_ptr<SendPart> owned(part);
  SendBatch& b = *part->batch;
  for (size_t i = part->begin; i < part->end; ++i) {
    if (part->status != 0)
      b.results[i] = Error{std::string("send cancelled: ") + uv_strerror(part->status)};
    b.results[i] ? ++b.counters->sent : ++b.counters->failed;
  }
  if (--b.parts_left == 0) b.done(std::move(b.results));
}

}  // namespace

void Mailer::send(std::vector<Message> messages,
                  std::function<void(std::vector<Result<void>>)> done) {
  auto batch = std::make_shared<SendBatch>();
  batch->transport = transport_;
  batch->counters = counters_;
  batch->messages = std::move(messages);
  size_t n = batch->messages.size();
  batch->results.assign(n, success());
  batch->done = std::move(done);
  if (n == 0) return batch->done({});
  // An SMTP send waits for a server: spreading a batch over the pool threads
  // lets those waits overlap (a maildir batch is one flush and goes whole).
  size_t parts = std::max<size_t>(1, std::min(transport_->parallelism(), (n + 7) / 8));
  batch->parts_left = parts;
  for (size_t p = 0; p < parts; ++p) {
    auto* part = new SendPart{{}, batch, n * p / parts, n * (p + 1) / parts};
    part->req.data = part;
    int rc = uv_queue_work(
        loop_, &part->req,
        [](uv_work_t* req) {  // thread pool: blocking I/O is fine here
          auto* part = static_cast<SendPart*>(req->data);
          SendBatch& b = *part->batch;
          b.transport->sendBatch(b.messages, part->begin, part->end, b.results);
        },
        [](uv_work_t* req, int status) {  // back on the loop
          auto* part = static_cast<SendPart*>(req->data);
          part->status = status;
          finishPart(part);
        });
    if (rc != 0) {
      part->status = rc;
      finishPart(part);
    }
  }
}

}  // namespace clusterd::jobs
