// Whole jobs (probe → decode → edit with the oracle → encode) on clips of the shapes editors bring: the output has
// exactly the range's frame count, frame rate, frame size and duration, so it lines up on the timeline.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { JobRequest } from '../../engine/src/api/schemas';
import { planJob, runJob } from '../../engine/src/jobs/runner';
import { makeTestClip, probeMedia, type Rational } from '../../engine/src/media';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import { PipelineWorker } from '../../engine/src/worker/pipeline-worker';

let root: string;
let worker: PipelineWorker;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'roundtrip-'));
  generateOracle(path.join(root, 'oracle'));
  worker = await PipelineWorker.start(path.join(root, 'oracle'), { threads: 1 });
});

afterAll(async () => {
  await worker?.terminate();
  fs.rmSync(root, { recursive: true, force: true });
});

interface Case {
  name: string;
  width: number;
  height: number;
  fps: Rational;
  frames: number;
  codec: 'h264' | 'prores';
  rotation?: 0 | 90;
  audio?: boolean;
  outCodec: 'h264' | 'prores';
  range: [number, number];
  expectFrames: number;
  display: [number, number];
}

const cases: Case[] = [
  {
    name: '24 fps 1280x720 H.264',
    width: 1280,
    height: 720,
    fps: { num: 24, den: 1 },
    frames: 12,
    codec: 'h264',
    outCodec: 'h264',
    range: [0.125, 0.375],
    expectFrames: 6,
    display: [1280, 720],
  },
  {
    name: '25 fps 1920x1080 with audio carried',
    width: 1920,
    height: 1080,
    fps: { num: 25, den: 1 },
    frames: 8,
    codec: 'h264',
    audio: true,
    outCodec: 'h264',
    range: [0.04, 0.2],
    expectFrames: 4,
    display: [1920, 1080],
  },
  {
    name: '29.97 fps 720x1280 portrait (rotation metadata)',
    width: 1280,
    height: 720,
    rotation: 90,
    fps: { num: 30000, den: 1001 },
    frames: 12,
    codec: 'h264',
    outCodec: 'h264',
    range: [(3 * 1001) / 30000, (8 * 1001) / 30000],
    expectFrames: 5,
    display: [720, 1280],
  },
  {
    name: '10-bit ProRes 422 HQ in, ProRes out',
    width: 640,
    height: 360,
    fps: { num: 24000, den: 1001 },
    frames: 10,
    codec: 'prores',
    outCodec: 'prores',
    range: [0, 0.2],
    expectFrames: 5,
    display: [640, 360],
  },
];

it.each(cases)('$name', async (c) => {
  const src = path.join(root, `${c.name.replace(/[^a-z0-9]+/gi, '-')}.${c.codec === 'prores' ? 'mov' : 'mp4'}`);
  await makeTestClip({
    file: src,
    width: c.width,
    height: c.height,
    fps: c.fps,
    frames: c.frames,
    codec: c.codec,
    rotation: c.rotation ?? 0,
    audio: c.audio,
    content: 'moving-square',
  });
  const out = src.replace(/\.(mp4|mov)$/, `.out.${c.outCodec === 'prores' ? 'mov' : 'mp4'}`);
  const req = JobRequest.parse({
    source: { path: src, in: c.range[0], out: c.range[1] },
    prompt: 'a blue car on a gray road',
    sourcePrompt: 'a red car on a gray road',
    steps: 4,
    guidance: 1,
    mask: { type: 'auto' },
    output: { path: out, codec: c.outCodec, audio: c.audio ?? false },
  });
  const plan = await planJob(req, worker.info, out);
  expect(plan.frameCount).toBe(c.expectFrames);
  const result = await runJob(req, plan, { worker, seed: 1, onProgress: () => undefined });
  const info = await probeMedia(out);
  expect(info.video.frameCount).toBe(c.expectFrames);
  expect(info.video.fps).toEqual(c.fps);
  expect([info.video.displayWidth, info.video.displayHeight]).toEqual(c.display);
  expect(info.durationSec).toBeCloseTo((c.expectFrames * c.fps.den) / c.fps.num, 2);
  expect(result.frames).toBe(c.expectFrames);
  if (c.outCodec === 'prores') {
    expect(info.video.codec).toBe('prores');
    expect(info.video.bitDepth).toBe(10);
  }
  expect(info.audio.length).toBe(c.audio ? 1 : 0);
  if (c.audio) expect(info.audio[0].durationSec!).toBeCloseTo(info.durationSec, 1);
  // The working size keeps the aspect ratio with the short side at the model's native size (128 for the oracle).
  expect(Math.min(plan.width, plan.height)).toBe(128);
});
