// BullMQ's sandboxed processor for bench/commands_vs_bullmq.sh: a Worker whose
// processor is a file (BullMQ runs it in child processes it keeps, one per
// job running at once), draining N jobs that each log one line.
//   node commands_bullmq.js N CONCURRENCY     (env REDIS_PORT; NODE_PATH has bullmq)
// Prints one line of JSON: {"jobs": N, "secs": S, "jobs_per_s": R}.
const path = require('path');
const { Queue, Worker } = require('bullmq');

const N = +process.argv[2] || 2000;
const CONC = +process.argv[3] || 16;
const connection = { host: '127.0.0.1', port: +process.env.REDIS_PORT || 6397, maxRetriesPerRequest: null };

(async () => {
  const queue = new Queue('cmdbench', { connection });
  await queue.waitUntilReady();
  let completed = 0;
  let t0 = 0;
  const finished = new Promise((resolve) => {
    const worker = new Worker('cmdbench', path.join(__dirname, 'commands_bullmq_processor.js'), {
      connection, concurrency: CONC, useWorkerThreads: false,
    });
    worker.on('completed', () => { if (++completed === N) resolve(worker); });
    worker.on('failed', (job, err) => { console.error('failed', job && job.id, String(err)); });
  });
  t0 = performance.now();
  for (let b = 0; b < N; b += 1000) {
    const jobs = [];
    for (let i = b; i < Math.min(N, b + 1000); i++) jobs.push({ name: 'log', data: { n: i } });
    await queue.addBulk(jobs);
  }
  const worker = await finished;
  const secs = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ jobs: N, secs: +secs.toFixed(3), jobs_per_s: Math.round(N / secs) }));
  await worker.close();
  await queue.close();
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
