// Checks that span apps (unique names, no two apps on one address, the
// `--env` name exists), `listen` parsing, `instances` resolution and path
// normalisation.
#include <fmt/format.h>

#include <arpa/inet.h>
#include <grp.h>
#include <pwd.h>
#include <sys/un.h>

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

// Two TCP addresses collide when the ports match and the hosts overlap: the
// same address, or either is the wildcard of the same family (the kernel
// would refuse the second bind). [::] also covers IPv4 on Linux by default.
bool overlaps(const ListenAddress& a, const ListenAddress& b) {
  if (a.kind != b.kind) return false;
  if (a.kind == ListenAddress::Kind::kUnix) return a.path == b.path;
  if (a.port != b.port) return false;
  if (a.host == b.host) return true;
  if (a.host == "::" || b.host == "::") return true;
  return (isWildcard(a.host) || isWildcard(b.host)) && sameFamily(a.host, b.host);
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
}

}  // namespace clusterd::config
