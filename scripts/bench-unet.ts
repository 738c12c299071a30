// Per-UNet-call time of the generated models (the same section as `node dist/scripts/bench.js --unet-only`).
// Usage: node dist/scripts/bench-unet.js [--runs N] [--json]
import * as os from 'node:os';
import { parseArgs } from 'node:util';
import { benchUnetCalls, formatUnetCalls } from '../engine/src/bench/unet-calls';

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { runs: { type: 'string' }, json: { type: 'boolean' } } });
  const runs = Number(values.runs ?? 10);
  const cases = await benchUnetCalls(runs);
  const machine = `${os.cpus()[0]?.model ?? 'cpu'} ×${os.availableParallelism()}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}`;
  if (values.json) {
    console.log(JSON.stringify({ machine, runs, cases }, null, 2));
    return;
  }
  console.log(`${formatUnetCalls(cases, runs)}\n${machine}`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
