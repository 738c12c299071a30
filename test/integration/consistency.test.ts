// The temporal-consistency stages on the oracle model: each one changes what it is meant to change, in the direction
// docs/QUALITY.md reports (and where a stage does not help, the test pins the measured direction rather than a hope).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { JobRequest } from '../../engine/src/api/schemas';
import type { ImageBatch } from '../../engine/src/diffusion/images';
import { alignToAnchor, maskedChannelStats } from '../../engine/src/editing/stages/anchor-stats';
import { inversionEdit, type InversionEditParams } from '../../engine/src/editing/pipelines/inversion-edit';
import { CanceledError } from '../../engine/src/editing/types';
import {
  fastNeighbourField,
  nearestNeighbourField,
  neighbourFields,
  patchDescriptors,
} from '../../engine/src/flow/correspondence';
import { correctLatents } from '../../engine/src/editing/stages/latent-correction';
import {
  crossfadeWeights,
  editInChunks,
  OverlapFeeder,
  OverlapStitcher,
  planChunks,
} from '../../engine/src/editing/long-clip';
import {
  growAndFeather,
  hysteresisMap,
  refineAutoMask,
  resizeMask,
  thresholdMap,
} from '../../engine/src/editing/masks/mask-ops';
import {
  colourError,
  maskIoU,
  meanColour,
  psnr,
  regionOcclusion,
  warpError,
  warpErrorPerPair,
} from '../../engine/src/eval/metrics';
import { decodePng } from '../../engine/src/media/png';
import { makeScene } from '../../engine/src/eval/synthetic-scene';
import { planJob, runJob } from '../../engine/src/jobs/runner';
import { loadMask, makeTestClip, probeMedia } from '../../engine/src/media';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import { ORACLE } from '../../engine/src/models/generate/oracle-spec';
import { loadDiffusionModel, type DiffusionModel } from '../../engine/src/models/sd-model';
import { PipelineWorker } from '../../engine/src/worker/pipeline-worker';

type Rgb = [number, number, number];
const RED = [...ORACLE.colours.red] as Rgb;
const WHITE = [...ORACLE.colours.white] as Rgb;
const BLUE = [...ORACLE.colours.blue] as Rgb;
const SRC = 'a red car on a gray road';
const TGT = 'a blue car on a gray road';

let root: string;
let model: DiffusionModel;

/** Textured scene with per-frame sensor noise: the edit can flicker where the source only has noise. */
function noisyClip(frames = 8, occluder = false) {
  return makeScene({
    frames,
    width: 48,
    height: 32,
    background: [0, 0, 0],
    pattern: { amplitude: 0.25, period: 12 },
    noise: 0.08,
    frameNoise: 0.03,
    seed: 5,
    object: { shape: 'square', colour: RED, size: 12, centre: [10, 16], velocity: [3, 0] },
    occluders: occluder ? [{ shape: 'rect', colour: WHITE, size: [4, 28], centre: [30, 16], velocity: [-1, 0] }] : [],
  });
}

const base: InversionEditParams = {
  sourcePrompt: SRC,
  prompt: TGT,
  steps: 25,
  strength: 1,
  guidance: 1,
  directInversion: true,
  batchSize: 8,
  autoMask: { threshold: 0.5 },
};

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'consistency-'));
  generateOracle(path.join(root, 'oracle'));
  model = await loadDiffusionModel(path.join(root, 'oracle'));
});

afterAll(async () => {
  await model?.release();
  fs.rmSync(root, { recursive: true, force: true });
});

describe('correspondence fields', () => {
  it('the box-filter search finds exactly the matches of per-pixel patch descriptors, borders included', () => {
    const C = 4;
    const h = 14;
    const w = 19;
    let s = 1;
    const rnd = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5;
    const a = Float32Array.from({ length: C * h * w }, rnd);
    const b = Float32Array.from({ length: C * h * w }, rnd);
    const fast = fastNeighbourField(a, b, C, h, w, 3, 2);
    const ref = nearestNeighbourField(
      patchDescriptors(a, C, h, w, 2),
      patchDescriptors(b, C, h, w, 2),
      C * 25,
      h,
      w,
      3,
    );
    expect(Array.from(fast.index)).toEqual(Array.from(ref.index));
    for (let p = 0; p < h * w; p++) expect(fast.sim[p]).toBeCloseTo(ref.sim[p], 5);
  });

  it('recovers a translation of textured latents, and restricting the search to a region changes nothing there', () => {
    const C = 4;
    const h = 20;
    const w = 24;
    const n = 2;
    let s = 9;
    const rnd = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5;
    const tex = Float32Array.from({ length: C * h * (w + 4) }, rnd);
    const lat = new Float32Array(n * C * h * w);
    // Frame 1 is frame 0 shifted right by 2: content at x in frame 0 is at x + 2 in frame 1.
    for (let t = 0; t < n; t++)
      for (let c = 0; c < C; c++)
        for (let y = 0; y < h; y++)
          for (let x = 0; x < w; x++) lat[((t * C + c) * h + y) * w + x] = tex[(c * h + y) * (w + 4) + x + 4 - 2 * t];
    const full = neighbourFields(lat, n, C, h, w, { radius: 3 });
    const region = (t: number, p: number) =>
      t === 0 && p % w >= 5 && p % w < 12 && Math.floor(p / w) >= 6 && Math.floor(p / w) < 13;
    const part = neighbourFields(lat, n, C, h, w, { radius: 3 }, region);
    for (let y = 3; y < h - 3; y++) {
      for (let x = 3; x < w - 5; x++) {
        const p = y * w + x;
        expect(full.next[p]).toBe(p + 2);
        expect(full.nextSim[p]).toBeCloseTo(1, 5);
        if (region(0, p)) expect(part.next[p]).toBe(full.next[p]);
      }
    }
    expect(part.next[0]).toBe(-1);
  });

  it('checks for cancel between frame pairs, so a cancel does not wait for the whole search', () => {
    const lat = Float32Array.from({ length: 5 * 4 * 12 * 12 }, (_, i) => Math.sin(i * 1.3));
    let calls = 0;
    const stop = () => {
      if (++calls === 3) throw new CanceledError();
    };
    expect(() => neighbourFields(lat, 5, 4, 12, 12, { radius: 2, checkStop: stop })).toThrow(CanceledError);
    expect(calls).toBe(3);
  });
});

describe('mask refinement', () => {
  it('dilation grows the mask by the radius; the soft edge ramps outward and leaves the inside at 1', () => {
    const h = 9;
    const w = 9;
    const m = new Float32Array(h * w);
    m[4 * w + 4] = 1;
    const grown = growAndFeather(m, 1, h, w, 1, 0);
    expect(Array.from(grown).filter((v) => v === 1)).toHaveLength(5); // the centre and its 4 neighbours
    const soft = growAndFeather(m, 1, h, w, 0, 2);
    expect(soft[4 * w + 4]).toBe(1);
    expect(soft[4 * w + 5]).toBeCloseTo(1 - 1 / 3, 6);
    expect(soft[4 * w + 6]).toBeCloseTo(1 - 2 / 3, 6);
    expect(soft[4 * w + 7]).toBe(0);
  });

  it('hysteresis seeds keep a region with a strong core, its weak edge included, and drop a region without one', () => {
    const h = 5;
    const w = 12;
    // Frame 0: an object (core 0.95, edge 0.55) at x 0..3 and a speck region of 0.6–0.7 at x 8..9; frame 1: the speck only.
    const score = new Float32Array(2 * h * w);
    for (let y = 1; y < 4; y++) {
      for (let x = 0; x < 4; x++) score[y * w + x] = x === 3 ? 0.55 : 0.95;
      score[y * w + 8] = 0.6;
      score[y * w + 9] = 0.7;
      score[h * w + y * w + 8] = 0.95;
    }
    const m = hysteresisMap(score, 2, h, w, 0.5, 0.8);
    const at = (f: number, y: number, x: number) => m[f * h * w + y * w + x];
    expect([at(0, 2, 0), at(0, 2, 3)]).toEqual([1, 1]); // core and weak edge
    expect([at(0, 2, 8), at(0, 2, 9)]).toEqual([0, 0]); // no pixel of the speck region reaches the seed
    expect(at(0, 2, 4)).toBe(0);
    expect(at(1, 2, 8)).toBe(1); // connectivity is per frame: frame 1's seed does not reach into frame 0
    expect(Array.from(thresholdMap(score, 0.5)).filter((v) => v).length).toBe(
      Array.from(m).filter((v) => v).length + 6,
    );
  });

  it('temporal smoothing fills a one-frame hole in a static mask and removes a one-frame speck', () => {
    const n = 3;
    const h = 6;
    const w = 6;
    const hw = h * w;
    const score = new Float32Array(n * hw);
    for (let t = 0; t < n; t++) for (let p = 0; p < hw; p++) score[t * hw + p] = p % w < 3 ? 0.9 : 0.1;
    score[hw + 1] = 0.45; // hole in frame 1
    score[hw + 5] = 0.55; // speck in frame 1
    const fields = {
      n,
      h,
      w,
      prev: new Int32Array(n * hw),
      next: new Int32Array(n * hw),
      prevSim: new Float32Array(n * hw).fill(1),
      nextSim: new Float32Array(n * hw).fill(1),
    };
    for (let t = 0; t < n; t++) for (let p = 0; p < hw; p++) fields.prev[t * hw + p] = fields.next[t * hw + p] = p;
    const plain = thresholdMap(score, 0.5);
    expect([plain[hw + 1], plain[hw + 5]]).toEqual([0, 1]);
    const smooth = refineAutoMask(
      score,
      n,
      h,
      w,
      { threshold: 0.5, smoothing: 0.25, seed: 0, dilate: 0, softEdge: 0, minSimilarity: 0.5 },
      fields,
    );
    expect([smooth[hw + 1], smooth[hw + 5]]).toEqual([1, 0]);
  });

  it('on a noisy clip the smoothed automatic mask matches the true object at least as well, and the background is kept better', async () => {
    const clip = noisyClip(8, true);
    const plain = await inversionEdit(model, clip.frames, base);
    const smooth = await inversionEdit(model, clip.frames, { ...base, consistency: { maskSmoothing: 0.2 } });
    const iou = (m: Float32Array) => maskIoU({ ...clip.objectMask, data: m }, clip.objectMask);
    const we = (f: ImageBatch) => warpError(f, clip.flow, clip.occlusion);
    console.log(
      `mask smoothing: IoU ${iou(plain.latentMask!).toFixed(3)} → ${iou(smooth.latentMask!).toFixed(3)}, warp error ${we(plain.frames).toExponential(3)} → ${we(smooth.frames).toExponential(3)}`,
    );
    expect(iou(smooth.latentMask!)).toBeGreaterThanOrEqual(iou(plain.latentMask!));
    expect(we(smooth.frames)).toBeLessThanOrEqual(we(plain.frames));
  });

  it('resizes a matte bilinearly and keeps an up-down round trip', () => {
    const m = Float32Array.from([0, 1, 1, 0]);
    const big = resizeMask(m, 1, 2, 2, 4, 4);
    expect(big.length).toBe(16);
    expect(big[0]).toBe(0);
    expect(big[1]).toBeCloseTo(0.25, 6);
    expect(resizeMask(m, 1, 2, 2, 2, 2)).toEqual(m);
  });
});

describe('latent correction', () => {
  it('blends inside the mask only, with weights that sum to one, from a snapshot of all frames', () => {
    const n = 3;
    const hw = 4;
    const C = 1;
    const z = Float32Array.from([0, 0, 0, 0, 3, 3, 3, 3, 6, 6, 6, 6]);
    const mask = Float32Array.from([1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1]);
    const id = Int32Array.from({ length: n * hw }, (_, i) => i % hw);
    const sim = new Float32Array(n * hw).fill(1);
    correctLatents(
      z,
      n,
      C,
      hw,
      mask,
      { n, h: 1, w: hw, prev: id, next: id, prevSim: sim, nextSim: sim },
      { weights: [0.25, 0.5, 0.25], minSimilarity: 0.5 },
    );
    // Frame 1 inside the mask: 0.25·0 + 0.5·3 + 0.25·6 = 3; outside it stays 3. Frame 0 has no previous frame, so its
    // share stays with itself: 0.75·0 + 0.25·3 = 0.75 (except where frame 1's match is outside frame 1's mask).
    expect(Array.from(z.subarray(4, 8))).toEqual([3, 3, 3, 3]);
    expect(Array.from(z.subarray(0, 4))).toEqual([0.75, 0.75, 0, 0]);
    expect(Array.from(z.subarray(8, 12))).toEqual([5.25, 5.25, 6, 6]);
  });

  it("makes the edit agree across frames: the object flickers down to its source's own grain, not below it (and the whole frame no more)", async () => {
    // Latent correction blends the edit's deviation from the source trajectory, not the latents: the source's own
    // per-frame noise is kept (a same-prompt edit must give the source back), the part the edit adds is averaged
    // along the correspondences. So the object's warp error falls towards the source's (ratio 1), not below it.
    const clip = noisyClip(8);
    const c = { maskSmoothing: 0.2 };
    const lc = (steps: number) => ({
      ...c,
      latentCorrection: { steps, weights: [0.25, 0.5, 0.25] as [number, number, number] },
    });
    const plain = await inversionEdit(model, clip.frames, { ...base, consistency: c });
    const early = await inversionEdit(model, clip.frames, { ...base, consistency: lc(5) });
    const all = await inversionEdit(model, clip.frames, { ...base, consistency: lc(base.steps) });
    const objOcc = regionOcclusion(clip.occlusion, clip.objectMask);
    const obj = (f: ImageBatch) => warpError(f, clip.flow, objOcc);
    const whole = (f: ImageBatch) => warpError(f, clip.flow, clip.occlusion);
    const src = obj(clip.frames);
    const ratio = (f: ImageBatch) => (obj(f) / src).toFixed(3);
    console.log(
      `latent correction: object warp error ÷ source ${ratio(plain.frames)} → ${ratio(early.frames)} (5 steps) → ${ratio(all.frames)} (all ${base.steps}); whole frame ${whole(plain.frames).toExponential(3)} → ${whole(early.frames).toExponential(3)} → ${whole(all.frames).toExponential(3)}`,
    );
    expect(obj(early.frames)).toBeLessThanOrEqual(obj(plain.frames));
    expect(obj(all.frames)).toBeLessThan(0.6 * obj(plain.frames));
    expect(obj(all.frames)).toBeGreaterThan(0.8 * src);
    expect(whole(all.frames)).toBeLessThanOrEqual(whole(plain.frames));
    expect(colourError(all.frames, clip.objectMask, BLUE, 'inside')).toBeLessThan(
      1.1 * colourError(plain.frames, clip.objectMask, BLUE, 'inside'),
    );
  });

  it('steps all batches in lockstep: the result does not depend on the batch size', async () => {
    const clip = noisyClip(6);
    const consistency = {
      maskSmoothing: 0.2,
      softEdge: 1,
      latentCorrection: { steps: 5, weights: [0.25, 0.5, 0.25] as [number, number, number] },
    };
    const one = await inversionEdit(model, clip.frames, { ...base, batchSize: 6, consistency });
    const many = await inversionEdit(model, clip.frames, { ...base, batchSize: 2, consistency });
    expect(psnr(one.frames, many.frames)).toBeGreaterThan(80);
  });

  it("with every stage off the edit is the plain loop's, bit for bit", async () => {
    const clip = noisyClip(4);
    const off = await inversionEdit(model, clip.frames, {
      ...base,
      consistency: { maskSmoothing: 0, softEdge: 0, maskDilate: 0, latentCorrection: null, anchorStats: false },
    });
    const none = await inversionEdit(model, clip.frames, base);
    expect(Array.from(off.frames.data)).toEqual(Array.from(none.frames.data));
  });
});

describe('anchor statistics', () => {
  it("align every frame's masked channel means and spreads to the anchor frame", () => {
    const n = 3;
    const C = 2;
    const hw = 16;
    let s = 3;
    const rnd = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5;
    const z = Float32Array.from(
      { length: n * C * hw },
      (_, i) => rnd() * (1 + Math.floor(i / (C * hw))) + Math.floor(i / (C * hw)),
    );
    const mask = Float32Array.from({ length: n * hw }, (_, i) => (i % hw < 10 ? 1 : 0));
    const outside = z[2 * C * hw + 12];
    // A guard wide enough for these spreads (the default, 2, keeps a near-empty region from being blown up).
    alignToAnchor(z, mask, n, C, hw, { maxScale: 10 });
    const ref = maskedChannelStats(z.subarray(0, C * hw), mask.subarray(0, hw), C, hw);
    for (let t = 1; t < n; t++) {
      const st = maskedChannelStats(
        z.subarray(t * C * hw, (t + 1) * C * hw),
        mask.subarray(t * hw, (t + 1) * hw),
        C,
        hw,
      );
      for (let c = 0; c < C; c++) {
        expect(st.mean[c]).toBeCloseTo(ref.mean[c], 5);
        expect(st.std[c]).toBeCloseTo(ref.std[c], 5);
      }
    }
    expect(z[2 * C * hw + 12]).toBe(outside);
  });

  it('in the edit, act on the deviation from the source: the edit is kept, and (measured) they do not bring the object colours together', async () => {
    // The stage aligns statistics of d = z − z_source (so a same-prompt edit stays the identity, identity.test.ts).
    // On this clip the mask's make-up changes from frame to frame (the occluder, ring pixels), so matching the
    // deviation's mask-wide mean and spread moves the object's own colour: its spread over frames went up, 0.0053 →
    // 0.0103 (it went down, 0.0053 → 0.0044, when the stage aligned the latents themselves). Off by default; pinned
    // here so that a change in either direction is noticed and docs/QUALITY.md updated.
    const clip = noisyClip(8, true);
    const c = { maskSmoothing: 0.2 };
    const plain = await inversionEdit(model, clip.frames, { ...base, consistency: c });
    const anchored = await inversionEdit(model, clip.frames, { ...base, consistency: { ...c, anchorStats: true } });
    const hw = 48 * 32;
    const spread = (f: ImageBatch) => {
      const means = Array.from(
        { length: f.n },
        (_, t) =>
          meanColour(
            { n: 1, height: 32, width: 48, data: f.data.subarray(t * 3 * hw, (t + 1) * 3 * hw) },
            { n: 1, height: 32, width: 48, data: clip.objectMask.data.subarray(t * hw, (t + 1) * hw) },
            'inside',
          )[2],
      );
      const m = means.reduce((a, b) => a + b, 0) / means.length;
      return Math.sqrt(means.reduce((a, b) => a + (b - m) ** 2, 0) / means.length);
    };
    const we = (f: ImageBatch) => warpError(f, clip.flow, clip.occlusion);
    const err = (f: ImageBatch) => colourError(f, clip.objectMask, BLUE, 'inside');
    console.log(
      `anchor stats: spread of the object's blue over frames ${spread(plain.frames).toFixed(4)} → ${spread(anchored.frames).toFixed(4)}; colour error ${err(plain.frames).toFixed(3)} → ${err(anchored.frames).toFixed(3)}; warp error ${we(plain.frames).toExponential(3)} → ${we(anchored.frames).toExponential(3)}`,
    );
    expect(err(anchored.frames)).toBeLessThan(1.1 * err(plain.frames));
    expect(spread(anchored.frames)).toBeGreaterThan(spread(plain.frames));
    expect(spread(anchored.frames)).toBeLessThan(0.02);
  });
});

describe('long clips in overlapping chunks', () => {
  it('plans chunks of new frames, each after the first led by the overlap', () => {
    expect(planChunks(40, 16, 4)).toEqual([
      { start: 0, count: 16, lead: 0 },
      { start: 12, count: 20, lead: 4 },
      { start: 28, count: 12, lead: 4 },
    ]);
    expect(planChunks(10, 16, 4)).toEqual([{ start: 0, count: 10, lead: 0 }]);
    expect(crossfadeWeights(3)).toEqual([0.25, 0.5, 0.75]);
  });

  it('feeder and stitcher give back exactly the input for an identity edit, frame count and order kept', async () => {
    const clip = noisyClip(11);
    const out = await editInChunks(clip.frames, 4, 2, async (f) => ({ frames: f }));
    expect(Array.from(out.frames.data)).toEqual(Array.from(clip.frames.data));
    const feeder = new OverlapFeeder(2);
    const stitcher = new OverlapStitcher(2);
    const per = 3 * 32 * 48;
    let written = 0;
    for (let s = 0; s < 11; s += 4) {
      const chunk = {
        n: Math.min(4, 11 - s),
        height: 32,
        width: 48,
        data: clip.frames.data.slice(s * per, (s + Math.min(4, 11 - s)) * per),
      };
      const { frames, lead } = feeder.next(chunk);
      written += stitcher.push(frames, lead).frames.n;
    }
    written += stitcher.flush()?.frames.n ?? 0;
    expect(written).toBe(11);
  });

  it("overlap crossfading makes the seam frames' warp error smaller than independent chunks", async () => {
    const clip = noisyClip(14);
    const consistency = {
      maskSmoothing: 0.2,
      softEdge: 1,
      latentCorrection: { steps: 5, weights: [0.25, 0.5, 0.25] as [number, number, number] },
    };
    const edit = async (f: ImageBatch) => {
      const r = await inversionEdit(model, f, { ...base, consistency });
      return { frames: r.frames, mask: r.latentMask };
    };
    const hard = await editInChunks(clip.frames, 5, 0, edit);
    const soft = await editInChunks(clip.frames, 5, 3, edit);
    const seams = planChunks(14, 5, 0)
      .slice(1)
      .map((s) => s.start + s.lead);
    const src = warpErrorPerPair(clip.frames, clip.flow, clip.occlusion);
    const seamRatio = (f: ImageBatch) => {
      const e = warpErrorPerPair(f, clip.flow, clip.occlusion);
      return seams.reduce((a, b) => a + e[b - 1] / src[b - 1], 0) / seams.length;
    };
    console.log(
      `seam warp error ÷ source at frames ${seams.join(', ')}: no overlap ${seamRatio(hard.frames).toFixed(3)}, overlap 3 ${seamRatio(soft.frames).toFixed(3)}`,
    );
    expect(seamRatio(soft.frames)).toBeLessThan(seamRatio(hard.frames));
    expect(hard.mask!.length).toBe(14 * 32 * 48);
  });
});

describe('jobs', () => {
  let worker: PipelineWorker;
  beforeAll(async () => {
    worker = await PipelineWorker.start(path.join(root, 'oracle'), { threads: 1 });
  });
  afterAll(async () => {
    await worker?.terminate();
  });

  it('a long job with the automatic mask runs in overlapping chunks and writes the matte as a PNG sequence that reads back as a mask', async () => {
    const src = path.join(root, 'long.mp4');
    await makeTestClip({
      file: src,
      width: 160,
      height: 120,
      fps: { num: 12, den: 1 },
      frames: 21,
      codec: 'h264',
      content: 'moving-square',
    });
    const out = path.join(root, 'long.out.mp4');
    const req = JobRequest.parse({
      source: { path: src, in: 0, out: 21 / 12 },
      prompt: 'a green box on a blue road',
      sourcePrompt: 'an orange box on a blue road',
      steps: 3,
      guidance: 1,
      mask: { type: 'auto' },
      output: { path: out },
    });
    const plan = await planJob(req, worker.info, out);
    const result = await runJob(req, plan, { worker, seed: 1, onProgress: () => undefined });
    expect(result.frames).toBe(21);
    expect((await probeMedia(out)).video.frameCount).toBe(21);
    // 21 frames in chunks of 16 with the default 4-frame overlap: 16 + (4 + 5) frames edited.
    expect(result.unetEvaluations % 25).toBe(0);
    expect(result.mattePath).toBe(path.join(root, 'long.out.mp4.matte', 'matte_%06d.png'));
    const files = fs.readdirSync(path.dirname(result.mattePath!)).sort();
    expect(files).toHaveLength(21);
    const png = decodePng(fs.readFileSync(path.join(path.dirname(result.mattePath!), files[0])));
    expect([png.width, png.height]).toEqual([160, 120]);
    const matte = await loadMask(
      { kind: 'file', path: result.mattePath! },
      { frames: 21, width: 160, height: 120, startFrame: 0, fps: { num: 12, den: 1 } },
    );
    // The moving square (30×30, from x = 0 to 130 at y = 45..74) is inside the matte in every frame. The oracle also
    // marks the rows of the blue gradient whose chroma sits between its object and background components.
    for (let k = 0; k < 21; k++) {
      const x = Math.round((130 * k) / 20) + 15;
      expect(matte.data[k * 160 * 120 + 60 * 160 + x]).toBeGreaterThan(0.5);
    }
    let covered = 0;
    for (const v of matte.data) if (v > 0.5) covered++;
    expect(covered / (21 * 160 * 120)).toBeLessThan(0.3);
    expect(fs.readdirSync(root).filter((f) => f.includes('.partial'))).toEqual([]);
  });

  it('consistency can be switched off per job, and then no matte-side work changes the frame count', async () => {
    const src = path.join(root, 'short.mp4');
    await makeTestClip({
      file: src,
      width: 160,
      height: 120,
      fps: { num: 12, den: 1 },
      frames: 6,
      codec: 'h264',
      content: 'moving-square',
    });
    const out = path.join(root, 'short.out.mp4');
    const req = JobRequest.parse({
      source: { path: src, in: 0, out: 0.5 },
      prompt: 'a green box on a blue road',
      sourcePrompt: 'an orange box on a blue road',
      steps: 2,
      guidance: 1,
      mask: { type: 'none' },
      consistency: { latentCorrection: null, maskSmoothing: 0, softEdge: 0, chunkOverlap: 0 },
      output: { path: out },
    });
    const plan = await planJob(req, worker.info, out);
    const result = await runJob(req, plan, { worker, seed: 1, onProgress: () => undefined });
    expect(result.frames).toBe(6);
    expect(result.mattePath).toBeUndefined();
    expect(
      JobRequest.safeParse({ ...req, consistency: { latentCorrection: { steps: 5, weights: [0.5, 0.5, 0.5] } } })
        .success,
    ).toBe(false);
  });
});
