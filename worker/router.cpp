// Route matching for worker::Router (see router.h for the rules).
#include "worker/router.h"

#include <array>
#include <cassert>

namespace clusterd::worker {
namespace {

constexpr size_t kMaxSegments = 32;

bool isParam(std::string_view seg) {
  return seg.size() >= 3 && seg.front() == '{' && seg.back() == '}';
}

// Splits "/a/b/c" into {"a","b","c"}; false when there are too many
// segments. A trailing slash yields a final empty segment, which no
// pattern matches (so "/health/" is 404 rather than /health).
bool splitPath(std::string_view path, std::array<std::string_view, kMaxSegments>& out,
               size_t& count) {
  count = 0;
  if (path.empty() || path[0] != '/') return false;
  size_t pos = 1;
  while (true) {
    if (count == kMaxSegments) return false;
    size_t slash = path.find('/', pos);
    if (slash == std::string_view::npos) {
      out[count++] = path.substr(pos);
      return true;
    }
    out[count++] = path.substr(pos, slash - pos);
    pos = slash + 1;
  }
}

}  // namespace

void Router::add(Method method, std::string_view pattern, Handler handler) {
  assert(!pattern.empty() && pattern[0] == '/');
  std::array<std::string_view, kMaxSegments> segs;
  size_t n = 0;
  bool ok = splitPath(pattern, segs, n);
  assert(ok);
  (void)ok;
  Route route{method, std::string(pattern), {}, std::move(handler)};
  for (size_t i = 0; i < n; ++i) {
    assert(!segs[i].empty() || (n == 1));  // only "/" may have an empty segment
    assert(segs[i].find('{') == std::string_view::npos || isParam(segs[i]));
    route.segments.emplace_back(segs[i]);
  }
  for (auto& r : routes_) {
    if (r.method == method && r.pattern == route.pattern) {
      r = std::move(route);
      return;
    }
  }
  routes_.push_back(std::move(route));
}

Router::Match Router::match(Method method, std::string_view path) const {
  Match m;
  std::array<std::string_view, kMaxSegments> segs;
  size_t n = 0;
  if (!splitPath(path, segs, n)) return m;

  // Among the routes whose pattern matches, prefer the one whose first
  // parameter segment comes latest (literals win position by position).
  auto specificity = [&](const Route& r) {
    size_t i = 0;
    while (i < r.segments.size() && !isParam(r.segments[i])) ++i;
    return i;
  };
  auto matches = [&](const Route& r) {
    if (r.segments.size() != n) return false;
    for (size_t i = 0; i < n; ++i) {
      const std::string& s = r.segments[i];
      if (isParam(s)) {
        if (segs[i].empty()) return false;
      } else if (s != segs[i]) {
        return false;
      }
    }
    return true;
  };

  int best = -1, best_get = -1;
  size_t best_spec = 0, best_get_spec = 0;
  for (size_t i = 0; i < routes_.size(); ++i) {
    const Route& r = routes_[i];
    if (!matches(r)) continue;
    m.path_known = true;
    size_t spec = specificity(r);
    if (r.method == method) {
      if (best < 0 || spec > best_spec) best = static_cast<int>(i), best_spec = spec;
    } else if (method == Method::kHead && r.method == Method::kGet) {
      if (best_get < 0 || spec > best_get_spec) best_get = static_cast<int>(i), best_get_spec = spec;
    }
  }
  if (best < 0) best = best_get;
  if (best < 0) {
    if (m.path_known) {
      for (const Route& r : routes_) {
        if (!matches(r)) continue;
        std::string_view name = methodName(r.method);
        if (m.allow.find(name) != std::string::npos) continue;
        if (!m.allow.empty()) m.allow += ", ";
        m.allow += name;
        if (r.method == Method::kGet && m.allow.find("HEAD") == std::string::npos) m.allow += ", HEAD";
      }
    }
    return m;
  }
  m.route = best;
  const Route& r = routes_[best];
  for (size_t i = 0; i < n; ++i) {
    const std::string& s = r.segments[i];
    if (isParam(s)) m.params.emplace_back(s.substr(1, s.size() - 2), std::string(segs[i]));
  }
  return m;
}

}  // namespace clusterd::worker
