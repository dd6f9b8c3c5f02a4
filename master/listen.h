// Listening sockets the master binds for cluster-mode apps and hands to
// workers as fd 3. The master never accepts on them.
//
// Design: a TCP app gets one SO_REUSEPORT socket per worker slot, all bound
// to the same address. The kernel spreads new connections across them by
// hash, and because the master keeps each slot's socket open, a worker that
// crashes or is replaced leaves its queued connections to its successor
// instead of resetting them. A Unix-socket app shares one socket.
#pragma once

#include <cstdint>
#include <string>

#include "common/result.h"
#include "common/uv_handle.h"
#include "config/spec.h"

namespace clusterd::master {

// Checks that nobody else listens on host:port (a plain bind without
// SO_REUSEPORT fails when anyone does) and returns the port to use, which
// differs from `port` only when `port` is 0.
Result<uint16_t> probeTcpPort(const std::string& host, uint16_t port, const std::string& text);

// A listening TCP socket with SO_REUSEPORT (close-on-exec).
Result<UniqueFd> bindTcpReusePort(const std::string& host, uint16_t port, const std::string& text);

// A listening Unix stream socket at `path`; a stale socket file with nobody
// listening is replaced, a live one is an error.
Result<UniqueFd> bindUnix(const std::string& path);

}  // namespace clusterd::master
