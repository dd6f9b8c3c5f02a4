// Exchange: one request and its response on one connection, shared between
// the connection (which writes responses in request order) and the
// Responders a handler holds. Internal to the worker module.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "worker/http.h"

namespace clusterd::worker {

class HttpConnection;

struct Exchange {
  Request req;
  HttpConnection* conn = nullptr;  // null once the connection is gone
  int route = -1;                  // router index, for metrics; -1 = no route
  int responders = 0;              // live Responder copies
  bool sent = false;               // a response is ready
  bool close_after = false;        // close the connection after this response
  bool keep_alive = true;          // the client allows reuse
  bool http10 = false;
  bool head = false;
  uint64_t queued_ms = 0;          // loop time when the request was complete

  int status = 0;
  std::string content_type;
  std::string headers;  // extra response headers, "Name: value\r\n" each
  std::string body;
};

// Appends a complete response (status line, headers, body) for `ex` to `out`.
// `connection_close` adds "Connection: close"; HTTP/1.0 clients that asked
// for keep-alive get "Connection: keep-alive". `date` is the cached
// "Date: ...\r\n" line.
void serializeResponse(const Exchange& ex, bool connection_close, std::string_view date,
                       std::string& out);

std::string_view statusText(int status);

// Compresses `in` as gzip (RFC 1952); false only if zlib fails.
bool gzipCompress(std::string_view in, std::string& out);

// Decodes %XX escapes (a malformed escape stays as is).
std::string percentDecode(std::string_view s);

// True when an Accept-Encoding value allows gzip (q=0 refuses it).
bool acceptsGzip(std::string_view accept_encoding);

}  // namespace clusterd::worker
