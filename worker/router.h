// worker::Router: the built-in worker's route table. Modules register
// (method, path pattern) -> handler; the server matches each request, fills
// its path parameters and calls the handler with a Responder.
//
//   router.get("/v1/products/{sku}", [](const Request& req, Responder res) {
//     res.json(200, {{"sku", req.param("sku")}});
//   });
//
// Patterns are absolute paths whose segments are literals or `{name}`; a
// `{name}` matches one non-empty segment. Literal routes win over parameter
// routes at the same position regardless of registration order. A path that
// matches a route under another method answers 405 with `Allow`; no match
// answers 404. Rate limits (config `rate_limits`, by path prefix), bearer
// auth on `/v1/`, gzip, metrics and access logs apply to every route; the
// handler only deals with its own request.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "worker/http.h"

namespace clusterd::worker {

using Handler = std::function<void(const Request& req, Responder res)>;

class Router {
 public:
  struct Route {
    Method method;
    std::string pattern;  // as registered; also the `route` label in /metrics
    std::vector<std::string> segments;  // "{x}" kept as is
    Handler handler;
  };

  // Registers a route; a second registration of the same method and pattern
  // replaces the first. Asserts the pattern is well formed.
  void add(Method method, std::string_view pattern, Handler handler);
  void get(std::string_view pattern, Handler h) { add(Method::kGet, pattern, std::move(h)); }
  void post(std::string_view pattern, Handler h) { add(Method::kPost, pattern, std::move(h)); }
  void put(std::string_view pattern, Handler h) { add(Method::kPut, pattern, std::move(h)); }
  void patch(std::string_view pattern, Handler h) { add(Method::kPatch, pattern, std::move(h)); }
  void del(std::string_view pattern, Handler h) { add(Method::kDelete, pattern, std::move(h)); }

  struct Match {
    int route = -1;            // index into routes(); -1 = no route for this method
    bool path_known = false;   // some route matches the path under another method
    std::string allow;         // for 405: the methods that do match, comma-separated
    std::vector<std::pair<std::string, std::string>> params;
  };
  // HEAD falls back to a GET route.
  Match match(Method method, std::string_view path) const;

  const std::vector<Route>& routes() const { return routes_; }

 private:
  std::vector<Route> routes_;
};

}  // namespace clusterd::worker
