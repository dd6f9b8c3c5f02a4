// The request and response types of the built-in worker's HTTP front, as a
// route handler sees them: a parsed Request and a Responder that completes it.
//
// Design: a handler may answer at once or later (after Redis or Postgres
// replies). The Request lives inside the same shared exchange object the
// Responder points at, so a handler that keeps a copy of its Responder also
// keeps its Request alive; `res.request()` gives it back. When the client
// disconnects first, sending is a harmless no-op (connected() turns false).
// A Responder whose last copy is dropped without sending answers 500, so a
// forgotten branch never leaves a client hanging. Responses go out in request
// order on a connection (pipelining), whatever order handlers finish in.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace clusterd::worker {

enum class Method : uint8_t { kGet, kHead, kPost, kPut, kPatch, kDelete, kOptions, kOther };

std::string_view methodName(Method m);

class Request {
 public:
  Method method = Method::kGet;
  std::string target;     // the request-target as received ("/v1/x?a=1")
  std::string path;       // percent-decoded path, without the query
  std::string query;      // raw query string without '?', not decoded
  std::string body;       // de-chunked
  std::string client_ip;  // peer address ("127.0.0.1", "::1"; "unix" on a Unix socket)
  uint64_t start_ns = 0;  // uv_hrtime() when the request was complete

  // Header value by case-insensitive name; the first one when repeated;
  // empty when absent.
  std::string_view header(std::string_view name) const;
  bool hasHeader(std::string_view name) const;
  size_t headerCount() const { return headers_.size(); }
  std::pair<std::string_view, std::string_view> headerAt(size_t i) const;

  // A path parameter of the matched route ("{queue}" -> param("queue")).
  std::string_view param(std::string_view name) const;
  // A query parameter, percent-decoded ('+' as space); nullopt when absent.
  std::optional<std::string> queryParam(std::string_view name) const;

  // Filled by the server and the router.
  void addHeader(std::string_view name, std::string_view value);
  void appendToLastHeaderValue(std::string_view more);
  void appendToLastHeaderName(std::string_view more);
  void setParams(std::vector<std::pair<std::string, std::string>> params) {
    params_ = std::move(params);
  }
  void clear();

 private:
  struct HeaderSpan {
    uint32_t name_off, name_len, value_off, value_len;
  };
  std::string header_text_;  // every header name and value, back to back
  std::vector<HeaderSpan> headers_;
  std::vector<std::pair<std::string, std::string>> params_;
};

// True when the request's Authorization header is "Bearer <token>". The
// comparison takes the same time wherever the first difference is, so the
// answer's timing does not reveal how much of a guess was right.
bool bearerMatches(const Request& req, std::string_view token);

struct Exchange;  // internal: one request and its response on a connection

class Responder {
 public:
  explicit Responder(std::shared_ptr<Exchange> exchange);
  Responder(const Responder& o);
  Responder(Responder&& o) noexcept;
  Responder& operator=(const Responder& o);
  Responder& operator=(Responder&& o) noexcept;
  ~Responder();

  const Request& request() const;
  // Adds a response header (before send). Content-Length, Date, Connection
  // and Content-Encoding are managed by the server.
  Responder& header(std::string_view name, std::string_view value);
  // Sends the response; only the first call counts.
  void send(int status, std::string body,
            std::string_view content_type = "text/plain; charset=utf-8");
  void json(int status, const nlohmann::json& body);
  // {"error": message} (and "field": field when given), as JSON.
  void error(int status, std::string_view message, std::string_view field = {});

  bool sent() const;
  // False once the client has gone; sending then does nothing.
  bool connected() const;

 private:
  void attach();
  void detach();
  std::shared_ptr<Exchange> ex_;
};

}  // namespace clusterd::worker
