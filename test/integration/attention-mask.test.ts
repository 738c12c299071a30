// The automatic mask read from cross-attention (editing/stages/auto-mask.ts, masks/word-mask.ts: FateZero's blend
// mask) and word swap through the real loop on oracle-attn, whose cross-attention maps are the exact mixture
// responsibilities (docs/ORACLE.md): on a red square over a gray road edited to blue, the mask from the changed words'
// maps covers the square (dilated by FateZero's 3×3 max-pool) and leaves the rest of the road; "both" averages it
// with the prompts' difference; the square turns blue. A model without cross-attention, or no source prompt, is
// refused at submission with the field to fix.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { JobRequest } from '../../engine/src/api/schemas';
import { imageBatch } from '../../engine/src/diffusion/images';
import { editFromInversion, invertFrames } from '../../engine/src/editing/pipelines/inversion-edit';
import type { AutoMaskSource, EditParams } from '../../engine/src/editing/types';
import { planJob } from '../../engine/src/jobs/runner';
import type { ProblemError } from '../../engine/src/jobs/service';
import { makeTestClip } from '../../engine/src/media';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import { generateOracleAttn } from '../../engine/src/models/generate/oracle-attn';
import type { DiffusionModel } from '../../engine/src/models/sd-model';
import { withModel } from '../support/edit-models';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'reshoot-attention-mask-'));
  generateOracleAttn(path.join(tmp, 'oracle-attn'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const SOURCE = 'a red car on a gray road';
const TARGET = 'a blue car on a gray road';
const S = 24;
/** The square's pixels: rows and columns 8 … 15. */
const inSquare = (p: number) => Math.floor(p / S) >= 8 && Math.floor(p / S) < 16 && p % S >= 8 && p % S < 16;

/** Two frames of a saturated red square on a gently textured gray road. */
function clip() {
  const hw = S * S;
  const data = new Float32Array(2 * 3 * hw);
  for (let f = 0; f < 2; f++)
    for (let p = 0; p < hw; p++) {
      const red = [0.8, -0.8, -0.8];
      const gray = 0.1 * Math.sin(p * 0.7 + f);
      for (let c = 0; c < 3; c++) data[(f * 3 + c) * hw + p] = inSquare(p) ? red[c] : gray;
    }
  return imageBatch(2, S, S, data);
}

const params = (from: AutoMaskSource | null, over: Partial<EditParams> = {}): EditParams => ({
  prompt: TARGET,
  sourcePrompt: SOURCE,
  guidance: 1,
  directInversion: true,
  batchSize: 2,
  autoMask: from ? { threshold: 0.5, from } : null,
  ...over,
});

function maskFigures(mask: Float32Array) {
  const hw = S * S;
  let hit = 0;
  let square = 0;
  let selected = 0;
  for (let i = 0; i < mask.length; i++) {
    const m = mask[i] > 0.5;
    if (inSquare(i % hw)) {
      square++;
      if (m) hit++;
    }
    if (m) selected++;
  }
  return { recall: hit / square, precision: selected ? hit / selected : 0 };
}

describe('on oracle-attn', () => {
  it("reads the mask from the changed words' maps, and word swap keeps the edit where the source's maps are", async () => {
    await withModel(path.join(tmp, 'oracle-attn'), tmp, async (m) => {
      const traj = await invertFrames(m, clip(), { sourcePrompt: SOURCE, steps: 10, strength: 1, batchSize: 2 });
      const byDifference = await editFromInversion(m, traj, params('difference'));
      const byAttention = await editFromInversion(m, traj, params('attention'));
      const both = await editFromInversion(m, traj, params('both'));
      const fig = (r: { latentMask?: Float32Array }) => maskFigures(r.latentMask!);
      console.log(
        `mask recall/precision: difference ${JSON.stringify(fig(byDifference))}, attention ${JSON.stringify(fig(byAttention))}, both ${JSON.stringify(fig(both))}`,
      );
      expect(byAttention.stages).toEqual(['automatic mask']);
      // The whole square, and around it no more than the max-pool's one-pixel ring: (8 + 2)² covers 64 of 100.
      expect(fig(byAttention).recall).toBe(1);
      expect(fig(byAttention).precision).toBeGreaterThanOrEqual(0.6);
      expect(fig(both).recall).toBe(1);
      expect(Array.from(byAttention.latentMask!)).not.toEqual(Array.from(byDifference.latentMask!));
      // The square turns blue (b up from −0.8, r down from 0.8), the road outside the mask stays.
      const hw = S * S;
      const centre = 12 * S + 12;
      const px = (data: Float32Array, c: number) => data[c * hw + centre];
      expect(px(byAttention.frames.data, 2)).toBeGreaterThan(0.5);
      expect(px(byAttention.frames.data, 0)).toBeLessThan(-0.5);
      const corner = 0;
      expect(Math.abs(byAttention.frames.data[corner] - clip().data[corner])).toBeLessThan(1e-5);
      // Word swap through the loop: the target's maps are the source's, the square still turns blue.
      const swapped = await editFromInversion(m, traj, params(null, { wordSwap: { steps: 1 } }));
      expect(swapped.stages).toEqual(['word swap']);
      expect(px(swapped.frames.data, 2)).toBeGreaterThan(0.5);
    });
  }, 60_000);
});

describe('a job asking for an attention mask', () => {
  it('is refused without cross-attention (the oracle) and without a source prompt, on the field to fix', async () => {
    const file = path.join(tmp, 'clip.mp4');
    await makeTestClip({ file, frames: 4, width: 64, height: 48, fps: { num: 24, den: 1 } });
    const out = path.join(tmp, 'out.mp4');
    const req = (sourcePrompt: string) =>
      JobRequest.parse({
        source: { path: file, in: 0, out: 0.1 },
        prompt: TARGET,
        sourcePrompt,
        mask: { type: 'auto', from: 'attention' },
        output: { path: out },
      });
    const problem = (m: DiffusionModel, r: JobRequest) =>
      planJob(r, m.info, out).then(
        () => undefined,
        (e: ProblemError) => e.problem,
      );
    await withModel(path.join(tmp, 'oracle-attn'), tmp, async (m) => {
      expect(await problem(m, req(SOURCE))).toBeUndefined();
      const none = await problem(m, req(''));
      expect(none).toMatchObject({ status: 422, title: 'Source prompt needed', field: 'sourcePrompt' });
    });
    generateOracle(path.join(tmp, 'oracle'));
    await withModel(path.join(tmp, 'oracle'), tmp, async (m) => {
      const refused = await problem(m, req(SOURCE));
      expect(refused).toMatchObject({ status: 422, title: 'Mask not available', field: 'mask.from' });
      expect(refused?.detail).toMatch(/this model has none.*use mask\.from "difference"/);
    });
    expect(fs.existsSync(out)).toBe(false);
  }, 60_000);
});
