// `mail.smtp_tls`: its values and default, and the combinations refused
// because they would send a password in cleartext, each reported at the
// setting's line and column without the password in the message.
#include <catch2/catch.hpp>

#include "config/smtp_tls.h"
#include "tests/config/helpers.h"

namespace config_smtp_tls_test {

using namespace clusterd::config;
using namespace clusterd::config::test;

namespace {

// An app, then a mail section of `mail_lines` (indented by the caller) from
// line 3 on.
LoadResult withMail(const std::string& mail_lines) {
  return loadText(
      "apps: [{name: a, script: /bin/true}]\n"
      "mail:\n" +
      mail_lines);
}

}  // namespace

TEST_CASE("smtp_tls defaults to required with a password and to opportunistic without") {
  auto r = withMail(
      "  smtp_url: smtp://mail.example.com:587\n"
      "  user: shop\n"
      "  password: s3cret-pw\n");
  INFO(allErrors(r));
  REQUIRE(r.ok());
  CHECK_FALSE(r.ecosystem.mail.smtp_tls.has_value());
  CHECK(smtpTls(r.ecosystem.mail) == SmtpTls::kRequired);
  r = withMail("  smtp_url: smtp://127.0.0.1:25\n");
  REQUIRE(r.ok());
  CHECK(smtpTls(r.ecosystem.mail) == SmtpTls::kOpportunistic);
  // A user in the URL is a credential too.
  MailSection m;
  m.transport = "smtp";
  m.smtp_url = "smtp://shop:s3cret-pw@mail.example.com:587";
  CHECK(smtpTls(m) == SmtpTls::kRequired);
  CHECK(redactedSmtpUrl(m.smtp_url) == "smtp://***@mail.example.com:587");
  CHECK(redactedSmtpUrl("smtps://mail.example.com") == "smtps://mail.example.com");
}

TEST_CASE("smtp_tls takes required, opportunistic or off, as written") {
  for (auto [text, tls] : {std::pair{"required", SmtpTls::kRequired},
                           {"opportunistic", SmtpTls::kOpportunistic},
                           {"off", SmtpTls::kOff}}) {
    auto r = withMail(std::string("  smtp_url: smtp://mail.example.com:25\n") +
                      "  smtp_tls: " + text + "\n");
    INFO(text << ": " << allErrors(r));
    REQUIRE(r.ok());
    CHECK(r.ecosystem.mail.smtp_tls == tls);
  }
  auto r = withMail(
      "  smtp_url: smtp://mail.example.com:25\n"
      "  smtp_tls: yes\n");
  Diagnostic d = errorFor(r, "mail.smtp_tls");
  CHECK(d.line == 4);
  CHECK(d.column == 13);
  CHECK_THAT(d.message, Catch::Contains("required") && Catch::Contains("opportunistic") &&
                            Catch::Contains("off"));
}

TEST_CASE("smtp_tls refuses what would send a password in cleartext, at its line") {
  struct Case {
    const char* url;
    const char* tls;
    const char* message_part;
  };
  const Case refused[] = {
      {"smtp://mail.example.com:587", "opportunistic", "strips STARTTLS"},
      {"smtp://mail.example.com:587", "off", "in cleartext to mail.example.com"},
      {"smtp://10.0.0.5:25", "off", "allowed only for a relay on loopback"},
      {"smtps://mail.example.com:465", "off", "contradicts smtps://"},
  };
  for (const Case& c : refused) {
    auto r = withMail(std::string("  smtp_url: ") + c.url + "\n  user: shop\n" +
                      "  password: s3cret-pw\n  smtp_tls: " + c.tls + "\n");
    INFO(c.url << " with " << c.tls);
    Diagnostic d = errorFor(r, "mail.smtp_tls");
    CHECK(d.line == 6);
    CHECK(d.column == 13);
    CHECK_THAT(d.message, Catch::Contains(c.message_part));
    CHECK(d.message.find("s3cret-pw") == std::string::npos);
  }
  // What is allowed: a loopback relay without TLS, smtps, and any setting
  // without credentials.
  for (const char* mail : {"  smtp_url: smtp://127.0.0.1:2525\n  user: shop\n  password: pw\n  "
                           "smtp_tls: off\n",
                           "  smtp_url: smtp://localhost\n  password: pw\n  smtp_tls: off\n",
                           "  smtp_url: smtp://[::1]:25\n  user: shop\n  smtp_tls: off\n",
                           "  smtp_url: smtps://mail.example.com\n  user: shop\n  smtp_tls: "
                           "opportunistic\n",
                           "  smtp_url: smtp://mail.example.com\n  smtp_tls: off\n"}) {
    auto r = withMail(mail);
    INFO(mail << allErrors(r));
    CHECK(r.ok());
  }
  // Not checked when mail goes to a maildir: the SMTP settings are unused.
  auto r = withMail(
      "  transport: maildir\n  smtp_url: smtp://mail.example.com\n"
      "  password: pw\n  smtp_tls: off\n");
  CHECK(r.ok());
}

}  // namespace config_smtp_tls_test
