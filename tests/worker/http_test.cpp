// The HTTP front of a real `clusterd worker` on loopback: routes, keep-alive,
// pipelining, gzip, and every limit with its status code.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <random>
#include <thread>

#include "tests/worker/http_client.h"

namespace worker_http_test {

using namespace clusterd::test;
using namespace std::chrono_literals;

TEST_CASE("GET /health answers JSON with status, dependencies and uptime", "[worker][http]") {
  WorkerProcess w({});
  auto r = httpGet(w.port(), "/health");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->header("content-type") == "application/json");
  auto j = nlohmann::json::parse(r->body);
  CHECK(j["status"] == "ok");
  CHECK(j["redis"] == "disabled");
  CHECK(j["postgres"] == "disabled");
  CHECK(j["uptime"].is_number());
}

TEST_CASE("GET /metrics exposes request counters by route and status", "[worker][http]") {
  WorkerProcess w({});
  REQUIRE(httpGet(w.port(), "/health"));
  REQUIRE(httpGet(w.port(), "/nope"));
  auto r = httpGet(w.port(), "/metrics");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->header("content-type").find("text/plain") == 0);
  CHECK(r->body.find("clusterd_http_requests_total{route=\"/health\",status=\"200\"} 1") != std::string::npos);
  CHECK(r->body.find("clusterd_http_requests_total{route=\"unmatched\",status=\"404\"} 1") != std::string::npos);
  CHECK(r->body.find("clusterd_http_request_duration_seconds_bucket{route=\"/health\",le=\"+Inf\"} 1") != std::string::npos);
  CHECK(r->body.find("clusterd_event_loop_lag_seconds") != std::string::npos);
  CHECK(r->body.find("process_resident_memory_bytes") != std::string::npos);
}

TEST_CASE("unknown paths answer 404 and wrong methods 405 with Allow", "[worker][http]") {
  WorkerProcess w({});
  auto r = httpGet(w.port(), "/missing");
  REQUIRE(r);
  CHECK(r->status == 404);
  HttpConn c(w.port());
  REQUIRE(c.send("DELETE /health HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto m = c.read();
  REQUIRE(m);
  CHECK(m->status == 405);
  CHECK(m->header("allow") == "GET, HEAD");
}

TEST_CASE("HEAD answers headers without a body", "[worker][http]") {
  WorkerProcess w({});
  HttpConn c(w.port());
  REQUIRE(c.send("HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto r = c.read(5s, true);
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(std::stoi(r->header("content-length")) > 0);
  // The connection stays usable: no body bytes were sent.
  REQUIRE(c.send(getRequest("/health")));
  auto r2 = c.read();
  REQUIRE(r2);
  CHECK(r2->status == 200);
}

TEST_CASE("keep-alive serves many requests on one connection", "[worker][http]") {
  WorkerProcess w({});
  HttpConn c(w.port());
  for (int i = 0; i < 20; ++i) {
    REQUIRE(c.send(getRequest("/health")));
    auto r = c.read();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->header("connection") != "close");
  }
}

TEST_CASE("pipelined requests are answered in order", "[worker][http]") {
  WorkerProcess w({});
  HttpConn c(w.port());
  std::string batch;
  std::vector<std::string> paths;
  for (int i = 0; i < 50; ++i) paths.push_back(i % 3 == 0 ? "/health" : (i % 3 == 1 ? "/x" + std::to_string(i) : "/metrics"));
  for (auto& p : paths) batch += getRequest(p);
  REQUIRE(c.send(batch));
  for (size_t i = 0; i < paths.size(); ++i) {
    auto r = c.read();
    REQUIRE(r);
    if (i % 3 == 1) {
      CHECK(r->status == 404);
      CHECK(r->body.find(paths[i]) != std::string::npos);
    } else {
      CHECK(r->status == 200);
      CHECK((i % 3 == 0) == (r->header("content-type") == "application/json"));
    }
  }
}

TEST_CASE("Connection: close and HTTP/1.0 close after the response", "[worker][http]") {
  WorkerProcess w({});
  {
    HttpConn c(w.port());
    REQUIRE(c.send("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    auto r = c.read();
    REQUIRE(r);
    CHECK(r->header("connection") == "close");
    CHECK(c.closedByPeer());
  }
  {
    HttpConn c(w.port());
    REQUIRE(c.send("GET /health HTTP/1.0\r\n\r\n"));
    auto r = c.read();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(c.closedByPeer());
  }
  {
    HttpConn c(w.port());
    REQUIRE(c.send("GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    auto r = c.read();
    REQUIRE(r);
    CHECK(r->header("connection") == "keep-alive");
    REQUIRE(c.send("GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    CHECK(c.read());
  }
}

TEST_CASE("large responses are gzipped when the client accepts gzip", "[worker][http][gzip]") {
  WorkerProcess w({});
  for (int i = 0; i < 5; ++i) REQUIRE(httpGet(w.port(), "/nope" + std::to_string(i)));
  auto plain = httpGet(w.port(), "/metrics");
  REQUIRE(plain);
  REQUIRE(plain->body.size() > 1024);
  CHECK(plain->header("content-encoding").empty());
  auto packed = httpGet(w.port(), "/metrics", "Accept-Encoding: br, gzip\r\n");
  REQUIRE(packed);
  CHECK(packed->header("content-encoding") == "gzip");
  CHECK(packed->header("vary") == "Accept-Encoding");
  std::string body = gunzip(packed->body);
  CHECK(body.find("clusterd_http_requests_total") != std::string::npos);
  CHECK(packed->body.size() < body.size());
  // Small bodies stay plain.
  auto small = httpGet(w.port(), "/health", "Accept-Encoding: gzip\r\n");
  REQUIRE(small);
  CHECK(small->header("content-encoding").empty());
}

TEST_CASE("oversized headers get 431 and the connection closes", "[worker][http][limits]") {
  WorkerProcess w({"--max-header", "2K"});
  HttpConn c(w.port());
  REQUIRE(c.send(getRequest("/health", "X-Big: " + std::string(4000, 'a') + "\r\n")));
  auto r = c.read();
  REQUIRE(r);
  CHECK(r->status == 431);
  CHECK(r->header("connection") == "close");
  CHECK(c.closedByPeer());
}

TEST_CASE("oversized bodies get 413 and the connection closes", "[worker][http][limits]") {
  WorkerProcess w({"--max-body", "1K"});
  SECTION("declared by Content-Length") {
    HttpConn c(w.port());
    REQUIRE(c.send(postRequest("/v1/queues/q/jobs", std::string(5000, 'x'))));
    auto r = c.read();
    REQUIRE(r);
    CHECK(r->status == 413);
    CHECK(c.closedByPeer());
  }
  SECTION("sent chunked") {
    HttpConn c(w.port());
    std::string chunk(800, 'y');
    std::string req = "POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 3; ++i) req += "320\r\n" + chunk + "\r\n";
    req += "0\r\n\r\n";
    REQUIRE(c.send(req));
    auto r = c.read();
    REQUIRE(r);
    CHECK(r->status == 413);
    CHECK(c.closedByPeer());
  }
}

TEST_CASE("malformed requests get 400 and the connection closes", "[worker][http][limits]") {
  WorkerProcess w({});
  for (std::string bad : {"GARBAGE\r\n\r\n", "GET /health HTTP/9.9.9\r\n\r\n",
                          "GET http://example.com/ HTTP/1.1\r\nHost: x\r\n\r\n",
                          "POST /health HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
                          "GET /health HTTP/1.1\r\nBad Header\r\n\r\n"}) {
    HttpConn c(w.port());
    REQUIRE(c.send(bad));
    auto r = c.read();
    REQUIRE(r);
    CHECK(r->status == 400);
    CHECK(c.closedByPeer());
  }
}

TEST_CASE("a request not completed in time gets 408", "[worker][http][limits]") {
  WorkerProcess w({"--request-timeout", "300ms"});
  HttpConn c(w.port());
  REQUIRE(c.send("GET /health HTTP/1.1\r\nHost: x\r\n"));  // headers never end
  auto r = c.read(3s);
  REQUIRE(r);
  CHECK(r->status == 408);
  CHECK(c.closedByPeer());
}

TEST_CASE("idle keep-alive connections close after the keep-alive timeout", "[worker][http][limits]") {
  WorkerProcess w({"--keepalive-timeout", "300ms"});
  HttpConn c(w.port());
  REQUIRE(c.send(getRequest("/health")));
  REQUIRE(c.read());
  auto t0 = std::chrono::steady_clock::now();
  CHECK(c.closedByPeer(5s));
  CHECK(std::chrono::steady_clock::now() - t0 >= 250ms);
}

TEST_CASE("connections past max-connections get 503", "[worker][http][limits]") {
  WorkerProcess w({"--max-connections", "3"});
  std::vector<std::unique_ptr<HttpConn>> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(std::make_unique<HttpConn>(w.port()));
    REQUIRE(held.back()->send(getRequest("/health")));
    REQUIRE(held.back()->read());
  }
  HttpConn extra(w.port());
  auto r = extra.read();
  REQUIRE(r);
  CHECK(r->status == 503);
  CHECK(r->header("retry-after") == "1");
  CHECK(extra.closedByPeer());
  held.pop_back();
  // A slot frees up once a client leaves.
  CHECK(waitFor([&] {
    auto ok = httpGet(w.port(), "/health");
    return ok && ok->status == 200;
  }));
}

TEST_CASE("random and truncated input never crashes the worker", "[worker][http][limits]") {
  WorkerProcess w({"--request-timeout", "200ms"});
  std::mt19937 rng(12345);
  const std::vector<std::string> seeds = {
      getRequest("/health"), postRequest("/v1/queues/q/jobs", "{\"name\":\"x\"}"),
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n"};
  for (int i = 0; i < 150; ++i) {
    std::string s = seeds[static_cast<size_t>(i) % seeds.size()];
    int edits = 1 + static_cast<int>(rng() % 6);
    for (int e = 0; e < edits; ++e) {
      size_t pos = rng() % s.size();
      switch (rng() % 3) {
        case 0: s[pos] = static_cast<char>(rng() % 256); break;
        case 1: s.erase(pos, 1 + rng() % 4); break;
        default: s.insert(pos, std::string(1 + rng() % 3, static_cast<char>(rng() % 256))); break;
      }
      if (s.empty()) s.assign(1, 'x');
    }
    HttpConn c(w.port());
    if (!c.connected()) continue;
    c.send(s);
    if (i % 2 == 0) c.closedByPeer(50ms);  // sometimes hang up early
  }
  REQUIRE(w.child().running());
  auto r = httpGet(w.port(), "/health");
  REQUIRE(r);
  CHECK(r->status == 200);
}

TEST_CASE("the --access-log flag writes one JSON line per request to stdout", "[worker][http]") {
  WorkerProcess w({"--access-log", "--name", "edge"});
  REQUIRE(httpGet(w.port(), "/health?probe=1", "User-Agent: checker/1.0\r\n"));
  REQUIRE(httpGet(w.port(), "/nope"));
  std::vector<nlohmann::json> lines;
  // Lines are flushed within the 100 ms loop-lag tick.
  REQUIRE(waitFor([&] {
    lines.clear();
    std::string log = w.log();
    size_t pos = 0;
    while ((pos = log.find("{\"", pos)) != std::string::npos) {
      size_t end = log.find('\n', pos);
      auto j = nlohmann::json::parse(log.substr(pos, end - pos), nullptr, false);
      if (!j.is_discarded() && j.contains("status")) lines.push_back(j);
      pos = end;
    }
    return lines.size() >= 3;  // /metrics from start-up, /health, /nope
  }, 5s));
  const nlohmann::json* health = nullptr;
  const nlohmann::json* nope = nullptr;
  for (const auto& j : lines) {
    if (j["path"] == "/health?probe=1") health = &j;
    if (j["path"] == "/nope") nope = &j;
  }
  REQUIRE(health);
  REQUIRE(nope);
  CHECK((*health)["status"] == 200);
  CHECK((*health)["method"] == "GET");
  CHECK((*health)["app"] == "edge");
  CHECK((*health)["ip"] == "127.0.0.1");
  CHECK((*health)["ua"] == "checker/1.0");
  CHECK((*health)["bytes"].get<int>() > 0);
  CHECK((*health)["ms"].is_number());
  CHECK((*nope)["status"] == 404);
}

}  // namespace worker_http_test
