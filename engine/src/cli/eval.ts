// `reshoot eval`: the quality and cost of every method combination, measured (docs/QUALITY.md explains each figure).
import * as path from 'node:path';
import { runEvaluation } from '../eval/run-eval';
import type { SuiteName } from '../eval/suite';
import { CliError, intOption, parse } from './args';

const USAGE = `usage: reshoot eval [--suite synthetic|large|tiny] [--out DIR] [--json] [--no-rss] [--clip-model DIR]
       reshoot eval --clip FILE --prompt "…" [--source-prompt "…"] [--in S] [--frames N] [--out DIR] [--json]
options: [--methods ID,ID] [--steps N] [--batch N] [--model DIR] [--threads N]
         [--rss-short S] [--rss-long S] [--rss-fps N] [--rss-steps N] [--date YYYY-MM-DD]`;

function seconds(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n <= 0)
    throw new CliError(`--${name} must be a positive number of seconds, got "${v}"`);
  return n;
}

function startSeconds(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < 0) throw new CliError(`--in must be 0 or more seconds, got "${v}"`);
  return n;
}

export async function runEval(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    suite: { type: 'string' },
    clip: { type: 'string' },
    prompt: { type: 'string', short: 'p' },
    'source-prompt': { type: 'string' },
    in: { type: 'string' },
    frames: { type: 'string' },
    out: { type: 'string', short: 'o' },
    json: { type: 'boolean' },
    'no-rss': { type: 'boolean' },
    'rss-short': { type: 'string' },
    'rss-long': { type: 'string' },
    'rss-fps': { type: 'string' },
    'rss-steps': { type: 'string' },
    'clip-model': { type: 'string' },
    methods: { type: 'string' },
    steps: { type: 'string' },
    batch: { type: 'string' },
    model: { type: 'string' },
    threads: { type: 'string' },
    date: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const suite = (values.suite ?? 'synthetic') as SuiteName;
  if (!['synthetic', 'large', 'tiny'].includes(suite))
    throw new CliError(`--suite must be synthetic, large or tiny, got "${values.suite}"\n${USAGE}`);
  if (values.clip && !values.prompt)
    throw new CliError(`--clip needs --prompt (what the clip should become)\n${USAGE}`);
  if (values.date && !/^\d{4}-\d{2}-\d{2}$/.test(values.date))
    throw new CliError(`--date must be YYYY-MM-DD, got "${values.date}"`);
  const json = Boolean(values.json);
  const outDir = path.resolve(values.out ?? (values.clip ? 'reshoot-eval-clip' : `reshoot-eval-${suite}`));
  const command = ['reshoot', 'eval', ...argv].map((a) => (/[\s"']/.test(a) ? JSON.stringify(a) : a)).join(' ');
  const report = await runEvaluation({
    suite,
    clipFile: values.clip,
    prompt: values.prompt,
    sourcePrompt: values['source-prompt'],
    startSec: values.in === undefined ? undefined : startSeconds(values.in),
    frames: values.frames === undefined ? undefined : intOption(values.frames, 'frames', 16, 2, 1000),
    outDir,
    modelDir: values.model,
    // A real clip has no synthetic long/short pair to compare; the memory probe belongs to the suite.
    rss:
      values['no-rss'] || values.clip
        ? false
        : {
            shortSec: seconds(values['rss-short'], 'rss-short'),
            longSec: seconds(values['rss-long'], 'rss-long'),
            fps: values['rss-fps'] === undefined ? undefined : intOption(values['rss-fps'], 'rss-fps', 12, 1, 120),
            steps:
              values['rss-steps'] === undefined ? undefined : intOption(values['rss-steps'], 'rss-steps', 4, 1, 200),
          },
    clipModel: values['clip-model'],
    methods: values.methods
      ?.split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    steps: values.steps === undefined ? undefined : intOption(values.steps, 'steps', 50, 1, 200),
    batchSize: values.batch === undefined ? undefined : intOption(values.batch, 'batch', 8, 1, 64),
    threads: values.threads === undefined ? undefined : intOption(values.threads, 'threads', 1, 1, 256),
    command,
    date: values.date,
    log: (line) => console.error(line),
  });
  if (json) console.log(JSON.stringify(report));
  else {
    const s = report.summary;
    console.log(`wrote ${path.join(outDir, 'report.md')}, report.json and ${report.pictures.length} pictures`);
    console.log(
      `default method: round trip ${s.roundTripPsnr} dB, auto-mask IoU ${s.autoMaskIoU}, background ${s.backgroundPsnr} dB, warp error ratio ${s.warpErrorRatio}, peak RSS ratio ${s.peakRssRatio}`,
    );
  }
  return 0;
}
