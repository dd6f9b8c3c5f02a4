// The peer of `POST /v1/queues/{queue}/jobs` for bench/worker_vs_nginx.sh:
// a plain Node http server that enqueues the posted job with BullMQ's
// Queue.add and answers 202 with the job id (run under PM2 cluster mode).
const http = require('http');
const { Queue } = require('bullmq');
const port = +process.env.PORT || 8394;
const connection = { host: '127.0.0.1', port: +process.env.REDIS_PORT || 6396, maxRetriesPerRequest: null };
const queues = new Map();
const queueFor = (name) => {
  if (!queues.has(name)) queues.set(name, new Queue(name, { connection }));
  return queues.get(name);
};
http.createServer((req, res) => {
  const m = /^\/v1\/queues\/([A-Za-z0-9_.-]+)\/jobs$/.exec(req.url);
  if (req.method !== 'POST' || !m) { res.statusCode = 404; return res.end(); }
  let body = '';
  req.on('data', (d) => { body += d; });
  req.on('end', () => {
    let job;
    try { job = JSON.parse(body); } catch { res.statusCode = 400; return res.end('{"error":"bad json"}'); }
    queueFor(m[1]).add(job.name, job.data).then((j) => {
      res.statusCode = 202;
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ id: j.id }));
    }, (e) => { res.statusCode = 503; res.end(JSON.stringify({ error: String(e) })); });
  });
}).listen(port, '127.0.0.1');
