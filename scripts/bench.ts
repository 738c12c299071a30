// `npm run bench`: the engine benchmark (docs/BENCHMARKS.md), the same as `reshoot bench`.
// Usage: node dist/scripts/bench.js [--json] [--out FILE] [--sections LIST] [--unet-calls] [--unet-only] [--threads N]
import { runBenchCommand } from '../engine/src/cli/bench';

runBenchCommand(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exitCode = 1;
  },
);
