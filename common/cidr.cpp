// Implementation of common/cidr.h.
#include "common/cidr.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>
#include <string>

namespace clusterd {

std::optional<IpBytes> parseIp(std::string_view text) {
  if (text.empty() || text.size() > 64) return std::nullopt;
  std::string s(text);
  IpBytes out{};
  in_addr v4{};
  if (inet_pton(AF_INET, s.c_str(), &v4) == 1) {
    out[10] = 0xff;
    out[11] = 0xff;
    std::memcpy(&out[12], &v4, 4);
    return out;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, s.c_str(), &v6) == 1) {
    std::memcpy(out.data(), &v6, 16);
    return out;
  }
  return std::nullopt;
}

bool Cidr::contains(const IpBytes& ip) const {
  int full = bits / 8, rest = bits % 8;
  for (int i = 0; i < full; ++i)
    if (ip[i] != addr[i]) return false;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (ip[full] & mask) == (addr[full] & mask);
}

std::optional<Cidr> parseCidr(std::string_view text) {
  size_t slash = text.find('/');
  auto ip = parseIp(text.substr(0, slash));
  if (!ip) return std::nullopt;
  bool v4 = text.substr(0, slash).find(':') == std::string_view::npos;
  Cidr c{*ip, 128};
  if (slash != std::string_view::npos) {
    std::string_view p = text.substr(slash + 1);
    int bits = -1;
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), bits);
    if (p.empty() || ec != std::errc() || end != p.data() + p.size() || bits < 0 ||
        bits > (v4 ? 32 : 128))
      return std::nullopt;
    c.bits = v4 ? 96 + bits : bits;
  }
  return c;
}

bool anyContains(const std::vector<Cidr>& blocks, std::string_view ip) {
  if (blocks.empty()) return false;
  auto bytes = parseIp(ip);
  if (!bytes) return false;
  for (const Cidr& c : blocks)
    if (c.contains(*bytes)) return true;
  return false;
}

}  // namespace clusterd
