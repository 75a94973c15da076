// chain.js: spends its time in hot(), called through level3() <- level2()
// <- level1() <- the script's loop, until it has used ARGV[2] seconds of CPU
// (CPU, not wall time: on a busy machine the samples still come). Run with
// --perf-basic-prof (V8 writes /tmp/perf-PID.map) and --no-turbo-inlining,
// so that each function keeps its own frame.
function hot(n) {
  let x = 0;
  for (let i = 0; i < n; i++) x = (x * 31 + i) | 0;
  return x;
}
function level3(n) { return hot(n) + 1; }
function level2(n) { return level3(n) * 3; }
function level1(n) { return level2(n) + 7; }
const budget = 1e6 * Number(process.argv[2] || 3); // microseconds
const cpu = () => { const u = process.cpuUsage(); return u.user + u.system; };
let sink = 0;
while (cpu() < budget) sink += level1(100000);
console.log(sink);
