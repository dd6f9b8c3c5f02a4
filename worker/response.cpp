// Response serialization, status texts, gzip and Accept-Encoding parsing.
#include <zlib.h>

#include <cassert>
#include <charconv>
#include <cstring>

#include "worker/exchange.h"
#include "worker/text.h"

namespace clusterd::worker {

std::string_view statusText(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return status < 400 ? "OK" : (status < 500 ? "Client Error" : "Server Error");
  }
}

namespace {
void appendNumber(std::string& out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}
}  // namespace

void serializeResponse(const Exchange& ex, bool connection_close, std::string_view date,
                       std::string& out) {
  assert(ex.status >= 100 && ex.status <= 999);
  out += ex.http10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  appendNumber(out, static_cast<uint64_t>(ex.status));
  out += ' ';
  out += statusText(ex.status);
  out += "\r\nServer: clusterd\r\n";
  out += date;
  bool no_body = ex.status == 204 || ex.status == 304 || ex.status < 200;
  if (!no_body) {
    if (!ex.content_type.empty()) {
      out += "Content-Type: ";
      out += ex.content_type;
      out += "\r\n";
    }
    out += "Content-Length: ";
    appendNumber(out, ex.body.size());
    out += "\r\n";
  }
  if (connection_close) {
    out += "Connection: close\r\n";
  } else if (ex.http10) {
    out += "Connection: keep-alive\r\n";
  }
  out += ex.headers;
  out += "\r\n";
  if (!no_body && !ex.head) out += ex.body;
}

bool gzipCompress(std::string_view in, std::string& out) {
  z_stream zs;
  std::memset(&zs, 0, sizeof zs);
  // windowBits 15 + 16 selects the gzip wrapper; level 5 balances CPU and size.
  if (deflateInit2(&zs, 5, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return false;
  out.resize(deflateBound(&zs, in.size()) + 32);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&zs, Z_FINISH);
  size_t produced = out.size() - zs.avail_out;
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) return false;
  out.resize(produced);
  return true;
}

namespace {
// True when a "q=" parameter list says q=0 (0, 0.0, 0.000).
bool qIsZero(std::string_view params) {
  size_t q = params.find("q=");
  if (q == std::string_view::npos) return false;
  std::string_view v = trimBlanks(params.substr(q + 2));
  if (v.empty() || v[0] != '0') return false;
  for (char c : v.substr(1)) {
    if (c == ';' || c == ' ') break;
    if (c != '.' && c != '0') return false;
  }
  return true;
}
}  // namespace

bool acceptsGzip(std::string_view value) {
  bool star = false, gzip = false, gzip_refused = false;
  while (!value.empty()) {
    size_t comma = value.find(',');
    std::string_view item = trimBlanks(value.substr(0, comma));
    value = comma == std::string_view::npos ? std::string_view{} : value.substr(comma + 1);
    size_t semi = item.find(';');
    std::string_view coding = trimBlanks(item.substr(0, semi));
    bool zero = semi != std::string_view::npos && qIsZero(item.substr(semi + 1));
    if (equalsIgnoringCase(coding, "gzip") || equalsIgnoringCase(coding, "x-gzip")) {
      if (zero) gzip_refused = true; else gzip = true;
    } else if (coding == "*" && !zero) {
      star = true;
    }
  }
  return gzip || (star && !gzip_refused);
}

}  // namespace clusterd::worker
