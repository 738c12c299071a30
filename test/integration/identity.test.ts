// A same-prompt edit is the identity: with target prompt = source prompt and direct inversion, the inversion edit
// gives back the decoded source reconstruction (decode(encode(frames))) exactly, with every default consistency stage
// on (automatic mask, mask smoothing, soft edge, latent correction, chunk overlap), with and without a mask, on
// textured footage. The cross-frame stages act on the edit's deviation from the source trajectory, so a zero
// deviation stays zero; a real edit still changes the object.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ImageBatch, MaskBatch } from '../../engine/src/diffusion/images';
import { alignToAnchor } from '../../engine/src/editing/stages/anchor-stats';
import type { ConsistencyParams } from '../../engine/src/editing/types';
import {
  editFromInversion,
  inversionEdit,
  invertFrames,
  type InversionEditParams,
} from '../../engine/src/editing/pipelines/inversion-edit';
import { neighbourFields, type NeighbourFields } from '../../engine/src/flow/correspondence';
import { correctLatents } from '../../engine/src/editing/stages/latent-correction';
import { editInChunks } from '../../engine/src/editing/long-clip';
import { defaultConsistency } from '../../engine/src/eval/harness';
import { colourError, maskedPsnr, psnr, regionOcclusion, warpError } from '../../engine/src/eval/metrics';
import { makeScene } from '../../engine/src/eval/synthetic-scene';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import { ORACLE } from '../../engine/src/models/generate/oracle-spec';
import { generateTinySd } from '../../engine/src/models/generate/tiny-sd';
import { loadDiffusionModel, type DiffusionModel } from '../../engine/src/models/sd-model';

type Rgb = [number, number, number];
const RED = [...ORACLE.colours.red] as Rgb;
const BLUE = [...ORACLE.colours.blue] as Rgb;
const SRC = 'a red car on a gray road';
const TGT = 'a blue car on a gray road';

let root: string;
let oracle: DiffusionModel;
let tiny: DiffusionModel;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'identity-'));
  generateOracle(path.join(root, 'oracle'));
  generateTinySd(path.join(root, 'tiny'), 'optimum', 1);
  oracle = await loadDiffusionModel(path.join(root, 'oracle'));
  tiny = await loadDiffusionModel(path.join(root, 'tiny'));
});

afterAll(async () => {
  await oracle?.release();
  await tiny?.release();
  fs.rmSync(root, { recursive: true, force: true });
});

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

/** Value noise on an integer lattice with smoothstep interpolation; `table` is a 64×64 grid of values in [−1, 1]. */
function valueNoise(table: Float32Array, x: number, y: number): number {
  const ix = Math.floor(x);
  const iy = Math.floor(y);
  const fx = x - ix;
  const fy = y - iy;
  const sx = fx * fx * (3 - 2 * fx);
  const sy = fy * fy * (3 - 2 * fy);
  const at = (a: number, b: number) => table[(((b % 64) + 64) % 64) * 64 + (((a % 64) + 64) % 64)];
  const top = at(ix, iy) + sx * (at(ix + 1, iy) - at(ix, iy));
  const bottom = at(ix, iy + 1) + sx * (at(ix + 1, iy + 1) - at(ix, iy + 1));
  return top + sy * (bottom - top);
}

/**
 * Natural-image-like footage: a fractal (5-octave, 1/f) value-noise background, slightly different per channel,
 * panning 1.5 px/frame, a red textured square moving 3 px/frame over it, and independent per-frame speckle.
 */
function fractalClip(
  frames: number,
  width: number,
  height: number,
  seed = 3,
): { frames: ImageBatch; objectMask: MaskBatch } {
  const rnd = lcg(seed);
  const tables = [0, 1, 2].map(() => Float32Array.from({ length: 64 * 64 }, () => 2 * rnd() - 1));
  const fbm = (c: number, x: number, y: number) => {
    let v = 0;
    let amp = 0.5;
    let f = 1 / 16;
    for (let o = 0; o < 5; o++) {
      v += amp * valueNoise(tables[o === 0 ? 0 : (c + o) % 3], x * f + 7 * o, y * f + 3 * o);
      amp *= 0.5;
      f *= 2;
    }
    return v;
  };
  const hw = width * height;
  const data = new Float32Array(frames * 3 * hw);
  const mask = new Float32Array(frames * hw);
  const side = Math.round(height * 0.4);
  for (let t = 0; t < frames; t++) {
    const ox = 4 + 3 * t;
    const oy = Math.round(height * 0.3);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const inside = x >= ox && x < ox + side && y >= oy && y < oy + side;
        mask[t * hw + y * width + x] = inside ? 1 : 0;
        const lum = fbm(0, x + 1.5 * t, y + 0.5 * t);
        for (let c = 0; c < 3; c++) {
          const base = inside
            ? RED[c] + 0.15 * fbm(c, x - ox, y - oy)
            : 0.6 * lum + 0.15 * fbm(c, x + 1.5 * t + 11, y + 0.5 * t);
          const speckle = 0.05 * (2 * rnd() - 1);
          data[(t * 3 + c) * hw + y * width + x] = Math.max(-1, Math.min(1, base + speckle));
        }
      }
    }
  }
  return { frames: { n: frames, height, width, data }, objectMask: { n: frames, height, width, data: mask } };
}

/** decode(encode(frames)): what an edit that changes nothing must give back. */
async function reconstruction(model: DiffusionModel, frames: ImageBatch): Promise<ImageBatch> {
  const traj = await invertFrames(model, frames, { sourcePrompt: SRC, steps: 1, strength: 1, batchSize: frames.n });
  return model.decodeLatents(traj.latents[0], frames.n, traj.height, traj.width);
}

function maxAbsDiff(a: ImageBatch, b: ImageBatch): number {
  expect(a.data.length).toBe(b.data.length);
  let m = 0;
  for (let i = 0; i < a.data.length; i++) m = Math.max(m, Math.abs(a.data[i] - b.data[i]));
  return m;
}

/** The job defaults with every cross-frame stage on, anchor statistics included. */
function everyStage(): ConsistencyParams {
  return { ...defaultConsistency(), anchorStats: true };
}

describe('cross-frame stages with zero deviation from the source', () => {
  // A textured latent clip whose correspondences are non-trivial.
  const n = 4;
  const C = 4;
  const h = 12;
  const w = 16;
  const hw = h * w;
  const rnd = lcg(11);
  const source = Float32Array.from({ length: n * C * hw }, () => 4 * rnd() - 2);
  const fields: NeighbourFields = neighbourFields(source, n, C, h, w, { radius: 3 });
  const full = new Float32Array(n * hw).fill(1);

  it('latent correction is the identity when z equals the source at the same level', () => {
    const z = Float32Array.from(source);
    let used = 0;
    for (let i = 0; i < n * hw; i++) if (fields.nextSim[i] >= 0 || fields.prevSim[i] >= 0) used++;
    expect(used).toBeGreaterThan(0.5 * n * hw);
    // Without the reference the same pass changes the latents (it blends them, not their deviations).
    const plain = Float32Array.from(source);
    correctLatents(plain, n, C, hw, full, fields, { weights: [0.25, 0.5, 0.25], minSimilarity: -1 });
    expect(maxAbs(plain, source)).toBeGreaterThan(0.1);
    correctLatents(z, n, C, hw, full, fields, { weights: [0.25, 0.5, 0.25], minSimilarity: -1, reference: source });
    expect(maxAbs(z, source)).toBe(0);
  });

  it('latent correction blends the deviations: z ← source + blend(z − source)', () => {
    // The old unit example as deviations on top of a textured source.
    const N = 3;
    const P = 4;
    const src = Float32Array.from({ length: N * P }, () => 4 * rnd() - 2);
    const d = [0, 0, 0, 0, 3, 3, 3, 3, 6, 6, 6, 6];
    const z = Float32Array.from(src, (v, i) => v + d[i]);
    const mask = Float32Array.from([1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1]);
    const id = Int32Array.from({ length: N * P }, (_, i) => i % P);
    const sim = new Float32Array(N * P).fill(1);
    correctLatents(
      z,
      N,
      1,
      P,
      mask,
      { n: N, h: 1, w: P, prev: id, next: id, prevSim: sim, nextSim: sim },
      { weights: [0.25, 0.5, 0.25], minSimilarity: 0.5, reference: src },
    );
    const dev = Array.from(z, (v, i) => v - src[i]);
    const want = [0.75, 0.75, 0, 0, 3, 3, 3, 3, 5.25, 5.25, 6, 6];
    dev.forEach((v, i) => expect(v).toBeCloseTo(want[i], 5));
  });

  it('anchor statistics are the identity when z equals the source, and align the deviations otherwise', () => {
    const z = Float32Array.from(source);
    alignToAnchor(z, full, n, C, hw, { reference: source });
    expect(maxAbs(z, source)).toBe(0);
    // A deviation that is a per-frame constant offset: aligned to the anchor's (frame 0's) offset.
    const shifted = Float32Array.from(source, (v, i) => v + 0.5 + Math.floor(i / (C * hw)));
    alignToAnchor(shifted, full, n, C, hw, { reference: source });
    for (let i = 0; i < shifted.length; i++) expect(shifted[i] - source[i]).toBeCloseTo(0.5, 4);
  });
});

function maxAbs(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('same-prompt edit on textured footage (oracle)', () => {
  const clip = fractalClip(8, 48, 32);
  const base: InversionEditParams = {
    sourcePrompt: SRC,
    prompt: SRC,
    steps: 20,
    strength: 1,
    guidance: 7.5,
    directInversion: true,
    batchSize: 4,
  };
  let recon: ImageBatch;
  beforeAll(async () => {
    recon = await reconstruction(oracle, clip.frames);
  });

  it.each([
    ['no mask', {}],
    ['the automatic mask', { autoMask: { threshold: 0.5 } }],
    ['a user mask', { mask: clip.objectMask }],
  ] as const)('with every stage on and %s gives back the decoded source exactly', async (_, extra) => {
    const r = await inversionEdit(oracle, clip.frames, { ...base, ...extra, consistency: everyStage() });
    const diff = maxAbsDiff(r.frames, recon);
    console.log(`identity, oracle, ${_}: max |diff| ${diff}, PSNR ${psnr(r.frames, recon).toFixed(1)} dB`);
    expect(diff).toBe(0);
  });

  it('in overlapping chunks (the job default overlap) too', async () => {
    const c = everyStage();
    const out = await editInChunks(clip.frames, 4, c.chunkOverlap ?? 4, async (f) => {
      const r = await inversionEdit(oracle, f, { ...base, autoMask: { threshold: 0.5 }, consistency: c });
      return { frames: r.frames, mask: r.latentMask };
    });
    expect(maxAbsDiff(out.frames, recon)).toBe(0);
    expect(out.mask!.every((v) => v === 0)).toBe(true);
  });

  it('guidance 1 (no unconditional branch) as well', async () => {
    const r = await inversionEdit(oracle, clip.frames, { ...base, guidance: 1, consistency: everyStage() });
    expect(maxAbsDiff(r.frames, recon)).toBe(0);
  });
});

describe('same-prompt edit on textured footage (tiny-sd, a convolutional UNet and VAE)', () => {
  it('with every stage on, with no mask and with the automatic mask, gives back the decoded source', async () => {
    const clip = fractalClip(5, 64, 48, 9);
    const recon = await reconstruction(tiny, clip.frames);
    const base: InversionEditParams = {
      sourcePrompt: SRC,
      prompt: SRC,
      steps: 8,
      strength: 1,
      guidance: 7.5,
      directInversion: true,
      batchSize: 5,
    };
    for (const extra of [{}, { autoMask: { threshold: 0.5 } }]) {
      const r = await inversionEdit(tiny, clip.frames, { ...base, ...extra, consistency: everyStage() });
      const diff = maxAbsDiff(r.frames, recon);
      const db = psnr(r.frames, recon);
      console.log(
        `identity, tiny-sd, ${extra.autoMask ? 'automatic mask' : 'no mask'}: max |diff| ${diff}, PSNR ${db.toFixed(1)} dB, correspondences ${r.correspondences}`,
      );
      expect(db).toBeGreaterThanOrEqual(60);
      expect(diff).toBeLessThan(1e-3);
      // A re-edit from the cached trajectory (the source branch's steps recorded, only the target branch runs).
      expect(r.trajectory.sourceSteps).toBeDefined();
      const again = await editFromInversion(tiny, r.trajectory, { ...base, ...extra, consistency: everyStage() });
      const reDb = psnr(again.frames, recon);
      console.log(
        `identity, tiny-sd, re-edit from the cached source steps: max |diff| ${maxAbsDiff(again.frames, recon)}, PSNR ${reDb.toFixed(1)} dB`,
      );
      expect(reDb).toBeGreaterThanOrEqual(60);
    }
  });
});

describe('a real edit still edits', () => {
  it('red → blue with the default stages turns the textured object blue and keeps the background', async () => {
    const scene = makeScene({
      frames: 8,
      width: 48,
      height: 32,
      background: [0, 0, 0],
      pattern: { amplitude: 0.25, period: 12 },
      noise: 0.08,
      frameNoise: 0.03,
      seed: 5,
      object: { shape: 'square', colour: RED, size: 12, centre: [10, 16], velocity: [3, 0] },
    });
    const r = await inversionEdit(oracle, scene.frames, {
      sourcePrompt: SRC,
      prompt: TGT,
      steps: 25,
      strength: 1,
      guidance: 1,
      directInversion: true,
      batchSize: 8,
      autoMask: { threshold: 0.5 },
      consistency: defaultConsistency(),
    });
    const before = colourError(scene.frames, scene.objectMask, BLUE, 'inside');
    const after = colourError(r.frames, scene.objectMask, BLUE, 'inside');
    const bg = maskedPsnr(r.frames, scene.frames, scene.objectMask, 'outside');
    const objOcc = regionOcclusion(scene.occlusion, scene.objectMask);
    const objWe = warpError(r.frames, scene.flow, objOcc) / warpError(scene.frames, scene.flow, objOcc);
    const we = warpError(r.frames, scene.flow, scene.occlusion) / warpError(scene.frames, scene.flow, scene.occlusion);
    console.log(
      `red→blue, default stages: colour error ${before.toFixed(3)} → ${after.toFixed(3)}, background ${bg.toFixed(1)} dB, WE ratio ${we.toFixed(3)}, object WE ratio ${objWe.toFixed(3)}`,
    );
    // Before the stages acted on deviations this measured 0.182 (now 0.201): the edit is as complete as it was.
    expect(after).toBeLessThan(0.22);
    expect(after).toBeLessThan(0.1 * before);
    expect(bg).toBeGreaterThan(30);
  });
});
