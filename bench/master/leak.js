// Leaking Node worker for the memory-limit benchmark: retains LEAK_MB MiB
// every LEAK_MS ms (20 MB/s by default, like the PM2 baseline's leak.js).
const http = require('http');
const MB = +process.env.LEAK_MB || 10, MS = +process.env.LEAK_MS || 500;
const hoard = [];
setInterval(() => { hoard.push(Buffer.alloc(MB * 1048576, 1)); }, MS);
const server = http.createServer((req, res) => res.end(String(process.pid)));
if (process.env.LISTEN_FDS) server.listen({ fd: 3 });
else server.listen(+process.env.PORT || 8392, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
