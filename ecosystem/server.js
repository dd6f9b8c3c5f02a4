// A minimal HTTP app for ecosystem.config.json. Under clusterd in cluster
// mode it serves on the socket the master passes as fd 3 (LISTEN_FDS=1);
// run alone (`node server.js --port 3000`) it binds the port itself.
const http = require("http");

const portArg = process.argv.indexOf("--port");
const port = portArg > 0 ? Number(process.argv[portArg + 1]) : 3000;
const instance = process.env.CLUSTERD_INSTANCE || process.env.NODE_APP_INSTANCE || "0";

const server = http.createServer((req, res) => {
  res.setHeader("content-type", "text/plain");
  res.end(`hello from instance ${instance}\n`);
});

const inherited = process.env.LISTEN_FDS === "1" &&
  (!process.env.LISTEN_PID || Number(process.env.LISTEN_PID) === process.pid);
server.listen(inherited ? { fd: 3 } : { port, host: "127.0.0.1" });

process.on("SIGTERM", () => server.close(() => process.exit(0)));
