// The Node worker of the master benchmarks, run unchanged under clusterd and
// PM2: GET /pid answers the worker's pid, anything else "ok". Under clusterd
// it serves the inherited socket (fd 3, LISTEN_FDS); under PM2 it listens on
// $PORT through Node's cluster module. On SIGINT (PM2) or SIGTERM (clusterd)
// it drains: stops accepting, answers each keep-alive connection's next
// request with "Connection: close", exits when all are gone (at most 1.2 s).
// With DRAIN=0 it exits at once instead, like a server without a handler.
const http = require('http');
let closing = false;
const server = http.createServer((req, res) => {
  if (closing) res.setHeader('Connection', 'close');
  if (req.url === '/pid') return res.end(String(process.pid));
  res.end('ok');
});
if (process.env.LISTEN_FDS) server.listen({ fd: 3 });
else server.listen(+process.env.PORT || 8391, '127.0.0.1');
function drain() {
  if (process.env.DRAIN === '0') process.exit(0);
  closing = true;
  server.closeIdleConnections = () => {};
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1200).unref();
}
process.on('SIGINT', drain);
process.on('SIGTERM', drain);
