// HttpConnection: one client connection of the HTTP front. It parses
// requests with http_parser, hands each complete request to the server's
// dispatch, and writes responses strictly in request order. Internal to the
// worker module; the Server owns every connection.
//
// Design: reads land in the server's one shared buffer and are parsed at
// once, so a read costs no allocation. Responses finished during a read
// callback are appended to one output buffer and written with a single
// uv_try_write when parsing is done (a pipelined batch leaves in one
// syscall); the rest goes out with uv_write. A connection that must close
// after a response (error, `Connection: close`, drain) shuts down its write
// side first and then reads and discards for a moment ("lingering close"),
// so the client reads the response instead of a reset. Timeouts are checked
// by the server's periodic sweep from timestamps, not by a timer per request.
//
// Backpressure: reading pauses while max_pipeline requests wait for their
// handlers or the unsent output is over max_unsent_bytes, and resumes when
// both are down by half; a client that pipelines and never reads thus holds
// a bounded amount of memory, and a write that makes no progress for
// request_timeout closes the connection. The idle timeout counts from the
// last request completed or response written, never from bytes that start
// no request.
#pragma once

#include <http_parser.h>
#include <uv.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include "worker/exchange.h"

namespace clusterd::worker {

class Server;

class HttpConnection {
 public:
  explicit HttpConnection(Server& server);
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  // Accepts a client from `listener`; returns a libuv error code.
  int accept(uv_stream_t* listener, bool is_pipe);
  // Starts reading requests.
  void start();
  // Answers 503 at once and closes: the worker is at max_connections.
  void rejectBusy();
  // A handler sent the response of `ex`.
  void completed(const std::shared_ptr<Exchange>& ex);
  // Drain began: close when idle, else close after the next complete answer.
  void beginDrain();
  // Applies timeouts; called by the server's sweep with loop time.
  void sweep(uint64_t now_ms);
  // Closes at once (server shutdown); pending handlers find conn == nullptr.
  void close();
  // The server is being destroyed: close without reporting back.
  void orphan();

  bool idle() const;
  uint64_t requests() const { return requests_; }

  // Intrusive list of the server's connections.
  HttpConnection* prev = nullptr;
  HttpConnection* next = nullptr;

 private:
  enum class HeaderState { kNone, kField, kValue };

  static const http_parser_settings& settings();
  static int onMessageBegin(http_parser* p);
  static int onUrl(http_parser* p, const char* at, size_t len);
  static int onHeaderField(http_parser* p, const char* at, size_t len);
  static int onHeaderValue(http_parser* p, const char* at, size_t len);
  static int onHeadersComplete(http_parser* p);
  static int onBody(http_parser* p, const char* at, size_t len);
  static int onMessageComplete(http_parser* p);

  void onRead(ssize_t nread, const char* data);
  void parse(const char* data, size_t len);
  bool addHeaderBytes(size_t len);
  void failRequest(int status, const char* message);
  void flushReady();
  void writeOut();
  void onWritten(int status);
  void finishIfDone();
  void startLinger();
  void maybeResume();
  size_t unsentBytes() const { return out_.size() + inflight_.size(); }
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&h_); }
  uv_handle_t* handle() { return reinterpret_cast<uv_handle_t*>(&h_); }

  Server* server_;  // null once the server is gone (its destructor orphans us)
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h_;
  http_parser parser_;
  std::string client_ip_;
  bool peer_is_proxy_ = false;  // a trusted proxy: X-Forwarded-For names the client

  // The request being parsed, and a finished one whose buffers it reuses.
  Request cur_;
  Request spare_;
  HeaderState header_state_ = HeaderState::kNone;
  size_t header_bytes_ = 0;
  uint64_t request_started_ms_ = 0;  // 0 = no request in progress
  int fail_status_ = 0;              // set by a callback that aborts parsing

  std::deque<std::shared_ptr<Exchange>> pending_;  // in request order
  std::string out_;       // serialized responses not yet handed to the kernel
  std::string inflight_;  // the buffer of the uv_write in progress
  uv_write_t wreq_;
  bool writing_ = false;
  uv_shutdown_t sreq_;

  std::string backlog_;  // unparsed bytes kept while parsing is paused
  bool in_read_ = false;
  bool paused_ = false;       // too many pending responses: not reading
  bool stop_parsing_ = false; // no further requests will be taken
  bool close_after_flush_ = false;
  bool lingering_ = false;
  bool closing_ = false;
  bool draining_ = false;
  uint64_t last_activity_ms_ = 0;   // last request completed or response written
  uint64_t write_progress_ms_ = 0;  // last time the kernel took output bytes
  size_t write_queued_ = 0;         // libuv's write queue size at that time
  uint64_t linger_started_ms_ = 0;
  uint64_t requests_ = 0;
};

}  // namespace clusterd::worker
