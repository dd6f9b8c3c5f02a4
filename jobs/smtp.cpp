// SMTP transport of jobs/mail.h through libcurl's blocking easy API, which is
// why Mailer only calls it on the libuv thread pool. One easy handle per
// thread is kept and reused, so a batch rides one SMTP connection.
//
// TLS follows `mail.smtp_tls` (config/smtp_tls.h): `required` is libcurl's
// CURLUSESSL_ALL, so with smtp:// a server that does not offer STARTTLS gets
// no AUTH and no message, `opportunistic` is CURLUSESSL_TRY and `off`
// CURLUSESSL_NONE. Messages name the server by its URL with any user and
// password in it replaced, and never carry the password.
#include <curl/curl.h>

#include <fmt/format.h>

#include <cstring>
#include <mutex>

#include "config/smtp_tls.h"
#include "jobs/mail.h"

namespace clusterd::jobs {
namespace {

struct Upload {
  const std::string* data;
  size_t off = 0;
};

size_t readChunk(char* buf, size_t size, size_t n, void* userp) {
  auto* u = static_cast<Upload*>(userp);
  size_t room = size * n;
  size_t left = u->data->size() - u->off;
  size_t take = std::min(room, left);
  std::memcpy(buf, u->data->data() + u->off, take);
  u->off += take;
  return take;
}

class SmtpTransport final : public Transport {
 public:
  explicit SmtpTransport(const config::MailSection& mail)
      : url_(mail.smtp_url),
        shown_url_(config::redactedSmtpUrl(mail.smtp_url)),
        user_(mail.smtp_user),
        password_(mail.smtp_password),
        tls_(config::smtpTls(mail)) {
    // libcurl's global init is not thread-safe; do it once, before any thread uses curl.
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  }

  std::string describe() const override {
    return fmt::format("smtp {} (TLS {})", shown_url_, config::smtpTlsName(tls_));
  }
  // Each pool thread keeps its own connection, so a batch may use all four.
  size_t parallelism() const override { return 4; }

  Result<void> send(const Message& m) override {
    // Each thread-pool thread keeps its own handle (and so its own connection).
    thread_local std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> handle(curl_easy_init(),
                                                                           curl_easy_cleanup);
    CURL* c = handle.get();
    if (!c) return Error{"curl_easy_init failed"};
    curl_easy_reset(c);
    std::string raw = m.raw();
    Upload up{&raw};
    std::string from = "<" + m.from + ">";
    curl_slist* rcpt = curl_slist_append(nullptr, ("<" + m.to + ">").c_str());
    char errbuf[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(c, CURLOPT_URL, url_.c_str());
    curl_easy_setopt(c, CURLOPT_MAIL_FROM, from.c_str());
    curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpt);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, readChunk);
    curl_easy_setopt(c, CURLOPT_READDATA, &up);
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    // smtps:// is TLS from the start; smtp:// upgrades with STARTTLS, which
    // `required` insists on.
    long use_ssl = tls_ == config::SmtpTls::kRequired        ? CURLUSESSL_ALL
                   : tls_ == config::SmtpTls::kOpportunistic ? CURLUSESSL_TRY
                                                             : CURLUSESSL_NONE;
    curl_easy_setopt(c, CURLOPT_USE_SSL, use_ssl);
    if (!user_.empty()) {
      curl_easy_setopt(c, CURLOPT_USERNAME, user_.c_str());
      curl_easy_setopt(c, CURLOPT_PASSWORD, password_.c_str());
    }
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(rcpt);
    if (rc == CURLE_USE_SSL_FAILED)
      return Error{fmt::format(
          "smtp to {} via {}: TLS is required (mail.smtp_tls: required) and the server did not "
          "offer STARTTLS or refused it ({}), so nothing was sent, credentials included; enable "
          "STARTTLS on the server, check that nothing between strips it, or use smtps://",
          m.to, shown_url_, errbuf[0] ? errbuf : curl_easy_strerror(rc))};
    if (rc != CURLE_OK) {
      long code = 0;
      curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
      return Error{fmt::format("smtp to {} via {}: {}{}", m.to, shown_url_,
                               errbuf[0] ? errbuf : curl_easy_strerror(rc),
                               code ? fmt::format(" (server said {})", code) : "")};
    }
    return success();
  }

 private:
  std::string url_, shown_url_, user_, password_;
  config::SmtpTls tls_;
};

}  // namespace

std::unique_ptr<Transport> makeSmtpTransport(const config::MailSection& mail) {
  return std::make_unique<SmtpTransport>(mail);
}

}  // namespace clusterd::jobs
