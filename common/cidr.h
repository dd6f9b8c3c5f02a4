// IP addresses and CIDR blocks, for the trusted-proxy list of the built-in
// worker: parsed once when the settings are read, then matched against each
// connection's peer address and the X-Forwarded-For entries.
//
// Design: every address is kept as 16 bytes, an IPv4 address as its
// IPv4-mapped IPv6 form (::ffff:a.b.c.d), so one comparison serves both
// families and a dual-stack socket's mapped peers match IPv4 blocks.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace clusterd {

using IpBytes = std::array<uint8_t, 16>;

// "10.1.2.3", "::1", "::ffff:10.1.2.3"; nullopt when not an address.
std::optional<IpBytes> parseIp(std::string_view text);

struct Cidr {
  IpBytes addr{};
  int bits = 128;  // prefix length over the 16 bytes (an IPv4 /8 is 104)
  bool contains(const IpBytes& ip) const;
};

// "10.0.0.0/8", "fd00::/8", or one address ("127.0.0.1" = /32); nullopt
// when malformed (the prefix past the family's width included).
std::optional<Cidr> parseCidr(std::string_view text);

bool anyContains(const std::vector<Cidr>& blocks, std::string_view ip);

}  // namespace clusterd
