// The client address of a request that came through trusted proxies
// (`http.trusted_proxies`). Internal to the worker module.
//
// Design: each proxy appends the address it received the request from to
// X-Forwarded-For, so the header reads "client, proxy1, proxy2" and only
// its right end was written by proxies we trust; anything further left may
// be the client's own invention. The walk goes from the right, skipping
// trusted proxies, and the first address that is not one is the client. A
// peer that is not a trusted proxy is the client itself, whatever the
// header says.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/cidr.h"
#include "worker/http.h"

namespace clusterd::worker {

// The client of `req` received from `peer`, a trusted proxy; every
// X-Forwarded-For header of the request counts, in order. When every entry
// is a trusted proxy, the leftmost is the client; with no usable entry, the
// peer is.
std::string forwardedClient(const Request& req, const std::string& peer,
                            const std::vector<Cidr>& trusted);

}  // namespace clusterd::worker
