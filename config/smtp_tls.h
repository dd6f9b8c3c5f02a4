// The TLS rule of SMTP delivery (`mail.smtp_tls`, docs/CONFIG.md "mail"):
// which setting is in effect for a mail section and which combinations are
// allowed. The loader reports a breach at its line; the SMTP transport
// refuses a section built elsewhere that breaks it.
//
// Design: a password must never cross a network in cleartext. With `user`
// or `password` (or credentials in the URL) the default is `required`:
// smtps://, or STARTTLS that must succeed, so a server, or something in
// between, that does not offer STARTTLS gets nothing. `opportunistic` is
// refused with credentials, since whoever strips STARTTLS from the greeting
// then reads the password; `off` with credentials is allowed only to a relay
// on loopback, where there is no wire to tap. Without credentials the
// default stays `opportunistic`, as before, for local relays without TLS.
#pragma once

#include <string>
#include <string_view>

#include "config/spec.h"

namespace clusterd::config {

// The setting in effect: smtp_tls when set, else the default above.
SmtpTls smtpTls(const MailSection& mail);
// "required", "opportunistic" or "off".
std::string_view smtpTlsName(SmtpTls tls);
// True when the section carries credentials: `user`, `password`, or a
// user in smtp_url.
bool hasSmtpCredentials(const MailSection& mail);
// "" when the section's TLS setting is allowed; otherwise what is wrong and
// what to do (never the password).
std::string smtpTlsProblem(const MailSection& mail);
// smtp_url with any user and password in it replaced by "***", for messages.
std::string redactedSmtpUrl(const std::string& url);

}  // namespace clusterd::config
