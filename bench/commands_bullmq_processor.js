// The sandboxed processor of bench/commands_bullmq.js: the same trivial work
// as the clusterd commands of bench/commands_vs_bullmq.sh, one log line.
module.exports = async (job) => {
  process.stderr.write(`job ${job.id}\n`);
};
