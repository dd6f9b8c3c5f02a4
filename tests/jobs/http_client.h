// A small HTTP load client for the end-to-end tests, on libcurl's multi
// interface: runs many requests over a bounded number of concurrent
// connections and returns every status and body.
#pragma once

#include <curl/curl.h>

#include <array>
#include <chrono>
#include <string>
#include <vector>

namespace clusterd::test {

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  std::string body;  // sent as application/json when not empty
};

struct HttpResponse {
  long status = 0;  // 0 = no answer (connection refused, reset, timeout)
  std::string body;
  std::string error;
};

// Runs the requests, at most `concurrency` at a time, each with `timeout`.
inline std::vector<HttpResponse> httpRun(const std::vector<HttpRequest>& requests, int concurrency,
                                         std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  std::vector<HttpResponse> out(requests.size());
  std::vector<CURL*> easies(requests.size(), nullptr);
  std::vector<std::array<char, CURL_ERROR_SIZE>> errors(requests.size());
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  CURLM* multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, static_cast<long>(concurrency));
  auto write = +[](char* p, size_t s, size_t n, void* ud) {
    static_cast<std::string*>(ud)->append(p, s * n);
    return s * n;
  };
  size_t next = 0, running_total = 0;
  auto add = [&](size_t i) {
    CURL* e = curl_easy_init();
    easies[i] = e;
    errors[i][0] = 0;
    curl_easy_setopt(e, CURLOPT_URL, requests[i].url.c_str());
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, requests[i].method.c_str());
    if (!requests[i].body.empty()) {
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, requests[i].body.c_str());
      curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
    }
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &out[i].body);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errors[i].data());
    curl_easy_setopt(e, CURLOPT_PRIVATE, reinterpret_cast<void*>(i));
    curl_multi_add_handle(multi, e);
    ++running_total;
  };
  while (next < requests.size() && running_total < static_cast<size_t>(concurrency)) add(next++);
  while (running_total > 0) {
    int still = 0;
    curl_multi_perform(multi, &still);
    int left = 0;
    while (CURLMsg* m = curl_multi_info_read(multi, &left)) {
      if (m->msg != CURLMSG_DONE) continue;
      void* priv = nullptr;
      curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
      size_t i = reinterpret_cast<size_t>(priv);
      if (m->data.result == CURLE_OK) {
        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &out[i].status);
      } else {
        out[i].error = errors[i][0] ? errors[i].data() : curl_easy_strerror(m->data.result);
      }
      curl_multi_remove_handle(multi, m->easy_handle);
      curl_easy_cleanup(m->easy_handle);
      --running_total;
      if (next < requests.size()) add(next++);
    }
    if (running_total > 0) curl_multi_poll(multi, nullptr, 0, 100, nullptr);
  }
  curl_multi_cleanup(multi);
  curl_slist_free_all(headers);
  return out;
}

}  // namespace clusterd::test
