// The SMTP transport against a real SMTP server (Python's smtpd debugging
// server, which prints every message it receives).
#include <catch2/catch.hpp>

#include "jobs/mail.h"
#include "tests/db/loop.h"
#include "tests/support/process.h"

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
