// The SMTP transport against real SMTP servers: Python's smtpd debugging
// server, which prints every message it receives, and
// tests/jobs/programs/plain_smtp.py, which offers AUTH but never STARTTLS
// (as when something between strips it) and prints every line it receives;
// and what email.batch does with a message TLS held back.
#include <catch2/catch.hpp>

#include "jobs/job.h"
#include "jobs/mail.h"
#include "tests/db/loop.h"
#include "tests/jobs/shop_fixture.h"
#include "tests/support/process.h"

namespace jobs_smtp_test {

using namespace clusterd;
using namespace clusterd::jobs;
using namespace std::chrono_literals;

namespace {
std::vector<Result<void>> sendAll(test::TestLoop& loop, Mailer& mailer, std::vector<Message> ms) {
  std::optional<std::vector<Result<void>>> out;
  mailer.send(std::move(ms), [&](std::vector<Result<void>> r) { out = std::move(r); });
  REQUIRE(loop.runUntil([&] { return out.has_value(); }, 60s));
  return std::move(*out);
}

Message sample(int64_t id) {
  auto m = renderMessage(id, 1700000000, "shop@localhost", "ada@example.com", "order_confirmed",
                         {{"order_id", id}, {"lines", nlohmann::json::array()}, {"total_cents", 0}});
  REQUIRE(m.ok());
  return *m;
}

constexpr const char* kPassword = "s3cret-pw";
// base64("\0shop\0s3cret-pw"): what AUTH PLAIN would put on the wire.
constexpr const char* kAuthPlain = "AHNob3AAczNjcmV0LXB3";

// plain_smtp.py on a free port; log() is every line it received.
struct PlainSmtp {
  test::TempDir dir;
  int port = test::freeTcpPort();
  test::Child server{
      {"python3", "-u", JOBS_PLAIN_SMTP, std::to_string(port)}, {}, dir.file("smtp.log")};
  PlainSmtp() {
    REQUIRE(test::waitFor([&] { return test::tcpConnects(port); }));
  }
  std::string log() const { return test::readFile(dir.file("smtp.log")); }
  std::string url() const { return "smtp://127.0.0.1:" + std::to_string(port); }
  config::MailSection mail() const {
    config::MailSection m;
    m.transport = "smtp";
    m.smtp_url = url();
    m.smtp_user = "shop";
    m.smtp_password = kPassword;
    return m;
  }
};
}  // namespace

TEST_CASE("the smtp transport delivers messages to an SMTP server", "[jobs][email][smtp]") {
  test::TempDir dir;
  int port = test::freeTcpPort();
  test::Child server({"python3", "-u", "-W", "ignore", "-m", "smtpd", "-n", "-c", "DebuggingServer",
                      "127.0.0.1:" + std::to_string(port)},
                     {}, dir.file("smtp.log"));
  REQUIRE(test::waitFor([&] { return test::tcpConnects(port); }));
  test::TestLoop loop;
  config::MailSection mail;
  mail.transport = "smtp";
  mail.smtp_url = "smtp://127.0.0.1:" + std::to_string(port);
  auto t = makeTransport(mail, dir.path());
  REQUIRE(t.ok());
  Mailer mailer(loop.get(), std::move(*t), mail);
  auto results = sendAll(loop, mailer, {sample(41), sample(42)});
  REQUIRE(results.size() == 2);
  CHECK(results[0].ok());
  CHECK(results[1].ok());
  REQUIRE(test::waitFor([&] {
    return test::readFile(dir.file("smtp.log")).find("Order #42 confirmed") != std::string::npos;
  }));
  CHECK(test::readFile(dir.file("smtp.log")).find("Message-ID: <outbox-41@clusterd>") !=
        std::string::npos);
  CHECK(mailer.counters().sent == 2);
}

TEST_CASE("the smtp transport reports an unreachable server per message", "[jobs][email][smtp]") {
  test::TestLoop loop;
  config::MailSection mail;
  mail.transport = "smtp";
  mail.smtp_url = "smtp://127.0.0.1:" + std::to_string(test::freeTcpPort());
  auto t = makeTransport(mail, "/tmp");
  REQUIRE(t.ok());
  Mailer mailer(loop.get(), std::move(*t), mail);
  auto results = sendAll(loop, mailer, {sample(1)});
  REQUIRE(results.size() == 1);
  REQUIRE_FALSE(results[0].ok());
  CHECK(results[0].error().message.find(mail.smtp_url) != std::string::npos);
  CHECK(mailer.counters().failed == 1);
}

TEST_CASE("a mail section with a bad transport is refused with the field", "[jobs][email]") {
  config::MailSection mail;
  mail.transport = "pigeon";
  auto t = makeTransport(mail, "/tmp");
  REQUIRE_FALSE(t.ok());
  CHECK(t.error().message.find("mail.transport") != std::string::npos);
  mail.transport = "smtp";
  CHECK(makeTransport(mail, "/tmp").error().message.find("mail.smtp_url") != std::string::npos);
}

TEST_CASE("with a password the smtp transport sends nothing to a server that offers no STARTTLS",
          "[jobs][email][smtp]") {
  PlainSmtp server;
  test::TestLoop loop;
  config::MailSection mail = server.mail();  // smtp_tls left out: required with a password
  auto t = makeTransport(mail, server.dir.path());
  REQUIRE(t.ok());
  CHECK((*t)->describe() == "smtp " + server.url() + " (TLS required)");
  Mailer mailer(loop.get(), std::move(*t), mail);
  auto results = sendAll(loop, mailer, {sample(7)});
  REQUIRE(results.size() == 1);
  REQUIRE_FALSE(results[0].ok());
  std::string why = results[0].error().message;
  INFO(why);
  CHECK(why.find("TLS is required") != std::string::npos);
  CHECK(why.find("did not offer STARTTLS") != std::string::npos);
  CHECK(why.find(kPassword) == std::string::npos);
  CHECK(mailer.counters().failed == 1);
  std::string seen = server.log();
  INFO(seen);
  CHECK(seen.find("EHLO") != std::string::npos);  // it did reach the server
  CHECK(seen.find("AUTH") == std::string::npos);
  CHECK(seen.find(kAuthPlain) == std::string::npos);
  CHECK(seen.find("MAIL FROM") == std::string::npos);
}

TEST_CASE("credentials in the smtp URL require TLS too and are never shown",
          "[jobs][email][smtp]") {
  PlainSmtp server;
  test::TestLoop loop;
  config::MailSection mail;
  mail.transport = "smtp";
  mail.smtp_url =
      "smtp://shop:" + std::string(kPassword) + "@127.0.0.1:" + std::to_string(server.port);
  auto t = makeTransport(mail, server.dir.path());
  REQUIRE(t.ok());
  CHECK((*t)->describe().find(kPassword) == std::string::npos);
  Mailer mailer(loop.get(), std::move(*t), mail);
  auto results = sendAll(loop, mailer, {sample(8)});
  REQUIRE_FALSE(results[0].ok());
  CHECK(results[0].error().message.find("smtp://***@127.0.0.1:") != std::string::npos);
  CHECK(results[0].error().message.find(kPassword) == std::string::npos);
  CHECK(server.log().find("AUTH") == std::string::npos);
}

TEST_CASE("smtp_tls off with a password is for a loopback relay only, and sends in cleartext there",
          "[jobs][email][smtp]") {
  PlainSmtp server;
  config::MailSection mail = server.mail();
  mail.smtp_tls = config::SmtpTls::kOpportunistic;
  auto refused = makeTransport(mail, server.dir.path());
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("mail.smtp_tls") != std::string::npos);
  mail.smtp_tls = config::SmtpTls::kOff;
  mail.smtp_url = "smtp://mail.example.com:25";
  refused = makeTransport(mail, server.dir.path());
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("loopback") != std::string::npos);
  CHECK(refused.error().message.find(kPassword) == std::string::npos);

  mail.smtp_url = server.url();
  auto t = makeTransport(mail, server.dir.path());
  REQUIRE(t.ok());
  test::TestLoop loop;
  Mailer mailer(loop.get(), std::move(*t), mail);
  auto results = sendAll(loop, mailer, {sample(9)});
  REQUIRE(results.size() == 1);
  CHECK(results[0].ok());
  // The connection stays open for the next message: wait for the message's end.
  REQUIRE(test::waitFor([&] { return server.log().find("\n.\n") != std::string::npos; }));
  CHECK(server.log().find("AUTH") != std::string::npos);  // what the operator chose
  CHECK(server.log().find("Message-ID: <outbox-9@clusterd>") != std::string::npos);
}

TEST_CASE("an email TLS held back stays in the outbox for a later try",
          "[jobs][email][smtp][postgres]") {
  test::ShopFixture f(2, 100);
  PlainSmtp server;
  config::MailSection mail = server.mail();
  auto t = makeTransport(mail, server.dir.path());
  REQUIRE(t.ok());
  Mailer mailer(f.loop.get(), std::move(*t), mail);
  f.services.mailer = &mailer;
  int64_t id = f.placeOrder("ada@example.com", {{"SKU-000001", 1}});
  REQUIRE(f.runJob(processOrder, "o1", kOrderProcess, {{"order_id", id}}).outcome ==
          Outcome::kDone);
  f.enqueued.clear();
  auto r = f.runJob(sendEmailBatch, "e1", kEmailBatch, nlohmann::json::object());
  REQUIRE(r.outcome == Outcome::kDone);
  CHECK(r.result["sent"] == 0);
  CHECK(r.result["failed"] == 1);
  auto rows =
      f.pg.query("SELECT status, attempts, last_error, next_attempt_at > now() FROM email_outbox");
  REQUIRE(rows.size() == 1);
  CHECK(rows[0][0] == "pending");
  CHECK(rows[0][1] == "1");
  CHECK(rows[0][2].find("did not offer STARTTLS") != std::string::npos);
  CHECK(rows[0][2].find(kPassword) == std::string::npos);
  CHECK(rows[0][3] == "t");
  // A delayed follow-up batch is scheduled for the retry.
  REQUIRE(f.enqueued.size() == 1);
  CHECK(f.enqueued[0].name == kEmailBatch);
  CHECK(f.enqueued[0].delay > 0ms);
  CHECK(server.log().find("MAIL FROM") == std::string::npos);
}

}  // namespace jobs_smtp_test
