// The persistent command of bench/commands_vs_bullmq.sh: one job per line on
// stdin, one answer per line on stdout (docs/QUEUE.md), the same trivial work
// as the BullMQ processor: one log line.
const readline = require('readline');
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const job = JSON.parse(line);
  process.stderr.write(`job ${job.id}\n`);
  process.stdout.write('{"result": null}\n');
});
rl.on('close', () => process.exit(0));
