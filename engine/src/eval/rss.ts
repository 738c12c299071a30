// Peak memory of a short and a long clip through the job runner, each in a fresh child process (a process's peak
// RSS only ever grows, so measuring both in one process would report the larger twice). The runner edits in chunks,
// so the two peaks should be about equal: the ratio is the evidence that clip length is bounded by time, not memory.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { makeTestClip } from '../media/test-clips';
import type { ProbeArgs, ProbeResult } from './rss-probe';

export interface RssOptions {
  modelDir: string;
  workDir: string;
  /** Clip durations in seconds; default 5 and 60. */
  shortSec?: number;
  longSec?: number;
  /**
   * Default 12: 5 s is 60 frames (4 chunks), 60 s is 720 (45). At 4 fps the 5-s clip is 1¼ chunks and ends before the
   * garbage collector and the allocator reach their steady state, which the peak then misses (docs/QUALITY.md).
   */
  fps?: number;
  /** DDIM steps of the job; default 2 (the figure is memory, not quality). */
  steps?: number;
  threads?: number;
}

export interface RssMeasurement {
  short: ProbeResult & { durationSec: number };
  long: ProbeResult & { durationSec: number };
  /** Long clip's peak RSS ÷ short clip's. */
  ratio: number;
  fps: number;
  width: number;
  height: number;
}

function probeScript(): string {
  // Under jest this module is TypeScript; the child needs the compiled JavaScript, like the compute worker.
  const own = __filename.endsWith('.ts')
    ? path.resolve(__dirname, '../../../dist/engine/src/eval/rss-probe.js')
    : path.join(__dirname, 'rss-probe.js');
  if (!fs.existsSync(own)) throw new Error(`${own} is missing; run \`npm run build\` first`);
  return own;
}

function runProbe(args: ProbeArgs): Promise<ProbeResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [probeScript(), JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const line = out.trim().split('\n').pop() ?? '';
      if (code !== 0 || !line.startsWith('{'))
        return reject(
          new Error(
            `peak-memory probe for ${args.input} failed (exit ${code}): ${err.trim().split('\n').slice(-3).join(' | ')}`,
          ),
        );
      resolve(JSON.parse(line) as ProbeResult);
    });
  });
}

export async function measurePeakRss(o: RssOptions): Promise<RssMeasurement> {
  const fps = o.fps ?? 12;
  const shortSec = o.shortSec ?? 5;
  const longSec = o.longSec ?? 60;
  const width = 160;
  const height = 120;
  fs.mkdirSync(o.workDir, { recursive: true });
  const measure = async (sec: number, name: string) => {
    const input = path.join(o.workDir, `${name}.mp4`);
    const frames = Math.round(sec * fps);
    // An orange square crossing a blue gradient; the oracle reads the square as the object.
    await makeTestClip({
      file: input,
      width,
      height,
      fps: { num: fps, den: 1 },
      frames,
      codec: 'h264',
      content: 'moving-square',
    });
    const r = await runProbe({
      input,
      output: path.join(o.workDir, `${name}.out.mp4`),
      modelDir: o.modelDir,
      prompt: 'a green box on a blue road',
      sourcePrompt: 'an orange box on a blue road',
      steps: o.steps ?? 2,
      durationSec: frames / fps,
      threads: o.threads,
    });
    return { ...r, durationSec: frames / fps };
  };
  const short = await measure(shortSec, `rss-${shortSec}s`);
  const long = await measure(longSec, `rss-${longSec}s`);
  return { short, long, ratio: long.maxRssKiB / short.maxRssKiB, fps, width, height };
}
