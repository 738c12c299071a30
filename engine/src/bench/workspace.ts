// Models and clips for the benchmark. Models are generated fresh into the run's folder (deterministic, < 1 s each,
// except sd15-shape: SD 1.5's sizes, 3.7 GB and ~2 min, made only when a case asks for it); clips are kept between
// runs under the bench folder, because the 1080p ones take a while to encode.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { renameIntoPlace } from '../config/atomic-rename';
import { ffmpegPath, makeTestClip, probeMedia, type Rational } from '../media';
import { lastLines, run } from '../media/process';
import { generateOracle } from '../models/generate/oracle';
import { SD15_SHAPE_VARIANT, generateSdBench, generateSdModel, generateTinySd } from '../models/generate/tiny-sd';

export const BENCH_MODELS = ['oracle', 'tiny-sd', 'sd-bench', 'sd15-shape', 'sd-turbo', 'lcm'] as const;
export type BenchModel = (typeof BENCH_MODELS)[number];

export function generateBenchModel(dir: string, name: BenchModel): string {
  const out = path.join(dir, name);
  if (fs.existsSync(path.join(out, 'model_index.json'))) return out;
  switch (name) {
    case 'oracle':
      generateOracle(out);
      break;
    case 'sd-bench':
      generateSdBench(out);
      break;
    case 'sd15-shape':
      generateSdModel(out, SD15_SHAPE_VARIANT);
      break;
    case 'tiny-sd':
      generateTinySd(out, 'optimum');
      break;
    default:
      generateTinySd(out, name);
  }
  return out;
}

export interface ClipSpec {
  width: number;
  height: number;
  fps: Rational;
  frames: number;
}

// Bumped when the clip content or encoding changes, so stale clips from older runs are not reused.
const CLIP_VERSION = 1;

function clipName(c: ClipSpec, suffix = ''): string {
  return `v${CLIP_VERSION}-${c.width}x${c.height}-${c.fps.num}_${c.fps.den}-${c.frames}f${suffix}.mp4`;
}

async function usable(file: string, frames: number): Promise<boolean> {
  if (!fs.existsSync(file)) return false;
  try {
    return (await probeMedia(file)).video.frameCount === frames;
  } catch {
    return false;
  }
}

/** An H.264 clip of a square moving over a gradient (makeTestClip), reused when a previous run made it. */
export async function ensureClip(dir: string, c: ClipSpec): Promise<string> {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, clipName(c));
  if (await usable(file, c.frames)) return file;
  const tmp = path.join(dir, `.partial-${process.pid}-${clipName(c)}`);
  await makeTestClip({
    file: tmp,
    width: c.width,
    height: c.height,
    fps: c.fps,
    frames: c.frames,
    codec: 'h264',
    content: 'moving-square',
  });
  await renameIntoPlace(tmp, file);
  return file;
}

/**
 * `times` copies of a clip back to back, by stream copy: a long clip in seconds instead of minutes of encoding, with
 * exactly the same content per second as the short one (what a memory comparison between the two wants).
 */
export async function ensureLoopedClip(dir: string, c: ClipSpec, times: number): Promise<string> {
  const base = await ensureClip(dir, c);
  const frames = c.frames * times;
  const file = path.join(dir, clipName({ ...c, frames }, '-looped'));
  if (await usable(file, frames)) return file;
  const tmp = path.join(dir, `.partial-${process.pid}-${path.basename(file)}`);
  const r = await run(ffmpegPath(), [
    '-nostdin',
    '-hide_banner',
    '-v',
    'error',
    '-y',
    '-stream_loop',
    String(times - 1),
    '-i',
    base,
    '-map',
    '0:v:0',
    '-c',
    'copy',
    '-movflags',
    '+faststart',
    tmp,
  ]);
  if (r.code !== 0 || !(await usable(tmp, frames))) {
    fs.rmSync(tmp, { force: true });
    if (r.code !== 0) throw new Error(`ffmpeg could not loop ${base}: ${lastLines(r.stderr)}`);
    // Some ffmpeg builds drop or duplicate a frame at the joins; encode the long clip directly then.
    return ensureClip(dir, { ...c, frames });
  }
  await renameIntoPlace(tmp, file);
  return file;
}
