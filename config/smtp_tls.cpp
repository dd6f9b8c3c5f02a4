// Implementation of config/smtp_tls.h.
#include "config/smtp_tls.h"

#include <fmt/format.h>

#include "config/internal.h"

namespace clusterd::config {
namespace {

struct UrlParts {
  std::string prefix;    // "smtp://"
  std::string userinfo;  // "user:password" ("" = none)
  std::string host;      // without brackets
  std::string rest;      // ":port/…", from the end of the user info on
  bool has_userinfo = false;
};

UrlParts split(const std::string& url) {
  UrlParts p;
  size_t scheme = url.find("://");
  if (scheme == std::string::npos) return p;
  p.prefix = url.substr(0, scheme + 3);
  size_t begin = scheme + 3;
  size_t end = url.find_first_of("/?#", begin);
  std::string authority =
      url.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
  size_t at = authority.rfind('@');
  std::string hostport = authority;
  if (at != std::string::npos) {
    p.has_userinfo = true;
    p.userinfo = authority.substr(0, at);
    hostport = authority.substr(at + 1);
  }
  p.rest = hostport + (end == std::string::npos ? "" : url.substr(end));
  if (!hostport.empty() && hostport[0] == '[') {
    size_t close = hostport.find(']');
    p.host = hostport.substr(1, close == std::string::npos ? std::string::npos : close - 1);
  } else {
    p.host = hostport.substr(0, hostport.find(':'));
  }
  return p;
}

}  // namespace

bool hasSmtpCredentials(const MailSection& mail) {
  return !mail.smtp_user.empty() || !mail.smtp_password.empty() ||
         split(mail.smtp_url).has_userinfo;
}

SmtpTls smtpTls(const MailSection& mail) {
  if (mail.smtp_tls) return *mail.smtp_tls;
  return hasSmtpCredentials(mail) ? SmtpTls::kRequired : SmtpTls::kOpportunistic;
}

std::string_view smtpTlsName(SmtpTls tls) {
  switch (tls) {
    case SmtpTls::kRequired:
      return "required";
    case SmtpTls::kOpportunistic:
      return "opportunistic";
    case SmtpTls::kOff:
      return "off";
  }
  return "?";
}

std::string smtpTlsProblem(const MailSection& mail) {
  if (mail.transport != "smtp" || mail.smtp_url.empty()) return "";
  SmtpTls tls = smtpTls(mail);
  bool smtps = mail.smtp_url.rfind("smtps://", 0) == 0;
  if (smtps && tls == SmtpTls::kOff)
    return "`off` contradicts smtps://, which is TLS from the first byte; write smtp:// for a "
           "relay without TLS, or leave smtp_tls out";
  if (smtps || !hasSmtpCredentials(mail)) return "";
  if (tls == SmtpTls::kOpportunistic)
    return "`opportunistic` with `user`/`password` would send the password in cleartext whenever "
           "something between here and the server strips STARTTLS from its greeting; write "
           "`required` (the default with a password), or use smtps://";
  std::string host = split(mail.smtp_url).host;
  if (tls == SmtpTls::kOff && !isLoopbackHost(host))
    return fmt::format(
        "`off` with `user`/`password` would send the password in cleartext to {}; that is allowed "
        "only for a relay on loopback (127.0.0.1, ::1, localhost): write `required` (the default "
        "with a password), or use smtps://",
        host.empty() ? std::string("the server") : host);
  return "";
}

std::string redactedSmtpUrl(const std::string& url) {
  UrlParts p = split(url);
  if (!p.has_userinfo) return url;
  return p.prefix + "***@" + p.rest;
}

}  // namespace clusterd::config
