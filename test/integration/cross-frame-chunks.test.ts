// Cross-frame attention across the chunks of a long clip (editing/long-clip.ts inversionChunk): the first chunk hands
// back the clip's frame 0 (its trajectory) and every later chunk runs it ahead of its own frames, so all chunks anchor
// on the frame an unchunked edit anchors on. On the real-export fixture and a generated tiny-sd, random weights: with
// anchors "first" and no stage that pairs neighbouring frames, the chunked edit IS the unchunked one (every frame reads
// only itself and frame 0, and frame 0 reads only itself); without the carry the later chunks anchor on their own first
// frame instead. The carried frame never comes out, the first chunk is as it was, and the inversion cache holds each
// chunk's own frames only. Then the job runner's chunk loop, with the compute worker and the cache.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { JobRequest, type Job, type JobEvent } from '../../engine/src/api/schemas';
import { imageBatch, type ImageBatch, type MaskBatch } from '../../engine/src/diffusion/images';
import {
  CARRIED_ANCHOR_STAGE,
  editInChunks,
  inversionChunk,
  type ChunkOutput,
  type ChunkSpan,
} from '../../engine/src/editing/long-clip';
import {
  inversionEdit,
  inversionMethod,
  type InversionEditParams,
} from '../../engine/src/editing/pipelines/inversion-edit';
import type { CrossFrameParams, InvertedTrajectory, TrajectoryStore } from '../../engine/src/editing/types';
import { JobManager } from '../../engine/src/jobs/manager';
import { CHUNK_FRAMES } from '../../engine/src/jobs/runner';
import { makeTestClip } from '../../engine/src/media';
import { displayFrames } from '../support/media-frames';
import { loadDiffusionModel, type DiffusionModel } from '../../engine/src/models/sd-model';
import { PipelineWorker } from '../../engine/src/worker/pipeline-worker';
import { generateStageModels, maxDiff, movingFrames, stageModels, withModel } from '../support/edit-models';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'reshoot-cross-frame-chunks-'));
  generateStageModels(tmp);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const MODELS = stageModels(() => tmp);

/** 7 frames in chunks of 3 with 1 frame of overlap: spans [0, 3), [2, 6), [5, 7). */
const FRAMES = 7;
const CHUNK = 3;
const OVERLAP = 1;

const params = (crossFrame: CrossFrameParams | null, more: Partial<InversionEditParams> = {}): InversionEditParams => ({
  prompt: 'a blue car',
  sourcePrompt: 'a red car',
  guidance: 3,
  directInversion: true,
  batchSize: 2,
  steps: 3,
  strength: 1,
  crossFrame,
  ...more,
});

const FIRST: CrossFrameParams = { anchors: 'first', mode: 'extend', layers: 'all' };

/** A trajectory store per chunk, in memory, keyed by the chunk's own frames as the job's cache is. */
function memoryStore(): { entries: Map<string, InvertedTrajectory>; at: (span: ChunkSpan) => TrajectoryStore } {
  const entries = new Map<string, InvertedTrajectory>();
  return {
    entries,
    at: (span) => ({
      get: () => entries.get(`${span.start}+${span.count}`),
      put: (t) => void entries.set(`${span.start}+${span.count}`, t),
    }),
  };
}

interface Chunked {
  frames: ImageBatch;
  /** Each chunk's own output, before the crossfade. */
  chunks: { span: ChunkSpan; out: ChunkOutput }[];
}

/** The clip edited in chunks; `carry`: with the anchor frame carried from the first chunk. */
async function chunked(
  m: DiffusionModel,
  clip: ImageBatch,
  p: InversionEditParams,
  carry: boolean,
  store?: ReturnType<typeof memoryStore>,
  per: (span: ChunkSpan) => Partial<InversionEditParams> = () => ({}),
): Promise<Chunked> {
  const chunks: Chunked['chunks'] = [];
  const r = await editInChunks(clip, CHUNK, OVERLAP, async (f, span, anchor) => {
    const s = store?.at(span);
    const q = { ...p, ...per(span) };
    const out = carry
      ? await inversionChunk(m, f, q, anchor ? { anchor } : { keep: 1 }, {}, s)
      : await inversionMethod(m, f, q, {}, s);
    chunks.push({ span, out });
    return out;
  });
  return { frames: r.frames, chunks };
}

/** n mattes of 64×64, value(frame, x). */
function imageMask(n: number, value: (f: number, x: number) => number): MaskBatch {
  const hw = 64 * 64;
  return {
    n,
    height: 64,
    width: 64,
    data: Float32Array.from({ length: n * hw }, (_, i) => value(Math.floor(i / hw), i % 64)),
  };
}

function meanAbs(a: Float32Array, b: Float32Array, from = 0): number {
  let sum = 0;
  for (let i = from; i < a.length; i++) sum += Math.abs(a[i] - b[i]);
  return sum / (a.length - from);
}

/** Frames [from, from + n) of a batch's data. */
const framesAt = (b: ImageBatch, from: number, n: number) => {
  const per = 3 * b.height * b.width;
  return b.data.subarray(from * per, (from + n) * per);
};

describe.each(MODELS)('%s', (_label, dir) => {
  it('with anchors "first", a chunked edit that carries frame 0 is the unchunked edit; without the carry it is not', async () => {
    await withModel(dir(), tmp, async (m) => {
      const clip = movingFrames(FRAMES, 64);
      const p = params(FIRST);
      const whole = await inversionEdit(m, clip, p);
      const evals = m.stats.unetEvals;
      const carried = await chunked(m, clip, p, true);
      const carriedEvals = m.stats.unetEvals - evals;
      const plainEvals = m.stats.unetEvals;
      const own = await chunked(m, clip, p, false);
      const ownEvals = m.stats.unetEvals - plainEvals;

      // No extra output frames, and each chunk's own output is its frames' unchunked edit: frame 0 never comes out.
      expect(carried.frames.n).toBe(FRAMES);
      expect(carried.frames.data.length).toBe(clip.data.length);
      for (const { span, out } of carried.chunks) {
        expect(out.frames.n).toBe(span.count);
        expect(out.reconstruction).toBeUndefined();
        const d = maxDiff(out.frames.data, framesAt(whole.frames, span.start, span.count));
        console.log(`chunk at ${span.start}: max Δ to the unchunked edit ${d.toExponential(2)}`);
        expect(d).toBeLessThanOrEqual(1e-5);
        expect(out.stages).toEqual(
          span.start === 0 ? ['cross-frame attention'] : ['cross-frame attention', CARRIED_ANCHOR_STAGE],
        );
      }
      const dCarried = maxDiff(carried.frames.data, whole.frames.data);
      // The first chunk is as it was; the later ones anchored on their own first frame without the carry.
      const firstNew = (CHUNK - OVERLAP) * 3 * 64 * 64;
      const dFirst = maxDiff(carried.frames.data, own.frames.data, 0, firstNew);
      const dOwnLater = maxDiff(own.frames.data, whole.frames.data, firstNew);
      console.log(
        `carried: max Δ to unchunked ${dCarried.toExponential(2)}; first chunk vs no carry ${dFirst.toExponential(2)}; ` +
          `later chunks without the carry: max Δ ${dOwnLater.toFixed(4)}; UNet evaluations ${carriedEvals} vs ${ownEvals}`,
      );
      expect(dCarried).toBeLessThanOrEqual(1e-5);
      expect(dFirst).toBe(0);
      expect(dOwnLater).toBeGreaterThan(1e-3);
      // What the carry costs: frame 0's 3 steps × 4 UNet items (guidance and direct inversion), in each later chunk.
      expect(carriedEvals - ownEvals).toBe(2 * 3 * 4);
    });
  }, 180_000);

  it('with anchors "first+previous", the later chunks come closer to the unchunked edit with the carry', async () => {
    await withModel(dir(), tmp, async (m) => {
      const clip = movingFrames(FRAMES, 64);
      const p = params({ anchors: 'first+previous', mode: 'extend', layers: 'all' });
      const whole = await inversionEdit(m, clip, p);
      const carried = await chunked(m, clip, p, true);
      const own = await chunked(m, clip, p, false);
      // Not equal: the previous frame chains every frame to all the ones before it, and a chunk's first frame has
      // none (it reads frame 0 twice, as frame 1 of the clip does); the overlap frames take the chain up again.
      const from = (CHUNK - OVERLAP) * 3 * 64 * 64;
      const mean = (b: ImageBatch) => meanAbs(b.data, whole.frames.data, from);
      console.log(
        `first+previous, later chunks: mean |Δ| to unchunked ${mean(carried.frames).toFixed(4)} with the carry, ${mean(own.frames).toFixed(4)} without`,
      );
      expect(maxDiff(carried.frames.data, own.frames.data, 0, from)).toBe(0);
      expect(mean(carried.frames)).toBeLessThan(0.5 * mean(own.frames));
    });
  }, 180_000);

  it('with mask smoothing, latent correction and anchor statistics, later chunks read frame 0 as the first chunk did', async () => {
    // Correspondences from the latents: random decoder features never match well enough for the neighbour stages.
    const m = await loadDiffusionModel(dir(), {
      threads: 1,
      graphCache: path.join(tmp, 'graph-cache'),
      decoderFeatures: false,
    });
    try {
      const per = 3 * 64 * 64;
      // A slow drift, so that neighbouring frames match and the neighbour stages act.
      const clip = imageBatch(
        12,
        64,
        64,
        Float32Array.from({ length: 12 * per }, (_, i) => Math.sin((i % per) * 0.013 + Math.floor(i / per) * 0.03)),
      );
      const p = params(FIRST, {
        steps: 4,
        autoMask: { threshold: 0.5 },
        consistency: {
          maskSmoothing: 0.25,
          softEdge: 1,
          latentCorrection: { steps: 2, weights: [0.25, 0.5, 0.25] },
          anchorStats: true,
        },
      });
      const whole = await inversionEdit(m, clip, p);
      // Chunks of 6 with 2 frames of overlap: [0, 6) and [4, 12).
      const run = async (carry: boolean) => {
        const outs: ChunkOutput[] = [];
        const r = await editInChunks(clip, 6, 2, async (f, _span, anchor) => {
          const out = carry
            ? await inversionChunk(m, f, p, anchor ? { anchor } : { keep: 1 })
            : await inversionMethod(m, f, p);
          outs.push(out);
          return out;
        });
        return { frames: r.frames, outs };
      };
      const carried = await run(true);
      const own = await run(false);
      const perFrame = (b: ImageBatch) =>
        Array.from({ length: 12 }, (_, i) => maxDiff(b.data, whole.frames.data, i * per, (i + 1) * per));
      const dCarried = perFrame(carried.frames);
      const dOwn = perFrame(own.frames);
      const fmt = (d: number[]) => d.map((v) => v.toFixed(4)).join(' ');
      console.log(`max Δ to the unchunked edit, frame by frame\n  carried ${fmt(dCarried)}\n  own     ${fmt(dOwn)}`);
      expect(carried.outs[1].stages).toEqual([
        'automatic mask',
        'mask refinement',
        'latent correction',
        'anchor statistics',
        'cross-frame attention',
        CARRIED_ANCHOR_STAGE,
      ]);
      // The mask and the correspondences of the chunk's own frames are what they are without the carry: frame 0 is
      // nobody's neighbour there.
      expect(carried.outs[1].latentMask).toEqual(own.outs[1].latentMask);
      // Exact equality cannot hold at the seam: the second chunk's first frames have no neighbour before them to smooth
      // and correct with (the crossfade is for that); two corrected steps carry it two frames on. Past that, every
      // frame reads frame 0's K/V and statistics exactly as the unchunked edit does.
      for (let f = 0; f < 12; f++) if (f < 4 || f >= 7) expect(dCarried[f]).toBeLessThanOrEqual(1e-5);
      for (let f = 6; f < 12; f++) expect(dOwn[f]).toBeGreaterThan(1e-3);
      expect(Math.max(...dCarried.slice(4))).toBeLessThan(Math.max(...dOwn.slice(4)));
    } finally {
      await m.release();
    }
  }, 180_000);

  it('keeps only each chunk’s own frames in the inversion cache, and carries frame 0’s mask with it', async () => {
    await withModel(dir(), tmp, async (m) => {
      const clip = movingFrames(FRAMES, 64);
      const hw = 64 * 64;
      // A per-frame matte: a band that moves a few pixels a frame.
      const matte = imageMask(FRAMES, (f, x) => (x >= 8 + 4 * f && x < 40 + 4 * f ? 1 : 0));
      const maskOf = (span: ChunkSpan) => ({
        ...matte,
        n: span.count,
        data: matte.data.slice(span.start * hw, (span.start + span.count) * hw),
      });
      const p = params(FIRST);
      const whole = await inversionEdit(m, clip, { ...p, mask: matte });
      const store = memoryStore();
      const edit = (q: InversionEditParams, carry: boolean, s?: ReturnType<typeof memoryStore>) =>
        chunked(m, clip, q, carry, s, (span) => ({ mask: maskOf(span) }));
      const first = await edit(p, true, store);
      expect(maxDiff(first.frames.data, whole.frames.data)).toBeLessThanOrEqual(1e-5);
      expect(first.chunks.map((c) => c.out.cacheHit)).toEqual([false, false, false]);
      for (const { span, out } of first.chunks) {
        expect(out.latentMask).toHaveLength(span.count * (64 / m.info.vaeScale) ** 2);
        const entry = store.entries.get(`${span.start}+${span.count}`)!;
        expect(entry.n).toBe(span.count);
        entry.latents.forEach((l) =>
          expect(l.length).toBe(span.count * first.chunks[0].out.anchor!.trajectory.latents[0].length),
        );
      }

      // A plain edit reads the same entries back (and adds its source steps to them), as if it had inverted itself.
      const plain = params(null);
      const fresh = await edit(plain, false);
      const fromCache = await edit(plain, false, store);
      expect(fromCache.chunks.map((c) => c.out.cacheHit)).toEqual([true, true, true]);
      expect(maxDiff(fromCache.frames.data, fresh.frames.data)).toBeLessThanOrEqual(1e-6);
      // And the carried edit again, from entries that now hold source steps.
      const again = await edit(p, true, store);
      expect(again.chunks.map((c) => c.out.cacheHit)).toEqual([true, true, true]);
      expect(maxDiff(again.frames.data, first.frames.data)).toBe(0);
    });
  }, 180_000);
});

describe('a job with cross-frame attention on a clip longer than a chunk', () => {
  let worker: PipelineWorker;
  let clip: string;
  const FPS = 8;
  const LENGTH = CHUNK_FRAMES + 4;
  beforeAll(async () => {
    worker = await PipelineWorker.start(path.join(tmp, 'tiny-sd'), {
      threads: 1,
      graphCache: path.join(tmp, 'graph-cache'),
    });
    clip = path.join(tmp, 'long.mp4');
    await makeTestClip({
      file: clip,
      width: 64,
      height: 64,
      fps: { num: FPS, den: 1 },
      frames: LENGTH,
      content: 'moving-square',
    });
  });
  afterAll(() => worker?.terminate());

  let n = 0;
  const run = async (dataDir: string, crossFrame: boolean): Promise<Job> => {
    const m = await JobManager.open({ worker, dataDir: path.join(tmp, dataDir), version: 'test' });
    const req = JobRequest.parse({
      source: { path: clip, in: 0, out: LENGTH / FPS },
      prompt: 'a blue square',
      sourcePrompt: 'a red square',
      steps: 2,
      guidance: 3,
      attention: crossFrame ? { crossFrame: {} } : {},
      output: { path: path.join(tmp, `job-${++n}.mp4`) },
    });
    const job = await m.submit(req);
    const done = await new Promise<Job>((resolve) => {
      const off = m.subscribe(job.id, (e: JobEvent) => {
        if (e.type !== 'done') return;
        off();
        resolve(e.job);
      });
    });
    expect(done.error).toBeUndefined();
    expect(done.state).toBe('succeeded');
    return done;
  };
  const pixels = async (j: Job) => Buffer.concat(await displayFrames(j.result!.path, LENGTH));
  const maxByteDiff = (a: Buffer, b: Buffer) => a.reduce((d, v, i) => Math.max(d, Math.abs(v - b[i])), 0);

  it('carries frame 0 into the second chunk at K × 4 UNet evaluations, and its cache entries serve a plain job', async () => {
    const withCarry = await run('jobs-a', true);
    const plain = await run('jobs-b', false);
    expect(withCarry.result!.frames).toBe(LENGTH);
    expect(withCarry.result!.stages).toEqual(expect.arrayContaining(['cross-frame attention', CARRIED_ANCHOR_STAGE]));
    expect(plain.result!.stages ?? []).not.toContain(CARRIED_ANCHOR_STAGE);
    // Two chunks ([0, 16) and [12, 20)): frame 0's 2 steps × 4 UNet items (guidance, direct inversion) in the second.
    expect(withCarry.result!.unetEvaluations - plain.result!.unetEvaluations).toBe(2 * 4);

    // The cross-frame job's cache entries are the chunks' own trajectories: a plain job reads them as its own.
    const plainFromCache = await run('jobs-a', false);
    expect(plainFromCache.result!.inversionCacheHit).toBe(true);
    expect(plainFromCache.result!.frames).toBe(LENGTH);
    expect(maxByteDiff(await pixels(plainFromCache), await pixels(plain))).toBeLessThanOrEqual(1);
    // And the cross-frame job again, from entries that now also hold the plain job's source steps.
    const again = await run('jobs-a', true);
    expect(again.result!.inversionCacheHit).toBe(true);
    expect(maxByteDiff(await pixels(again), await pixels(withCarry))).toBeLessThanOrEqual(1);
  }, 300_000);
});
