// Checks that span apps (unique names, no two apps on one address or
// health port, the `--env` name exists), `listen` parsing, `instances`
// resolution and path normalisation.
#include <fmt/format.h>

#include <arpa/inet.h>
#include <grp.h>
#include <pwd.h>
#include <sys/un.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "config/internal.h"

namespace clusterd::config {
namespace {

bool isWildcard(const std::string& host) {
  return host == "0.0.0.0" || host == "::";
}

bool sameFamily(const std::string& a, const std::string& b) {
  return (a.find(':') != std::string::npos) == (b.find(':') != std::string::npos);
}

// Two TCP hosts overlap when they are the same address, or either is the
// wildcard of the same family (the kernel would refuse the second bind).
// [::] also covers IPv4 on Linux by default.
bool hostsOverlap(const std::string& a, const std::string& b) {
  if (a == b) return true;
  if (a == "::" || b == "::") return true;
  return (isWildcard(a) || isWildcard(b)) && sameFamily(a, b);
}

// Two addresses collide when the ports match and the hosts overlap, or when
// they are the same Unix socket path.
bool overlaps(const ListenAddress& a, const ListenAddress& b) {
  if (a.kind != b.kind) return false;
  if (a.kind == ListenAddress::Kind::kUnix) return a.path == b.path;
  return a.port == b.port && hostsOverlap(a.host, b.host);
}

// The ports an app's instances take on its `health_listen`: base to
// base + instances - 1 (may pass 65535; checkHealthListen reports that).
struct PortRange {
  int first = 0;
  int last = 0;
  std::string text() const {
    return first == last ? std::to_string(first) : fmt::format("{}-{}", first, last);
  }
  bool contains(int port) const { return port >= first && port <= last; }
  bool overlaps(const PortRange& o) const { return first <= o.last && o.first <= last; }
};

PortRange healthPorts(const AppSpec& s) {
  int base = s.worker.health_listen->port;
  return {base, base + std::max(1, s.instances) - 1};
}

// `health_listen` once `instances` is resolved: the instances' ports stay
// within 65535 and collide with no app's `listen` (its own included) and
// no other app's health ports. SO_REUSEPORT would not refuse such a second
// bind, and the kernel would split one port between two programs.
void checkHealthListen(Reader& r, const std::vector<AppDraft>& drafts) {
  for (size_t i = 0; i < drafts.size(); ++i) {
    const AppSpec& s = drafts[i].spec;
    if (!s.builtin_worker || !s.worker.health_listen) continue;
    const ListenAddress& h = *s.worker.health_listen;
    const std::string field = drafts[i].path + ".health_listen";
    const YAML::Mark& at = drafts[i].health_listen_at;
    PortRange mine = healthPorts(s);
    if (mine.last > 65535) {
      r.error(at, field,
              fmt::format("instance N of `{}` listens on port {} + N, so its {} instances need "
                          "ports {}, past 65535; lower the base port",
                          s.name, mine.first, s.instances, mine.text()));
      continue;
    }
    for (size_t j = 0; j < drafts.size(); ++j) {
      const AppSpec& o = drafts[j].spec;
      if (!o.listen || o.listen->kind != ListenAddress::Kind::kTcp) continue;
      if (!mine.contains(o.listen->port) || !hostsOverlap(h.host, o.listen->host)) continue;
      r.error(at, field,
              fmt::format("the health ports of `{}` ({} on {}, one per instance) take `{}`, the "
                          "`listen` of app `{}` ({}.listen at line {}); move the base port",
                          s.name, mine.text(), h.host, o.listen->text, o.name, drafts[j].path,
                          drafts[j].listen_at.line + 1));
    }
    for (size_t j = 0; j < i; ++j) {
      const AppSpec& o = drafts[j].spec;
      if (!o.builtin_worker || !o.worker.health_listen ||
          !hostsOverlap(h.host, o.worker.health_listen->host))
        continue;
      PortRange theirs = healthPorts(o);
      if (!mine.overlaps(theirs)) continue;
      r.error(at, field,
              fmt::format("the health ports of `{}` ({} on {}, one per instance) overlap those of "
                          "app `{}` ({} on {}; {}.health_listen at line {}); give each app its "
                          "own range",
                          s.name, mine.text(), h.host, o.name, theirs.text(),
                          o.worker.health_listen->host, drafts[j].path,
                          drafts[j].health_listen_at.line + 1));
    }
  }
}

bool isNumber(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

}  // namespace

std::string absolutePath(const std::string& path, const std::string& base) {
  std::filesystem::path p(path);
  if (p.is_relative()) p = std::filesystem::path(base) / p;
  return p.lexically_normal().string();
}

std::optional<ListenAddress> parseListen(const std::string& text, const std::string& base_dir,
                                         std::string& error) {
  ListenAddress addr;
  addr.text = text;
  std::string t = text;
  bool unix_form = false;
  if (t.rfind("unix:", 0) == 0) {
    t = t.substr(5);
    unix_form = true;
  }
  if (unix_form || t.find('/') != std::string::npos) {
    if (t.empty()) {
      error = "expected a Unix socket path after `unix:`";
      return std::nullopt;
    }
    addr.kind = ListenAddress::Kind::kUnix;
    addr.path = absolutePath(t, base_dir);
    if (addr.path.size() >= sizeof(sockaddr_un{}.sun_path)) {
      error =
          fmt::format("the Unix socket path {} is {} bytes; the limit is {} (use a shorter path)",
                      addr.path, addr.path.size(), sizeof(sockaddr_un{}.sun_path) - 1);
      return std::nullopt;
    }
    return addr;
  }
  size_t colon = t.rfind(':');
  if (colon == std::string::npos) {
    error = fmt::format(
        "expected `host:port` (e.g. 127.0.0.1:{0} or 0.0.0.0:{0}) or a Unix socket path, got `{1}`",
        isNumber(t) ? t : "8080", text);
    return std::nullopt;
  }
  std::string host = t.substr(0, colon);
  std::string port = t.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host == "localhost") host = "127.0.0.1";
  if (host == "*") host = "0.0.0.0";
  unsigned char buf[sizeof(in6_addr)];
  bool v4 = inet_pton(AF_INET, host.c_str(), buf) == 1;
  bool v6 = !v4 && inet_pton(AF_INET6, host.c_str(), buf) == 1;
  if (!v4 && !v6) {
    error = fmt::format(
        "`{}` is not an IP address: use an IPv4 or [IPv6] address, `localhost` or `*`, in `{}`",
        host, text);
    return std::nullopt;
  }
  if (v6 && t.front() != '[') {
    error = fmt::format("write an IPv6 address in brackets: [{}]:{}", host, port);
    return std::nullopt;
  }
  if (!isNumber(port) || port.size() > 5 || std::stoi(port) < 1 || std::stoi(port) > 65535) {
    error = fmt::format("expected a port from 1 to 65535 in `{}`", text);
    return std::nullopt;
  }
  addr.kind = ListenAddress::Kind::kTcp;
  addr.host = host;
  addr.port = static_cast<uint16_t>(std::stoi(port));
  return addr;
}

void checkApps(Reader& r, std::vector<AppDraft>& drafts, const LoadOptions& options, int cores) {
  std::map<std::string, const AppDraft*> names;
  for (const auto& d : drafts) {
    const std::string& name = d.spec.name;
    if (name.empty()) continue;
    auto [it, inserted] = names.emplace(name, &d);
    if (!inserted) {
      r.error(d.has_name ? d.name_at : d.at, d.path + ".name",
              fmt::format("duplicate app name `{}` (also {} at line {}); app names must be unique",
                          name, it->second->path, it->second->at.line + 1));
    }
  }
  for (size_t i = 0; i < drafts.size(); ++i) {
    if (!drafts[i].spec.listen) continue;
    for (size_t j = 0; j < i; ++j) {
      if (!drafts[j].spec.listen || !overlaps(*drafts[i].spec.listen, *drafts[j].spec.listen))
        continue;
      r.error(drafts[i].listen_at, drafts[i].path + ".listen",
              fmt::format("`{}` is already taken by app `{}` ({}.listen at line {}); give each app "
                          "its own port or path",
                          drafts[i].spec.listen->text, drafts[j].spec.name, drafts[j].path,
                          drafts[j].listen_at.line + 1));
      break;
    }
  }
  if (!options.env_name.empty()) {
    bool any = false;
    for (const auto& d : drafts) any = any || d.defines_selected_env;
    if (!any) {
      r.error(YAML::Mark::null_mark(), "--env",
              fmt::format(
                  "no app defines env_{}; check the name (--env {} selects each app's `env_{}`)",
                  options.env_name, options.env_name, options.env_name));
    }
  }
  for (auto& d : drafts) {
    AppSpec& s = d.spec;
    if (d.instances_max) {
      s.instances = cores;
    } else if (d.instances) {
      s.instances = *d.instances == -1 ? std::max(1, cores - 1) : static_cast<int>(*d.instances);
    }
    if (s.instances_text.empty()) s.instances_text = std::to_string(s.instances);
    // A user or group unknown here is only a warning: the file may be
    // checked on a machine other than the one that runs it.
    if (!s.uid.empty() && !isNumber(s.uid) && getpwnam(s.uid.c_str()) == nullptr) {
      r.warning(d.uid_at, d.path + ".uid", fmt::format("no user `{}` on this machine", s.uid));
    }
    if (!s.gid.empty() && !isNumber(s.gid) && getgrnam(s.gid.c_str()) == nullptr) {
      r.warning(d.gid_at, d.path + ".gid", fmt::format("no group `{}` on this machine", s.gid));
    }
  }
  checkHealthListen(r, drafts);
}

}  // namespace clusterd::config
