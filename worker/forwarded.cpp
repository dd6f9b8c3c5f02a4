// Implementation of worker/forwarded.h.
#include "worker/forwarded.h"

#include "worker/text.h"

namespace clusterd::worker {
std::string forwardedClient(const Request& req, const std::string& peer,
                            const std::vector<Cidr>& trusted) {
  // The headers' entries, right to left: the last header first.
  std::string_view leftmost;
  for (size_t h = req.headerCount(); h-- > 0;) {
    auto [name, value] = req.headerAt(h);
    if (!equalsIgnoringCase(name, "x-forwarded-for")) continue;
    std::string_view rest = value;
    while (!rest.empty()) {
      size_t comma = rest.rfind(',');
      std::string_view entry =
          trimBlanks(comma == std::string_view::npos ? rest : rest.substr(comma + 1));
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(0, comma);
      auto ip = parseIp(entry);
      // A malformed entry is where trust ends: nothing left of it is
      // believed, and the last trusted hop is the client we know.
      if (!ip) return leftmost.empty() ? peer : std::string(leftmost);
      bool is_proxy = false;
      for (const Cidr& c : trusted) is_proxy = is_proxy || c.contains(*ip);
      if (!is_proxy) return std::string(entry);
      leftmost = entry;
    }
  }
  return leftmost.empty() ? peer : std::string(leftmost);
}

}  // namespace clusterd::worker
