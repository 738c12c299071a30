// Full-resolution compositing (jobs/full-res.ts, media/composite.ts) end to end: real ffmpeg, the generated oracle
// model in the compute worker. The model edits at 128 px short side; the result is built at the source's display size
// from the source's own pixels, so outside a box mask a textured 1080p source comes back up to the output codec.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { JobRequest, type JobRequestInput } from '../../engine/src/api/schemas';
import { fromRgb24 } from '../../engine/src/diffusion/images';
import { planJob, runJob } from '../../engine/src/jobs/runner';
import { makeTestClip, probeMedia, rampIndex } from '../../engine/src/media';
import { decodeFrameBytes, decodeFrames, type DecodeOptions } from '../../engine/src/media/decode';
import { createEncoder } from '../../engine/src/media/encode';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import { PipelineWorker } from '../../engine/src/worker/pipeline-worker';
import { displayFrames, lavfiClip } from '../support/media-frames';

let root: string;
let worker: PipelineWorker;
let clip: string;
const W = 1920,
  H = 1080,
  FRAMES = 3;
const BOX = { x: 0.375, y: 0.3, w: 0.25, h: 0.4 };

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'full-res-'));
  generateOracle(path.join(root, 'oracle'));
  worker = await PipelineWorker.start(path.join(root, 'oracle'), { threads: 1 });
  // Texture at every scale: testsrc2's edges, text and gradients (colour turned down) plus per-pixel luma noise,
  // nearly lossless H.264. Saturated 1-pixel colour edges or temporal noise would measure the output codec's 4:2:x
  // chroma and bit rate instead (a plain re-encode of testsrc2 with noise through ProRes gives 35.5 dB).
  clip = path.join(root, 'texture-1080p.mp4');
  await lavfiClip(clip, `testsrc2=size=${W}x${H}:rate=24,hue=s=0.25,noise=c0s=4`, FRAMES, ['-crf', '4']);
}, 180000);

afterAll(async () => {
  await worker?.terminate();
  fs.rmSync(root, { recursive: true, force: true });
});

/** PSNR (8-bit) over the pixels where `keep(x, y)`, all frames. */
function psnr(a: Buffer[], b: Buffer[], keep: (x: number, y: number) => boolean): number {
  let se = 0,
    n = 0;
  for (let f = 0; f < a.length; f++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        if (!keep(x, y)) continue;
        for (let c = 0; c < 3; c++) {
          const d = a[f][(y * W + x) * 3 + c] - b[f][(y * W + x) * 3 + c];
          se += d * d;
        }
        n += 3;
      }
    }
  }
  return 10 * Math.log10((255 * 255) / Math.max(se / n, 1e-12));
}

/** PSNR of the source re-encoded as it is (display-size rgb24 → the encoder → decoded): the output codec's ceiling. */
async function codecCeiling(codec: 'h264' | 'prores'): Promise<number> {
  const info = await probeMedia(clip);
  const out = path.join(root, `ceiling.${codec === 'prores' ? 'mov' : 'mp4'}`);
  const enc = await createEncoder({
    output: out,
    width: W,
    height: H,
    fps: info.video.fps,
    codec,
    overwrite: true,
    colorMatrix: info.video.colorMatrix,
    inputBitDepth: 8,
  });
  const source = await displayFrames(clip, FRAMES);
  for (const f of source) await enc.writeRaw(Buffer.from(f), 1);
  await enc.finish();
  return psnr(await displayFrames(out, FRAMES), source, () => true);
}

async function job(name: string, body: Partial<JobRequestInput>) {
  const out = path.join(root, `${name}.mp4`);
  const req = JobRequest.parse({
    source: { path: clip, in: 0, out: FRAMES / 24 },
    prompt: 'a blue car on a gray road',
    sourcePrompt: 'a red car on a gray road',
    steps: 4,
    guidance: 1,
    ...body,
    output: { path: out, ...(body.output ?? {}) },
  });
  const plan = await planJob(req, worker.info, out);
  const result = await runJob(req, plan, { worker, seed: 1, onProgress: () => undefined });
  return { out, plan, result };
}

// Outside the box by a margin of two working-size pixels (the matte's bilinear edge), in display pixels.
const margin = Math.ceil((2 * H) / 128);
const outsideBox = (x: number, y: number) =>
  x < BOX.x * W - margin ||
  x >= (BOX.x + BOX.w) * W + margin ||
  y < BOX.y * H - margin ||
  y >= (BOX.y + BOX.h) * H + margin;

it('gives the source back outside a box mask at full resolution (1080p from a 128 px working size)', async () => {
  const full = await job('box-full', { mask: { type: 'box', ...BOX }, output: { codec: 'prores' } });
  const working = await job('box-working', {
    mask: { type: 'box', ...BOX },
    output: { codec: 'prores', composite: 'working' },
  });
  expect(Math.min(full.plan.width, full.plan.height)).toBe(128);
  // The output has the source's display size.
  for (const r of [full, working]) {
    const info = await probeMedia(r.out);
    expect([info.video.displayWidth, info.video.displayHeight]).toEqual([W, H]);
    expect([r.result.width, r.result.height]).toEqual([W, H]);
    expect(info.video.frameCount).toBe(FRAMES);
  }
  const source = await displayFrames(clip, FRAMES);
  const pFull = psnr(await displayFrames(full.out, FRAMES), source, outsideBox);
  const pWorking = psnr(await displayFrames(working.out, FRAMES), source, outsideBox);
  const inside = (x: number, y: number) =>
    !outsideBox(x, y) &&
    x > BOX.x * W + margin &&
    x < (BOX.x + BOX.w) * W - margin &&
    y > BOX.y * H + margin &&
    y < (BOX.y + BOX.h) * H - margin;
  const pInside = psnr(await displayFrames(full.out, FRAMES), source, inside);
  const ceiling = await codecCeiling('prores');
  console.log(
    `ProRes output, outside the box: PSNR ${pFull.toFixed(2)} dB with full-resolution compositing, ${pWorking.toFixed(2)} dB with the working size scaled up (composite "working"); the source re-encoded as it is: ${ceiling.toFixed(2)} dB; inside the box (edited): ${pInside.toFixed(2)} dB`,
  );
  expect(pFull).toBeGreaterThanOrEqual(45);
  // Outside the mask only the output codec changes anything.
  expect(pFull).toBeGreaterThan(ceiling - 0.3);
  expect(pFull).toBeGreaterThan(pWorking + 5);
}, 600000);

it('gives the source back nearly exactly for a same-prompt inversion edit without a mask', async () => {
  const same = await job('same-prompt', {
    prompt: 'a red car on a gray road',
    directInversion: true,
    mask: { type: 'none' },
  });
  const p = psnr(await displayFrames(same.out, FRAMES), await displayFrames(clip, FRAMES), () => true);
  const ceiling = await codecCeiling('h264');
  console.log(
    `same-prompt inversion edit, H.264, whole frame: PSNR ${p.toFixed(2)} dB against the source; the source re-encoded as it is: ${ceiling.toFixed(2)} dB`,
  );
  expect(p).toBeGreaterThan(ceiling - 1);
}, 600000);

it('gives the source back for a same-prompt edit with every default stage on: at least 40 dB in H.264, more in ProRes', async () => {
  // Automatic mask, mask smoothing, latent correction and chunk overlap are the defaults; guidance as a user has it.
  const same = { prompt: 'a red car on a gray road', guidance: 7.5, mask: { type: 'auto' } as JobRequestInput['mask'] };
  const h264 = await job('same-auto-h264', same);
  const prores = await job('same-auto-prores', { ...same, output: { codec: 'prores' } });
  const source = await displayFrames(clip, FRAMES);
  const dbH264 = psnr(await displayFrames(h264.out, FRAMES), source, () => true);
  const dbProres = psnr(await displayFrames(prores.out, FRAMES), source, () => true);
  console.log(
    `same-prompt edit, every default stage on, whole 1080p frame: H.264 ${dbH264.toFixed(2)} dB, ProRes ${dbProres.toFixed(2)} dB`,
  );
  expect(dbH264).toBeGreaterThanOrEqual(40);
  expect(dbProres).toBeGreaterThan(dbH264);
}, 600000);

it('gives the source back outside a box mask with SDEdit too (reconstruction = VAE encode → decode)', async () => {
  const r = await job('box-sdedit', {
    method: 'sdedit',
    strength: 0.6,
    mask: { type: 'box', ...BOX },
    output: { codec: 'prores' },
  });
  const p = psnr(await displayFrames(r.out, FRAMES), await displayFrames(clip, FRAMES), outsideBox);
  console.log(`SDEdit, ProRes output, outside the box: PSNR ${p.toFixed(2)} dB`);
  expect(p).toBeGreaterThanOrEqual(45);
}, 600000);

it('stitches deltas and the automatic mask across chunks (20 frames, overlap 4) and keeps an unchanged clip', async () => {
  const small = path.join(root, 'chunks.mp4');
  await lavfiClip(small, 'testsrc2=size=480x270:rate=24,hue=s=0.25', 20, ['-crf', '4']);
  const out = path.join(root, 'chunks.out.mov');
  const req = JobRequest.parse({
    source: { path: small, in: 0, out: 20 / 24 },
    prompt: 'a red car on a gray road',
    sourcePrompt: 'a red car on a gray road',
    steps: 4,
    guidance: 1,
    directInversion: true,
    mask: { type: 'auto' },
    output: { path: out, codec: 'prores' },
  });
  const plan = await planJob(req, worker.info, out);
  const result = await runJob(req, plan, { worker, seed: 1, onProgress: () => undefined });
  expect(result.frames).toBe(20);
  const info = await probeMedia(out);
  expect([info.video.displayWidth, info.video.displayHeight, info.video.frameCount]).toEqual([480, 270, 20]);
  const get = async (file: string) => {
    const frames: Buffer[] = [];
    for await (const c of decodeFrameBytes(file, {
      startFrame: 0,
      frameCount: 20,
      fps: info.video.fps,
      width: 480,
      height: 270,
      chunkFrames: 1,
      colorMatrix: 'bt709',
    }))
      frames.push(c.data);
    return frames;
  };
  const [a, b] = [await get(out), await get(small)];
  let se = 0,
    n = 0;
  for (let f = 0; f < 20; f++) {
    for (let i = 0; i < a[f].length; i++) {
      se += (a[f][i] - b[f][i]) ** 2;
      n++;
    }
  }
  const p = 10 * Math.log10((255 * 255) / Math.max(se / n, 1e-12));
  console.log(
    `same prompt, automatic mask, 20 frames in two chunks, ProRes: PSNR ${p.toFixed(2)} dB against the source`,
  );
  expect(p).toBeGreaterThanOrEqual(45);
}, 600000);

it('selects the same frames in the full-size byte decode as in the working-size decode', async () => {
  const ramp = path.join(root, 'ramp.mp4');
  await makeTestClip({
    file: ramp,
    width: 320,
    height: 180,
    fps: { num: 30000, den: 1001 },
    frames: 40,
    codec: 'h264',
    content: 'index-ramp',
  });
  const info = await probeMedia(ramp);
  const opts: DecodeOptions = {
    startFrame: 13,
    frameCount: 9,
    fps: info.video.fps,
    originSec: info.video.originSec,
    width: 96,
    height: 56,
    chunkFrames: 4,
    colorMatrix: info.video.colorMatrix,
  };
  const small: number[] = [];
  for await (const b of decodeFrames(ramp, opts)) for (let f = 0; f < b.n; f++) small.push(rampIndex(b, f));
  const big: number[] = [];
  for await (const c of decodeFrameBytes(ramp, { ...opts, width: 320, height: 180, chunkFrames: 1 }))
    big.push(rampIndex(fromRgb24(c.data, 1, 180, 320), 0));
  expect(small).toEqual(Array.from({ length: 9 }, (_, k) => 13 + k));
  expect(big).toEqual(small);
}, 120000);
