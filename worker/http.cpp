// Request accessors and the Responder (see http.h).
#include "worker/http.h"

#include <nlohmann/json.hpp>

#include "worker/connection.h"
#include "worker/exchange.h"
#include "worker/text.h"

namespace clusterd::worker {

std::string_view methodName(Method m) {
  switch (m) {
    case Method::kGet: return "GET";
    case Method::kHead: return "HEAD";
    case Method::kPost: return "POST";
    case Method::kPut: return "PUT";
    case Method::kPatch: return "PATCH";
    case Method::kDelete: return "DELETE";
    case Method::kOptions: return "OPTIONS";
    case Method::kOther: return "OTHER";
  }
  return "OTHER";
}

namespace {

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string decodeComponent(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%' && i + 2 < s.size()) {
      int hi = hexValue(s[i + 1]), lo = hexValue(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += (plus_is_space && c == '+') ? ' ' : c;
  }
  return out;
}
}  // namespace

std::string percentDecode(std::string_view s) { return decodeComponent(s, false); }

bool bearerMatches(const Request& req, std::string_view token) {
  std::string_view auth = req.header("authorization");
  constexpr std::string_view kScheme = "Bearer ";
  if (token.empty() || auth.size() != kScheme.size() + token.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < kScheme.size(); ++i)
    diff |= static_cast<unsigned char>(auth[i] ^ kScheme[i]);
  for (size_t i = 0; i < token.size(); ++i)
    diff |= static_cast<unsigned char>(auth[kScheme.size() + i] ^ token[i]);
  return diff == 0;
}

std::string_view Request::header(std::string_view name) const {
  for (const HeaderSpan& h : headers_) {
    std::string_view n(header_text_.data() + h.name_off, h.name_len);
    if (equalsIgnoringCase(n, name)) return {header_text_.data() + h.value_off, h.value_len};
  }
  return {};
}

bool Request::hasHeader(std::string_view name) const {
  for (const HeaderSpan& h : headers_) {
    if (equalsIgnoringCase(std::string_view(header_text_.data() + h.name_off, h.name_len), name)) return true;
  }
  return false;
}

std::pair<std::string_view, std::string_view> Request::headerAt(size_t i) const {
  const HeaderSpan& h = headers_.at(i);
  return {{header_text_.data() + h.name_off, h.name_len},
          {header_text_.data() + h.value_off, h.value_len}};
}

std::string_view Request::param(std::string_view name) const {
  for (const auto& [k, v] : params_) {
    if (k == name) return v;
  }
  return {};
}

std::optional<std::string> Request::queryParam(std::string_view name) const {
  std::string_view q = query;
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view item = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
    size_t eq = item.find('=');
    std::string key = decodeComponent(item.substr(0, eq), true);
    if (key != name) continue;
    if (eq == std::string_view::npos) return std::string();
    return decodeComponent(item.substr(eq + 1), true);
  }
  return std::nullopt;
}

void Request::addHeader(std::string_view name, std::string_view value) {
  HeaderSpan h;
  h.name_off = static_cast<uint32_t>(header_text_.size());
  h.name_len = static_cast<uint32_t>(name.size());
  header_text_ += name;
  h.value_off = static_cast<uint32_t>(header_text_.size());
  h.value_len = static_cast<uint32_t>(value.size());
  header_text_ += value;
  headers_.push_back(h);
}

void Request::appendToLastHeaderName(std::string_view more) {
  // Only valid while the last header has no value yet: both live at the end.
  HeaderSpan& h = headers_.back();
  header_text_ += more;
  h.name_len += static_cast<uint32_t>(more.size());
  h.value_off = static_cast<uint32_t>(header_text_.size());
}

void Request::appendToLastHeaderValue(std::string_view more) {
  HeaderSpan& h = headers_.back();
  header_text_ += more;
  h.value_len += static_cast<uint32_t>(more.size());
}

void Request::clear() {
  method = Method::kGet;
  target.clear();
  path.clear();
  query.clear();
  body.clear();
  client_ip.clear();
  start_ns = 0;
  header_text_.clear();
  headers_.clear();
  params_.clear();
}

// --- Responder -------------------------------------------------------------

Responder::Responder(std::shared_ptr<Exchange> exchange) : ex_(std::move(exchange)) { attach(); }
Responder::Responder(const Responder& o) : ex_(o.ex_) { attach(); }
Responder::Responder(Responder&& o) noexcept : ex_(std::move(o.ex_)) {}
Responder& Responder::operator=(const Responder& o) {
  if (this != &o) {
    detach();
    ex_ = o.ex_;
    attach();
  }
  return *this;
}
Responder& Responder::operator=(Responder&& o) noexcept {
  if (this != &o) {
    detach();
    ex_ = std::move(o.ex_);
  }
  return *this;
}
Responder::~Responder() { detach(); }

void Responder::attach() {
  if (ex_) ++ex_->responders;
}

void Responder::detach() {
  if (!ex_) return;
  std::shared_ptr<Exchange> ex = std::move(ex_);
  if (--ex->responders == 0 && !ex->sent) {
    // The handler let go without answering: say so rather than hang.
    Responder last(ex);
    last.error(500, "the handler finished without a response");
  }
}

const Request& Responder::request() const { return ex_->req; }

Responder& Responder::header(std::string_view name, std::string_view value) {
  if (!ex_->sent) {
    ex_->headers += name;
    ex_->headers += ": ";
    ex_->headers += value;
    ex_->headers += "\r\n";
  }
  return *this;
}

void Responder::send(int status, std::string body, std::string_view content_type) {
  Exchange& ex = *ex_;
  if (ex.sent) return;
  ex.sent = true;
  ex.status = status;
  ex.body = std::move(body);
  ex.content_type = content_type;
  // gzip bodies over 1 KiB for clients that accept it; small ones are not
  // worth the CPU, and error bodies are small.
  if (ex.body.size() > 1024 && ex.conn && acceptsGzip(ex.req.header("accept-encoding"))) {
    std::string packed;
    if (gzipCompress(ex.body, packed)) {
      ex.body.swap(packed);
      ex.headers += "Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n";
    }
  }
  if (ex.conn) ex.conn->completed(ex_);
}

void Responder::json(int status, const nlohmann::json& body) {
  send(status, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
       "application/json");
}

void Responder::error(int status, std::string_view message, std::string_view field) {
  nlohmann::json j = {{"error", message}};
  if (!field.empty()) j["field"] = field;
  json(status, j);
}

bool Responder::sent() const { return ex_->sent; }
bool Responder::connected() const { return ex_->conn != nullptr; }

}  // namespace clusterd::worker
