// HttpConnection: parsing, ordered responses, limits and closing (see
// connection.h for the design).
#include "worker/connection.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cassert>
#include <cstring>

#include "worker/forwarded.h"
#include "worker/server.h"

namespace clusterd::worker {
namespace {

Method toMethod(unsigned m) {
  switch (m) {
    case HTTP_GET: return Method::kGet;
    case HTTP_HEAD: return Method::kHead;
    case HTTP_POST: return Method::kPost;
    case HTTP_PUT: return Method::kPut;
    case HTTP_PATCH: return Method::kPatch;
    case HTTP_DELETE: return Method::kDelete;
    case HTTP_OPTIONS: return Method::kOptions;
    default: return Method::kOther;
  }
}

std::string peerAddress(uv_tcp_t* tcp) {
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getpeername(tcp, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "unknown";
  char buf[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    uv_ip4_name(reinterpret_cast<sockaddr_in*>(&ss), buf, sizeof buf);
  } else if (ss.ss_family == AF_INET6) {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
    // An IPv4 client on a dual-stack socket is shown as plain IPv4.
    if (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr)) {
      inet_ntop(AF_INET, &a6->sin6_addr.s6_addr[12], buf, sizeof buf);
    } else {
      uv_ip6_name(a6, buf, sizeof buf);
    }
  } else {
    return "unknown";
  }
  return buf;
}

}  // namespace

HttpConnection::HttpConnection(Server& server) : server_(&server) {
  std::memset(&h_, 0, sizeof h_);
  http_parser_init(&parser_, HTTP_REQUEST);
  parser_.data = this;
  last_activity_ms_ = uv_now(server_->loop());
}

HttpConnection::~HttpConnection() {
  for (auto& ex : pending_) ex->conn = nullptr;
}

int HttpConnection::accept(uv_stream_t* listener, bool is_pipe) {
  int rc = is_pipe ? uv_pipe_init(server_->loop(), &h_.pipe, 0) : uv_tcp_init(server_->loop(), &h_.tcp);
  if (rc != 0) return rc;
  handle()->data = this;
  rc = uv_accept(listener, stream());
  if (rc != 0) return rc;
  if (is_pipe) {
    client_ip_ = "unix";
  } else {
    uv_tcp_nodelay(&h_.tcp, 1);
    client_ip_ = peerAddress(&h_.tcp);
    peer_is_proxy_ = anyContains(server_->limits().trusted_proxies, client_ip_);
  }
  return 0;
}

void HttpConnection::start() {
  uv_read_start(
      stream(),
      [](uv_handle_t* h, size_t, uv_buf_t* buf) {
        auto* self = static_cast<HttpConnection*>(h->data);
        buf->base = self->server_->readBuffer();
        buf->len = self->server_->readBufferSize();
      },
      [](uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
        static_cast<HttpConnection*>(s->data)->onRead(nread, buf->base);
      });
}

void HttpConnection::rejectBusy() {
  auto ex = std::make_shared<Exchange>();
  ex->conn = this;
  ex->sent = true;
  ex->close_after = true;
  ex->status = 503;
  ex->content_type = "application/json";
  ex->headers = "Retry-After: 1\r\n";
  ex->body = R"({"error":"too many connections to this worker; retry shortly"})";
  stop_parsing_ = true;
  pending_.push_back(ex);
  flushReady();
}

bool HttpConnection::idle() const {
  return pending_.empty() && request_started_ms_ == 0 && out_.empty() && !writing_ &&
         backlog_.empty();
}

// --- reading and parsing -----------------------------------------------------

const http_parser_settings& HttpConnection::settings() {
  static const http_parser_settings s = [] {
    http_parser_settings x;
    http_parser_settings_init(&x);
    x.on_message_begin = &HttpConnection::onMessageBegin;
    x.on_url = &HttpConnection::onUrl;
    x.on_header_field = &HttpConnection::onHeaderField;
    x.on_header_value = &HttpConnection::onHeaderValue;
    x.on_headers_complete = &HttpConnection::onHeadersComplete;
    x.on_body = &HttpConnection::onBody;
    x.on_message_complete = &HttpConnection::onMessageComplete;
    return x;
  }();
  return s;
}

void HttpConnection::onRead(ssize_t nread, const char* data) {
  if (closing_) return;
  if (nread == 0) return;
  if (nread < 0) {
    // EOF or error. Answer what was asked (a client may half-close after
    // sending), unless the socket is broken.
    uv_read_stop(stream());
    if (nread != UV_EOF || lingering_ || pending_.empty()) {
      close();
      return;
    }
    stop_parsing_ = true;
    close_after_flush_ = true;
    request_started_ms_ = 0;
    return;
  }
  // A read alone is no progress: bytes between requests (a stream of
  // "\r\n") start no request, so they must not keep an idle connection
  // open. The idle time counts from the last request completed or answered.
  if (lingering_ || stop_parsing_) return;  // discarding
  in_read_ = true;
  parse(data, static_cast<size_t>(nread));
  in_read_ = false;
  if (closing_) return;
  flushReady();
}

void HttpConnection::parse(const char* data, size_t len) {
  size_t n = http_parser_execute(&parser_, &settings(), data, len);
  enum http_errno err = HTTP_PARSER_ERRNO(&parser_);
  if (err == HPE_PAUSED) {
    if (stop_parsing_) return;  // the rest follows a closing request: dropped
    // Too many responses pending: keep the rest and stop reading for now.
    backlog_.append(data + n, len - n);
    uv_read_stop(stream());
    return;
  }
  if (err != HPE_OK) {
    if (fail_status_ != 0) {
      failRequest(fail_status_, fail_status_ == 431   ? "request headers too large"
                                : fail_status_ == 413 ? "request body too large"
                                                      : "bad request");
    } else if (err == HPE_HEADER_OVERFLOW) {
      failRequest(431, "request headers too large");
    } else {
      failRequest(400, http_errno_description(err));
    }
    return;
  }
}

bool HttpConnection::addHeaderBytes(size_t len) {
  header_bytes_ += len;
  if (header_bytes_ > server_->limits().max_header_bytes) {
    fail_status_ = 431;
    return false;
  }
  return true;
}

int HttpConnection::onMessageBegin(http_parser* p) {
  auto* self = static_cast<HttpConnection*>(p->data);
  self->cur_.clear();
  self->header_state_ = HeaderState::kNone;
  self->header_bytes_ = 0;
  self->fail_status_ = 0;
  self->request_started_ms_ = uv_now(self->server_->loop());
  self->cur_.start_ns = uv_hrtime();
  return 0;
}

int HttpConnection::onUrl(http_parser* p, const char* at, size_t len) {
  auto* self = static_cast<HttpConnection*>(p->data);
  if (!self->addHeaderBytes(len)) return -1;
  self->cur_.target.append(at, len);
  return 0;
}

int HttpConnection::onHeaderField(http_parser* p, const char* at, size_t len) {
  auto* self = static_cast<HttpConnection*>(p->data);
  if (!self->addHeaderBytes(len)) return -1;
  if (self->header_state_ == HeaderState::kField) {
    self->cur_.appendToLastHeaderName({at, len});
  } else {
    self->cur_.addHeader({at, len}, {});
  }
  self->header_state_ = HeaderState::kField;
  return 0;
}

int HttpConnection::onHeaderValue(http_parser* p, const char* at, size_t len) {
  auto* self = static_cast<HttpConnection*>(p->data);
  if (!self->addHeaderBytes(len)) return -1;
  self->cur_.appendToLastHeaderValue({at, len});
  self->header_state_ = HeaderState::kValue;
  return 0;
}

int HttpConnection::onHeadersComplete(http_parser* p) {
  auto* self = static_cast<HttpConnection*>(p->data);
  Request& r = self->cur_;
  const std::string& t = r.target;
  if (t.empty() || t[0] != '/') {
    self->fail_status_ = 400;  // absolute-form, authority-form and "*" are not served
    return -1;
  }
  size_t q = t.find('?');
  size_t end = std::min(q, t.find('#'));
  r.path = percentDecode(std::string_view(t).substr(0, end));
  if (q != std::string::npos) r.query = t.substr(q + 1, t.find('#', q) - q - 1);
  r.method = toMethod(p->method);
  if ((p->flags & F_CONTENTLENGTH) && p->content_length != ULLONG_MAX &&
      p->content_length > self->server_->limits().max_body_bytes) {
    self->fail_status_ = 413;
    return -1;
  }
  // curl and others wait for "100 Continue" before a large body; say it
  // only when nothing else is queued, so responses stay in order.
  if (self->pending_.empty() && self->out_.empty() && !self->writing_ &&
      !r.header("expect").empty()) {
    static const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
    uv_buf_t b = uv_buf_init(const_cast<char*>(kContinue), sizeof kContinue - 1);
    uv_try_write(self->stream(), &b, 1);
  }
  r.client_ip = self->peer_is_proxy_
                    ? forwardedClient(r, self->client_ip_, self->server_->limits().trusted_proxies)
                    : self->client_ip_;
  return 0;
}

int HttpConnection::onBody(http_parser* p, const char* at, size_t len) {
  auto* self = static_cast<HttpConnection*>(p->data);
  if (self->cur_.body.size() + len > self->server_->limits().max_body_bytes) {
    self->fail_status_ = 413;
    return -1;
  }
  self->cur_.body.append(at, len);
  return 0;
}

int HttpConnection::onMessageComplete(http_parser* p) {
  auto* self = static_cast<HttpConnection*>(p->data);
  auto ex = std::make_shared<Exchange>();
  ex->req = std::move(self->cur_);
  ex->conn = self;
  // Protocol upgrades are not served: the request is answered as a plain
  // one and the connection closes after it, since the client may already
  // be sending bytes of the protocol it asked for.
  ex->keep_alive = http_should_keep_alive(p) != 0 && !p->upgrade;
  ex->http10 = p->http_major == 1 && p->http_minor == 0;
  ex->head = ex->req.method == Method::kHead;
  ex->queued_ms = uv_now(self->server_->loop());
  // Parse the next request into the buffers of an answered one (clear()
  // keeps their capacity), so a keep-alive connection stops allocating them.
  self->cur_ = std::move(self->spare_);
  self->spare_ = Request{};
  self->request_started_ms_ = 0;
  self->last_activity_ms_ = ex->queued_ms;
  ++self->requests_;
  self->pending_.push_back(ex);
  if (!ex->keep_alive) self->stop_parsing_ = true;  // nothing after a closing request counts
  self->server_->dispatch(ex);
  if (self->closing_) return -1;
  if (self->stop_parsing_) {
    http_parser_pause(p, 1);
    return 0;
  }
  if (self->pending_.size() >= self->server_->limits().max_pipeline ||
      self->unsentBytes() > self->server_->limits().max_unsent_bytes) {
    self->paused_ = true;
    http_parser_pause(p, 1);
  }
  return 0;
}

// Queues an error answer after the pending ones and stops taking requests.
void HttpConnection::failRequest(int status, const char* message) {
  auto ex = std::make_shared<Exchange>();
  ex->conn = this;
  ex->req = std::move(cur_);
  ex->req.client_ip = client_ip_;
  if (ex->req.start_ns == 0) ex->req.start_ns = uv_hrtime();
  ex->sent = true;
  ex->close_after = true;
  ex->status = status;
  ex->content_type = "application/json";
  ex->body = std::string(R"({"error":")") + message + "\"}";
  cur_ = Request{};
  request_started_ms_ = 0;
  stop_parsing_ = true;
  backlog_.clear();
  pending_.push_back(ex);
  if (!in_read_) flushReady();
}

void HttpConnection::maybeResume() {
  if (!paused_ || closing_ || stop_parsing_) return;
  if (pending_.size() > server_->limits().max_pipeline / 2) return;
  // A client that sends requests but does not read the answers stays
  // paused: its responses wait in memory only up to max_unsent_bytes.
  if (unsentBytes() > server_->limits().max_unsent_bytes / 2) return;
  paused_ = false;
  http_parser_pause(&parser_, 0);
  std::string data;
  data.swap(backlog_);
  in_read_ = true;
  parse(data.data(), data.size());
  in_read_ = false;
  if (closing_) return;
  if (!paused_ && !stop_parsing_) start();
  flushReady();
}

// --- responses -----------------------------------------------------------------

void HttpConnection::completed(const std::shared_ptr<Exchange>& ex) {
  (void)ex;
  if (!in_read_) flushReady();
}

void HttpConnection::flushReady() {
  if (closing_) return;
  while (!pending_.empty() && pending_.front()->sent) {
    std::shared_ptr<Exchange> ex = std::move(pending_.front());
    pending_.pop_front();
    bool last_while_draining = draining_ && pending_.empty() && request_started_ms_ == 0;
    bool close = ex->close_after || !ex->keep_alive || last_while_draining ||
                 (stop_parsing_ && pending_.empty());
    size_t before = out_.size();
    serializeResponse(*ex, close, server_->dateLine(), out_);
    last_activity_ms_ = uv_now(server_->loop());
    ex->conn = nullptr;
    server_->observe(*ex, out_.size() - before);
    if (ex.use_count() == 1) spare_ = std::move(ex->req);  // no handler holds it any more
    if (close) {
      close_after_flush_ = true;
      stop_parsing_ = true;
      for (auto& rest : pending_) rest->conn = nullptr;
      pending_.clear();
      break;
    }
  }
  if (in_read_) return;
  writeOut();
  if (!close_after_flush_) maybeResume();
}

void HttpConnection::writeOut() {
  if (closing_) return;
  if (!writing_ && !out_.empty()) {
    uv_buf_t b = uv_buf_init(out_.data(), static_cast<unsigned>(out_.size()));
    int n = uv_try_write(stream(), &b, 1);
    if (n == static_cast<int>(out_.size())) {
      out_.clear();
    } else if (n < 0 && n != UV_EAGAIN) {
      close();
      return;
    } else {
      size_t done = n > 0 ? static_cast<size_t>(n) : 0;
      inflight_.assign(out_, done, std::string::npos);
      out_.clear();
      writing_ = true;
      write_progress_ms_ = uv_now(server_->loop());
      wreq_.data = this;
      uv_buf_t wb = uv_buf_init(inflight_.data(), static_cast<unsigned>(inflight_.size()));
      int rc = uv_write(&wreq_, stream(), &wb, 1, [](uv_write_t* req, int status) {
        if (status == UV_ECANCELED) return;  // the handle is closing; `this` may be gone
        static_cast<HttpConnection*>(req->data)->onWritten(status);
      });
      if (rc != 0) {
        writing_ = false;
        close();
        return;
      }
      write_queued_ = stream()->write_queue_size;
    }
  }
  finishIfDone();
}

void HttpConnection::onWritten(int status) {
  writing_ = false;
  inflight_.clear();
  if (status != 0) {
    close();
    return;
  }
  last_activity_ms_ = uv_now(server_->loop());
  writeOut();
  if (!close_after_flush_) maybeResume();
}

void HttpConnection::finishIfDone() {
  if (closing_ || writing_ || !out_.empty()) return;
  if (close_after_flush_ && !lingering_) startLinger();
}

void HttpConnection::startLinger() {
  lingering_ = true;
  linger_started_ms_ = uv_now(server_->loop());
  sreq_.data = this;
  int rc = uv_shutdown(&sreq_, stream(), [](uv_shutdown_t* req, int status) {
    if (status == UV_ECANCELED) return;
    (void)req;
  });
  if (rc != 0) {
    close();
    return;
  }
  // Keep reading (and discarding) until the client closes or linger ends.
  if (!uv_is_active(handle())) start();
}

// --- lifecycle -------------------------------------------------------------------

void HttpConnection::beginDrain() {
  if (draining_ || closing_) return;
  draining_ = true;
  last_activity_ms_ = std::max(last_activity_ms_, uv_now(server_->loop()));
}

void HttpConnection::sweep(uint64_t now_ms) {
  if (closing_) return;
  const ServerLimits& lim = server_->limits();
  if (lingering_) {
    if (now_ms - linger_started_ms_ >= lim.linger_ms) close();
    return;
  }
  if (writing_) {
    // The kernel took no byte of the queued output since the last sweep
    // for request_timeout: the client stopped reading. Closing frees the
    // output and lets a drain finish.
    size_t queued = stream()->write_queue_size;
    if (queued != write_queued_) {
      write_queued_ = queued;
      write_progress_ms_ = now_ms;
    } else if (now_ms - write_progress_ms_ >= lim.request_timeout_ms) {
      close();
      return;
    }
  }
  if (request_started_ms_ != 0 && now_ms - request_started_ms_ >= lim.request_timeout_ms) {
    failRequest(408, "request not received in time");
    return;
  }
  if (!pending_.empty() && !pending_.front()->sent &&
      now_ms - pending_.front()->queued_ms >= lim.request_timeout_ms) {
    Responder(pending_.front()).error(504, "the handler did not answer in time");
    return;
  }
  if (idle()) {
    uint64_t limit = draining_ ? lim.drain_idle_ms : lim.keepalive_timeout_ms;
    if (now_ms - last_activity_ms_ >= limit) close();
  }
}

void HttpConnection::orphan() {
  server_ = nullptr;
  close();
}

void HttpConnection::close() {
  if (closing_) return;
  closing_ = true;
  for (auto& ex : pending_) ex->conn = nullptr;
  pending_.clear();
  uv_close(handle(), [](uv_handle_t* h) {
    auto* self = static_cast<HttpConnection*>(h->data);
    if (self->server_) self->server_->forget(self);
    delete self;
  });
}

}  // namespace clusterd::worker
