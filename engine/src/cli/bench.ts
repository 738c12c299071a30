// `reshoot bench`: the benchmark of docs/BENCHMARKS.md (the same code as `npm run bench`). The table goes to stdout,
// progress to stderr; --json prints one JSON document instead of the table.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { formatReport } from '../bench/report';
import { runBench, SECTIONS, type Section } from '../bench/run';
import { benchUnetCalls, formatUnetCalls } from '../bench/unet-calls';
import { CliError, intOption, parse } from './args';

export const BENCH_USAGE = `usage: reshoot bench [--json] [--out FILE] [--sections ${SECTIONS.join(',')}] [--unet-calls] [--unet-only [--runs N]]
                    [--threads N] [--dir DIR]`;

export async function runBenchCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    json: { type: 'boolean' },
    out: { type: 'string' },
    sections: { type: 'string' },
    'unet-calls': { type: 'boolean' },
    'unet-only': { type: 'boolean' },
    runs: { type: 'string' },
    threads: { type: 'string' },
    dir: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    console.log(BENCH_USAGE);
    return 0;
  }
  const runs = intOption(values.runs, 'runs', 10, 1, 1000);
  if (values['unet-only']) {
    const cases = await benchUnetCalls(runs);
    console.log(values.json ? JSON.stringify({ runs, cases }, null, 2) : formatUnetCalls(cases, runs));
    return 0;
  }
  const sections = (values.sections ?? SECTIONS.join(','))
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const s of sections) {
    if (!(SECTIONS as readonly string[]).includes(s))
      throw new CliError(`unknown section "${s}"; choose from ${SECTIONS.join(', ')}`);
  }
  const report = await runBench({
    dir: path.resolve(values.dir ?? path.join(os.tmpdir(), 'reshoot-bench')),
    sections: sections as Section[],
    unetCalls: values['unet-calls'] ?? false,
    unetRuns: runs,
    threads: values.threads ? intOption(values.threads, 'threads', 1, 1, 256) : undefined,
    log: (line) => console.error(line),
  });
  const json = JSON.stringify(report, null, 2);
  if (values.out) fs.writeFileSync(path.resolve(values.out), `${json}\n`);
  console.log(values.json ? json : formatReport(report));
  return 0;
}
