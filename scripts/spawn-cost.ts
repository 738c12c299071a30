// How long spawning a child process blocks Node's main thread, by the parent's resident memory. Why the engine forks
// its short runs from a small helper (engine/src/media/short-run-host.ts); figures in docs/BENCHMARKS.md.
//   node dist/scripts/spawn-cost.js [MB ...]      (default: 0 600 2000)
import { spawn } from 'node:child_process';

async function measure(mb: number): Promise<string> {
  const held: Buffer[] = [];
  for (let i = 0; i < mb; i++) held.push(Buffer.alloc(1 << 20, 1));
  const times: number[] = [];
  for (let i = 0; i < 30; i++) {
    const t = performance.now();
    const child = spawn('/bin/true');
    times.push(performance.now() - t);
    await new Promise((resolve) => child.once('exit', resolve));
  }
  times.sort((a, b) => a - b);
  const rss = Math.round(process.memoryUsage().rss / 2 ** 20);
  held.length = 0;
  return `resident ${rss} MB: spawn blocks p50 ${times[15].toFixed(1)} ms, max ${times[29].toFixed(1)} ms`;
}

async function main(): Promise<void> {
  const sizes = process.argv.slice(2).map(Number);
  for (const mb of sizes.length ? sizes : [0, 600, 2000]) console.log(await measure(mb));
}

void main();
