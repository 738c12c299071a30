// Cross-frame attention (editing/stages/cross-frame.ts) through the real denoising loop, on the real-export fixtures
// (folded heads, baddbmm) and a generated tiny-sd (split heads, Kᵀ only), random weights: what must hold whatever
// the weights. Frame 0 attends only to itself, so it comes out as without the stage; on a clip whose frames are all
// the same, every frame's anchor K/V are its own, so extend mode (duplicated keys) and replace mode leave the edit as
// it was; a same-prompt edit with direct inversion still gives the input back (the source branch runs with the stage);
// source steps are not reused from, nor handed back to, a run without the stage.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { JobRequest } from '../../engine/src/api/schemas';
import type { ImageBatch } from '../../engine/src/diffusion/images';
import { editFromInversion, invertFrames } from '../../engine/src/editing/pipelines/inversion-edit';
import type { CrossFrameParams, EditParams, InvertedTrajectory } from '../../engine/src/editing/types';
import { planJob } from '../../engine/src/jobs/runner';
import type { ProblemError } from '../../engine/src/jobs/service';
import { makeTestClip } from '../../engine/src/media';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import { loadDiffusionModel, type DiffusionModel } from '../../engine/src/models/sd-model';
import { generateStageModels, maxDiff, movingFrames as frames, stageModels, withModel } from '../support/edit-models';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'reshoot-cross-frame-'));
  generateStageModels(tmp);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const MODELS = stageModels(() => tmp);

const params = (crossFrame: CrossFrameParams | null, prompt = 'a blue car'): EditParams => ({
  prompt,
  sourcePrompt: 'a red car',
  guidance: 3,
  directInversion: true,
  batchSize: 2,
  crossFrame,
});

const invert = (m: DiffusionModel, clip: ImageBatch) =>
  invertFrames(m, clip, { sourcePrompt: 'a red car', steps: 3, strength: 1, batchSize: 2 });

/** Source steps dropped, so every edit below runs its source branch. */
const fresh = (t: InvertedTrajectory): InvertedTrajectory => ({ ...t, sourceSteps: undefined });

describe.each(MODELS)('%s', (_label, dir) => {
  it('leaves frame 0 as it was and changes the frames that read its keys and values', async () => {
    await withModel(dir(), tmp, async (m) => {
      const traj = await invert(m, frames(3, 64));
      const plain = await editFromInversion(m, fresh(traj), params(null));
      const per = plain.frames.data.length / 3;
      for (const anchors of ['first', 'first+previous'] as const) {
        const cf = await editFromInversion(m, fresh(traj), params({ anchors, mode: 'extend', layers: 'all' }));
        const d0 = maxDiff(cf.frames.data, plain.frames.data, 0, per);
        const d1 = maxDiff(cf.frames.data, plain.frames.data, per, 2 * per);
        const d2 = maxDiff(cf.frames.data, plain.frames.data, 2 * per);
        console.log(
          `${anchors}: frame 0 Δ ${d0.toExponential(2)}, frame 1 Δ ${d1.toFixed(4)}, frame 2 Δ ${d2.toFixed(4)}`,
        );
        expect(cf.stages).toEqual(['cross-frame attention']);
        expect(plain.stages).toEqual([]);
        expect(d0).toBeLessThanOrEqual(1e-5);
        expect(d1).toBeGreaterThan(1e-3);
        expect(d2).toBeGreaterThan(1e-3);
      }
    });
  }, 120_000);

  it('on a clip of identical frames, extend and replace modes change nothing (each frame’s anchors are itself)', async () => {
    await withModel(dir(), tmp, async (m) => {
      const traj = await invert(m, frames(3, 64, true));
      const plain = await editFromInversion(m, fresh(traj), params(null));
      for (const [anchors, mode] of [
        ['first', 'extend'],
        ['first', 'replace'],
        ['first+previous', 'replace'],
        ['all', 'extend'],
      ] as const) {
        const cf = await editFromInversion(m, fresh(traj), params({ anchors, mode, layers: 'all' }));
        const d = maxDiff(cf.frames.data, plain.frames.data);
        console.log(`identical frames, ${anchors} ${mode}: max Δ ${d.toExponential(2)}`);
        // Replace mode with one anchor swaps a frame's K/V for equal ones: exact up to batch composition. Extend mode,
        // and two anchors, double every key: equal in exact arithmetic but a softmax over 2N terms in float32, which
        // random weights amplify over the steps (1e-3 on sd15-tiny); a wrong branch or head order moves pixels by 0.1
        // and more.
        expect(d).toBeLessThanOrEqual(anchors === 'first' && mode === 'replace' ? 1e-4 : 5e-3);
      }
      // Only the decoder's layers: fewer sites rewritten, the same invariance.
      const decoder = await editFromInversion(
        m,
        fresh(traj),
        params({ anchors: 'first', mode: 'replace', layers: 'decoder' }),
      );
      expect(maxDiff(decoder.frames.data, plain.frames.data)).toBeLessThanOrEqual(1e-4);
    });
  }, 120_000);

  it('with anchors "all", frames of a call attend to each other within their branch: one-frame calls are unchanged', async () => {
    await withModel(dir(), tmp, async (m) => {
      const traj = await invert(m, frames(3, 64));
      const plain = await editFromInversion(m, fresh(traj), params(null));
      const all = { anchors: 'all', mode: 'extend', layers: 'all' } as const;
      const joint = await editFromInversion(m, fresh(traj), params(all));
      expect(joint.stages).toEqual(['cross-frame attention']);
      const per = joint.frames.data.length / 3;
      // batchSize 2: frames 0 and 1 share a call and read each other; frame 2 is alone in its call.
      expect(maxDiff(joint.frames.data, plain.frames.data, 0, 2 * per)).toBeGreaterThan(1e-3);
      expect(maxDiff(joint.frames.data, plain.frames.data, 2 * per)).toBeLessThanOrEqual(1e-5);
      // One frame per call: every group holds one frame, as without the stage.
      const single = await editFromInversion(m, fresh(traj), { ...params(all), batchSize: 1 });
      const plainSingle = await editFromInversion(m, fresh(traj), { ...params(null), batchSize: 1 });
      expect(maxDiff(single.frames.data, plainSingle.frames.data)).toBeLessThanOrEqual(1e-5);
      // Same-prompt edit with direct inversion: still the input (the source branch runs with the stage).
      const same = await editFromInversion(m, fresh(traj), params(all, 'a red car'));
      const samePlain = await editFromInversion(m, fresh(traj), params(null, 'a red car'));
      expect(maxDiff(same.frames.data, samePlain.frames.data)).toBeLessThanOrEqual(1e-5);
    });
  }, 120_000);

  it('gives the input back for a same-prompt edit, and keeps its source steps apart from runs without it', async () => {
    await withModel(dir(), tmp, async (m) => {
      const clip = frames(3, 64);
      const traj = await invert(m, clip);
      const same = (cf: CrossFrameParams | null) => editFromInversion(m, fresh(traj), params(cf, 'a red car'));
      const plain = await same(null);
      const cf = await same({ anchors: 'first+previous', mode: 'replace', layers: 'all' });
      expect(maxDiff(cf.frames.data, plain.frames.data)).toBeLessThanOrEqual(1e-5);

      // A trajectory carrying source steps from a plain edit: the stage's edit still runs its source branch (4 guided
      // branches per frame and step, not 2) and hands no source steps back.
      const first = await editFromInversion(m, traj, params(null));
      const stored = { ...traj, sourceSteps: first.sourceSteps };
      expect(stored.sourceSteps).toBeDefined();
      const evals = m.stats.unetEvals;
      const withStage = await editFromInversion(m, stored, params({ anchors: 'first', mode: 'extend', layers: 'all' }));
      expect(m.stats.unetEvals - evals).toBe(3 * 3 * 4);
      expect(withStage.sourceSteps).toBeUndefined();
    });
  }, 120_000);
});

describe('a job asking for cross-frame attention', () => {
  it('is refused at submission where the UNet has no self-attention (the embedded oracle), saying what to do', async () => {
    const oracle = path.join(tmp, 'oracle');
    generateOracle(oracle);
    const m = await loadDiffusionModel(oracle, { threads: 1 });
    const clip = path.join(tmp, 'clip.mp4');
    await makeTestClip({ file: clip, frames: 4, width: 64, height: 48, fps: { num: 24, den: 1 } });
    try {
      const out = path.join(tmp, 'out.mp4');
      const req = JobRequest.parse({
        source: { path: clip, in: 0, out: 0.1 },
        prompt: 'a blue car',
        attention: { crossFrame: {} },
        output: { path: out },
      });
      expect(req.attention?.crossFrame).toEqual({ anchors: 'first', mode: 'extend', layers: 'all' });
      const problem = (r: JobRequest) =>
        planJob(r, m.info, out).then(
          () => undefined,
          (e: ProblemError) => e.problem,
        );
      const refused = await problem(req);
      expect(refused).toMatchObject({ status: 422, field: 'attention.crossFrame' });
      expect(refused?.detail).toMatch(/needs self-attention.*this model has none.*turn attention\.crossFrame off/);
      const sdedit = await problem(JobRequest.parse({ ...req, method: 'sdedit', mask: { type: 'none' } }));
      expect(sdedit).toMatchObject({ status: 422, field: 'attention.crossFrame' });
      expect(sdedit?.detail).toMatch(/stage of the inversion edit/);
      expect(fs.existsSync(out)).toBe(false);
    } finally {
      await m.release();
    }
  }, 60_000);
});
