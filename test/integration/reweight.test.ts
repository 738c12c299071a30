// Prompt-to-prompt's attention re-weighting (editing/stages/reweight.ts) through the real denoising loop, on a
// real-export fixture (folded heads) and a generated tiny-sd (split heads), random weights: a scale of 1 changes
// nothing, 0 changes the edit; the scale reaches exactly the word's tokens of the target's conditional branch; a job
// naming a word the prompt lacks, or on a model without cross-attention, is refused at submission.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { JobRequest } from '../../engine/src/api/schemas';
import type { EditContext, UnetCallInfo } from '../../engine/src/editing/loop/stage';
import { editFromInversion, invertFrames } from '../../engine/src/editing/pipelines/inversion-edit';
import { tokenSpans } from '../../engine/src/editing/prompt-alignment';
import { reweightStage } from '../../engine/src/editing/stages/reweight';
import type { EditParams } from '../../engine/src/editing/types';
import { planJob } from '../../engine/src/jobs/runner';
import type { ProblemError } from '../../engine/src/jobs/service';
import { makeTestClip } from '../../engine/src/media';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import type { DiffusionModel } from '../../engine/src/models/sd-model';
import { crossAttentionMapsPorts } from '../../engine/src/onnx/passes/cross-attention-maps';
import {
  generateStageModels,
  maxDiff,
  movingFrames as frames,
  REAL_EXPORT,
  stageModels,
  withModel,
} from '../support/edit-models';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'reshoot-reweight-'));
  generateStageModels(tmp);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const MODELS = stageModels(() => tmp);

const PROMPT = 'a blue car on a gray road';
const params = (reweight: EditParams['reweight']): EditParams => ({
  prompt: PROMPT,
  sourcePrompt: 'a red car on a gray road',
  guidance: 3,
  directInversion: true,
  batchSize: 2,
  reweight,
});

describe.each(MODELS)('%s', (_label, dir) => {
  it('scale 1 changes nothing, scale 0 or 3 changes the edit', async () => {
    await withModel(dir(), tmp, async (m) => {
      const traj = await invertFrames(m, frames(2, 64), {
        sourcePrompt: 'a red car on a gray road',
        steps: 3,
        strength: 1,
        batchSize: 2,
      });
      const plain = await editFromInversion(m, traj, params([]));
      const one = await editFromInversion(m, traj, params([{ word: 'blue', scale: 1 }]));
      expect(one.stages).toEqual(['attention re-weighting']);
      expect(maxDiff(one.frames.data, plain.frames.data)).toBeLessThanOrEqual(1e-6);
      for (const scale of [0, 3]) {
        const r = await editFromInversion(m, traj, params([{ word: 'Blue', scale }]));
        const d = maxDiff(r.frames.data, plain.frames.data);
        console.log(`reweight "blue" × ${scale}: max Δ ${d.toFixed(4)}`);
        expect(d).toBeGreaterThan(1e-3);
      }
    });
  }, 120_000);

  it("feeds the scale to the word's tokens of the target's conditional items only, in the site's layout", async () => {
    await withModel(dir(), tmp, async (m) => {
      const stage = reweightStage();
      const ctx = { model: m, params: params([{ word: 'blue', scale: 0.25 }]) } as unknown as EditContext;
      expect(await stage.plan(ctx)).toBe(true);
      const call: UnetCallInfo = {
        step: 1,
        level: 3,
        timestep: 901,
        start: 0,
        count: 2,
        branches: [
          { latent: 'target', prompt: PROMPT },
          { latent: 'target', prompt: '' },
          { latent: 'source', prompt: 'a red car on a gray road' },
          { latent: 'source', prompt: '' },
        ],
      };
      const feeds = stage.beforeUnet!(call)!;
      const cross = m.info.attention.sites.filter((s) => s.kind === 'cross');
      expect(Object.keys(feeds).sort()).toEqual(cross.map((s) => crossAttentionMapsPorts(s.module).scale).sort());
      const blue = tokenSpans(m.tokenizer, PROMPT).find((s) => s.word === 'blue')!;
      const T = m.tokenizer.maxLength;
      for (const s of cross) {
        const t = feeds[crossAttentionMapsPorts(s.module).scale];
        const perItem = s.layout === 'folded' ? s.heads : 1;
        expect(t.dims).toEqual(s.layout === 'folded' ? [8 * s.heads, 1, T] : [8, 1, 1, T]);
        for (let item = 0; item < 8; item++)
          for (let h = 0; h < perItem; h++) {
            const row = t.data.subarray((item * perItem + h) * T, (item * perItem + h + 1) * T);
            for (let p = 0; p < T; p++) {
              const scaled = item < 2 && p >= blue.start && p < blue.end;
              expect(row[p]).toBe(scaled ? 0.25 : 1);
            }
          }
      }
    });
  });
});

describe('a job asking for re-weighting', () => {
  it('is refused at submission for a word the prompt lacks, or a model without cross-attention', async () => {
    const clip = path.join(tmp, 'clip.mp4');
    await makeTestClip({ file: clip, frames: 4, width: 64, height: 48, fps: { num: 24, den: 1 } });
    const out = path.join(tmp, 'out.mp4');
    const req = (reweight: { word: string; scale: number }[]) =>
      JobRequest.parse({
        source: { path: clip, in: 0, out: 0.1 },
        prompt: PROMPT,
        attention: { reweight },
        output: { path: out },
      });
    const problem = (m: DiffusionModel, r: JobRequest) =>
      planJob(r, m.info, out).then(
        () => undefined,
        (e: ProblemError) => e.problem,
      );
    await withModel(path.join(REAL_EXPORT, 'sd15-tiny'), tmp, async (m) => {
      expect(await problem(m, req([{ word: 'blue', scale: 2 }]))).toBeUndefined();
      const missing = await problem(m, req([{ word: 'green', scale: 2 }]));
      expect(missing).toMatchObject({ status: 422, title: 'Word not in prompt', field: 'attention.reweight' });
      expect(missing?.detail).toMatch(/"green" is not a word of the prompt "a blue car on a gray road"/);
      const two = await problem(m, req([{ word: 'blue car', scale: 2 }]));
      expect(two?.detail).toMatch(/"blue car" is several words; give one word/);
    });
    const oracle = path.join(tmp, 'oracle');
    generateOracle(oracle);
    await withModel(oracle, tmp, async (m) => {
      const refused = await problem(m, req([{ word: 'blue', scale: 2 }]));
      expect(refused).toMatchObject({ status: 422, field: 'attention.reweight' });
      expect(refused?.detail).toMatch(/this model has none.*leave attention\.reweight empty/);
    });
    expect(fs.existsSync(out)).toBe(false);
    expect(() => req([{ word: 'blue', scale: 11 }])).toThrow(/above 10 only burns the image/);
  }, 60_000);
});
