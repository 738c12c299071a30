// The edit a new user makes first, through the job runner with every setting left at its default (10 DDIM steps,
// guidance 7.5, direct inversion, strength 1, the consistency stages) on the embedded oracle: a 320×180 clip of a red
// rectangle (ffmpeg's `red`) on a gray road, "a red car on a gray road" → "a blue car on a gray road", with the
// automatic mask and without; and at 50 steps, the default until 2026-12-07. There the rectangle came out gray-teal
// with a thin blue rim while 20 or 35 steps, or guidance 3, gave blue: the oracle's unconditional model was N(0, I), so guidance pushed every pixel's object channel by
// (g − 1)·K-sized amounts that direct inversion had to cancel between its source and target branches, and a saturated
// red tipped over to the background (docs/QUALITY.md, "The job defaults on a user-sized clip").
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { JobRequest, type JobRequestInput } from '../../engine/src/api/schemas';
import { planJob, runJob } from '../../engine/src/jobs/runner';
import { probeMedia } from '../../engine/src/media';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import { PipelineWorker } from '../../engine/src/worker/pipeline-worker';
import { displayFrames, lavfiClip } from '../support/media-frames';

const W = 320;
const H = 180;
const FRAMES = 3;
const BOX = { x: 100, y: 60, w: 96, h: 54 };
let root: string;
let worker: PipelineWorker;
let clip: string;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'default-edit-'));
  generateOracle(path.join(root, 'oracle'));
  worker = await PipelineWorker.start(path.join(root, 'oracle'));
  clip = path.join(root, 'red-on-gray.mp4');
  await lavfiClip(
    clip,
    `color=c=gray:s=${W}x${H}:r=24,drawbox=x=${BOX.x}:y=${BOX.y}:w=${BOX.w}:h=${BOX.h}:color=red:t=fill`,
    FRAMES,
  );
}, 120_000);

afterAll(async () => {
  await worker?.terminate();
  fs.rmSync(root, { recursive: true, force: true });
});

/** Edits the clip with the defaults (only the prompts, the mask and maybe steps given); its frames as rgb24. */
async function editWithDefaults(mask: JobRequestInput['mask'], name: string, steps?: number): Promise<Buffer[]> {
  const media = await probeMedia(clip);
  const output = path.join(root, `${name}.mp4`);
  const req = JobRequest.parse({
    source: { path: clip, in: 0, out: (FRAMES * media.video.fps.den) / media.video.fps.num },
    sourcePrompt: 'a red car on a gray road',
    prompt: 'a blue car on a gray road',
    mask,
    seed: 1,
    steps,
    output: { path: output, codec: 'h264' },
  } satisfies JobRequestInput);
  expect(req).toMatchObject({ steps: steps ?? 10, guidance: 7.5, directInversion: true, method: 'inversion' });
  const plan = await planJob(req, worker.info, output, media);
  const result = await runJob(req, plan, { worker, seed: 1, onProgress: () => undefined });
  // The result names the stages that ran: the default consistency stages, the mask's only when asked for.
  expect(result.stages).toEqual([
    ...(mask?.type === 'auto' ? ['automatic mask', 'mask refinement'] : []),
    'latent correction',
  ]);
  const info = await probeMedia(output);
  expect([info.video.displayWidth, info.video.displayHeight]).toEqual([W, H]);
  const frames = await displayFrames(output, FRAMES);
  expect(frames).toHaveLength(FRAMES);
  return frames;
}

/** Mean rgb over the pixels where `keep(x, y)`, all frames. */
function meanRgb(frames: Buffer[], keep: (x: number, y: number) => boolean): [number, number, number] {
  const sum = [0, 0, 0];
  let n = 0;
  for (const f of frames)
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        if (!keep(x, y)) continue;
        for (let c = 0; c < 3; c++) sum[c] += f[3 * (y * W + x) + c];
        n++;
      }
  return [sum[0] / n, sum[1] / n, sum[2] / n];
}

/** Chebyshev distance in pixels from (x, y) to the rectangle; negative inside (depth from its edge). */
function fromBox(x: number, y: number): number {
  const dx = Math.max(BOX.x - x, x - (BOX.x + BOX.w - 1));
  const dy = Math.max(BOX.y - y, y - (BOX.y + BOX.h - 1));
  return Math.max(dx, dy);
}
const interior = (x: number, y: number) => fromBox(x, y) <= -6;
const road = (x: number, y: number) => fromBox(x, y) >= 12;

describe('an edit with every setting at its default, 320×180 red rectangle on gray', () => {
  it('the source is what the issue describes', async () => {
    const frames = await displayFrames(clip, FRAMES);
    const [r, g, b] = meanRgb(frames, interior);
    expect(r).toBeGreaterThan(240);
    expect(Math.max(g, b)).toBeLessThan(15);
  });

  for (const [label, mask, steps] of [
    ['automatic mask', { type: 'auto' }, undefined],
    ['no mask', { type: 'none' }, undefined],
    ['automatic mask, 50 steps', { type: 'auto' }, 50],
    ['no mask, 50 steps', { type: 'none' }, 50],
  ] as const) {
    it(`turns the rectangle blue and keeps the road gray (${label})`, async () => {
      const frames = await editWithDefaults(mask, `${mask.type}-${steps ?? 'default'}`, steps);
      const inside = meanRgb(frames, interior);
      const outside = meanRgb(frames, road);
      console.log(
        `defaults, ${label}: rectangle rgb (${inside.map((v) => v.toFixed(0)).join(', ')}), road rgb (${outside.map((v) => v.toFixed(0)).join(', ')})`,
      );
      // Blue: before the fix the interior was (108, 142, 142), gray-teal.
      expect(inside[2]).toBeGreaterThan(200);
      expect(inside[0]).toBeLessThan(50);
      expect(inside[1]).toBeLessThan(50);
      for (const v of outside) expect(Math.abs(v - 128)).toBeLessThan(4);
    }, 120_000);
  }
});
