// TokenFlow (editing/stages/token-flow.ts) through the real denoising loop, on the real-export fixture (folded heads)
// and a generated tiny-sd (split heads, Kᵀ only), random weights: what must hold whatever the weights.
// - Every frame a keyframe (keyframeEvery 1): each frame's call takes back its own output of the joint keyframe call,
//   so the edit equals joint attention over the whole clip in one call (cross-frame anchors "all", batch = clip).
// - A clip of identical frames: every token's nearest keyframe token is itself, and joint attention over identical
//   keyframes changes nothing, so the edit equals the plain one.
// - A same-prompt edit gives the input back (the source branch runs with the stage, and reads its own keyframes).
// - A moving clip with one keyframe per 4 frames: the edit changes, one keyframe call per step is counted.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { JobRequest, type Job, type JobEvent, type JobRequestInput } from '../../engine/src/api/schemas';
import type { ImageBatch } from '../../engine/src/diffusion/images';
import { editFromInversion, invertFrames } from '../../engine/src/editing/pipelines/inversion-edit';
import type { EditParams, InvertedTrajectory } from '../../engine/src/editing/types';
import { JobManager } from '../../engine/src/jobs/manager';
import { planJob } from '../../engine/src/jobs/runner';
import type { ProblemError } from '../../engine/src/jobs/service';
import { makeTestClip, probeMedia } from '../../engine/src/media';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import type { DiffusionModel } from '../../engine/src/models/sd-model';
import { PipelineWorker } from '../../engine/src/worker/pipeline-worker';
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
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'reshoot-token-flow-'));
  generateStageModels(tmp);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const STEPS = 3;

const params = (over: Partial<EditParams>, prompt = 'a blue car'): EditParams => ({
  prompt,
  sourcePrompt: 'a red car',
  guidance: 3,
  directInversion: true,
  batchSize: 2,
  ...over,
});

const invert = (m: DiffusionModel, clip: ImageBatch) =>
  invertFrames(m, clip, { sourcePrompt: 'a red car', steps: STEPS, strength: 1, batchSize: 2 });

/** Source steps dropped, so every edit below runs its source branch. */
const fresh = (t: InvertedTrajectory): InvertedTrajectory => ({ ...t, sourceSteps: undefined });

describe.each(stageModels(() => tmp))('%s', (_label, dir) => {
  it('with every frame a keyframe, equals joint attention over the whole clip in one call', async () => {
    await withModel(dir(), tmp, async (m) => {
      const traj = await invert(m, frames(3, 64));
      const joint = await editFromInversion(
        m,
        fresh(traj),
        params({ batchSize: 3, crossFrame: { anchors: 'all', mode: 'extend', layers: 'all' } }),
      );
      const plain = await editFromInversion(m, fresh(traj), params({}));
      const tf = await editFromInversion(m, fresh(traj), params({ tokenFlow: { keyframeEvery: 1 } }));
      const d = maxDiff(tf.frames.data, joint.frames.data);
      const fromPlain = maxDiff(tf.frames.data, plain.frames.data);
      console.log(`keyframeEvery 1: Δ joint ${d.toExponential(2)}, Δ plain ${fromPlain.toFixed(4)}`);
      expect(tf.stages).toEqual(['TokenFlow']);
      expect(fromPlain).toBeGreaterThan(1e-3);
      expect(d).toBeLessThanOrEqual(1e-4);
    });
  }, 180_000);

  it('on a clip of identical frames, equals the plain edit', async () => {
    await withModel(dir(), tmp, async (m) => {
      const traj = await invert(m, frames(4, 64, true));
      const plain = await editFromInversion(m, fresh(traj), params({}));
      // One keyframe: its joint attention is its own. Two: duplicated keys, equal up to the rounding of the longer
      // softmax sum (as cross-frame anchors "all" on identical frames), and blends of two equal outputs.
      for (const [keyframeEvery, tolerance] of [
        [4, 1e-5],
        [2, 2e-3],
      ]) {
        const tf = await editFromInversion(m, fresh(traj), params({ tokenFlow: { keyframeEvery } }));
        const d = maxDiff(tf.frames.data, plain.frames.data);
        console.log(`identical frames, keyframeEvery ${keyframeEvery}: max Δ ${d.toExponential(2)}`);
        expect(d).toBeLessThanOrEqual(tolerance);
      }
    });
  }, 180_000);

  it('gives the input back for a same-prompt edit, and changes a moving clip with one keyframe call a step', async () => {
    await withModel(dir(), tmp, async (m) => {
      const clip = frames(6, 64);
      const traj = await invert(m, clip);
      const reconstruction = await editFromInversion(m, fresh(traj), params({}, 'a red car'));
      const same = await editFromInversion(m, fresh(traj), params({ tokenFlow: { keyframeEvery: 4 } }, 'a red car'));
      const identity = maxDiff(same.frames.data, reconstruction.frames.data);
      console.log(`same prompt: max Δ ${identity.toExponential(2)}`);
      expect(identity).toBeLessThanOrEqual(1e-4);

      const plain = await editFromInversion(m, fresh(traj), params({}));
      const before = m.stats.unetEvals;
      const tf = await editFromInversion(m, fresh(traj), params({ tokenFlow: { keyframeEvery: 4 } }));
      const evals = m.stats.unetEvals - before;
      // 4 items a frame and step (target and source, each guided), plus the keyframe call: 2 keyframes × 4 items.
      expect(evals).toBe(STEPS * (6 * 4 + 2 * 4));
      const per = tf.frames.data.length / 6;
      for (let f = 0; f < 6; f++)
        expect(maxDiff(tf.frames.data, plain.frames.data, f * per, (f + 1) * per)).toBeGreaterThan(1e-3);
    });
  }, 180_000);
});

describe('a TokenFlow job, through the worker', () => {
  it('edits a 20-frame range as one chunk: one keyframe call of 3 keyframes a step, every frame written', async () => {
    const worker = await PipelineWorker.start(path.join(tmp, 'tiny-sd'), {
      threads: 1,
      graphCache: path.join(tmp, 'graph-cache'),
    });
    try {
      const FRAMES = 20;
      const clip = path.join(tmp, 'long.mp4');
      await makeTestClip({ file: clip, width: 64, height: 64, fps: { num: 8, den: 1 }, frames: FRAMES });
      const jobs = await JobManager.open({ worker, dataDir: path.join(tmp, 'jobs'), version: 'test' });
      const job = await jobs.submit(
        JobRequest.parse({
          source: { path: clip, in: 0, out: FRAMES / 8 },
          prompt: 'a blue car',
          sourcePrompt: 'a red car',
          steps: 2,
          guidance: 3,
          attention: { tokenFlow: { keyframeEvery: 8 } },
          output: { path: path.join(tmp, 'token-flow.mp4') },
        }),
      );
      const done = await new Promise<Job>((resolve) => {
        const off = jobs.subscribe(job.id, (e: JobEvent) => {
          if (e.type !== 'done') return;
          off();
          resolve(e.job);
        });
      });
      expect(done.error).toBeUndefined();
      expect(done.result!.frames).toBe(FRAMES);
      expect(done.result!.stages).toContain('TokenFlow');
      // One chunk (16-frame chunks would invert and edit 4 overlap frames twice): inversion 2 steps × 20 frames, the
      // decoder features for the default latent correction's correspondences (one call a frame), and per step
      // 20 frames × 4 items (target and source, each guided) plus the keyframe call, 3 keyframes × 4 items.
      expect(done.result!.unetEvaluations).toBe(2 * FRAMES + FRAMES + 2 * (FRAMES * 4 + 3 * 4));
      expect((await probeMedia(path.join(tmp, 'token-flow.mp4'))).video.frameCount).toBe(FRAMES);
    } finally {
      await worker.terminate();
    }
  }, 300_000);
});

describe('a job asking for TokenFlow', () => {
  it('is refused at submission where it cannot run, with the field to fix', async () => {
    const clip = path.join(tmp, 'clip.mp4');
    await makeTestClip({ file: clip, frames: 4, width: 64, height: 48, fps: { num: 24, den: 1 } });
    const out = path.join(tmp, 'out.mp4');
    const req = (over: Partial<JobRequestInput>) =>
      JobRequest.parse({
        source: { path: clip, in: 0, out: 0.1 },
        prompt: 'a blue car',
        output: { path: out },
        ...over,
      });
    const problem = (m: DiffusionModel, r: JobRequest) =>
      planJob(r, m.info, out).then(
        () => undefined,
        (e: ProblemError) => e.problem,
      );
    expect(req({ attention: { tokenFlow: {} } }).attention?.tokenFlow).toEqual({ keyframeEvery: 8 });
    expect(() => req({ attention: { tokenFlow: { keyframeEvery: 0 } } })).toThrow();
    expect(() => req({ attention: { tokenFlow: { keyframeEvery: 2.5 } } })).toThrow(/whole number/);
    await withModel(path.join(REAL_EXPORT, 'sd15-tiny'), tmp, async (m) => {
      expect(await problem(m, req({ attention: { tokenFlow: {} } }))).toBeUndefined();
      const withCrossFrame = await problem(m, req({ attention: { tokenFlow: {}, crossFrame: {} } }));
      expect(withCrossFrame).toMatchObject({
        status: 422,
        title: 'Methods do not combine',
        field: 'attention.crossFrame',
      });
      expect(await problem(m, req({ attention: { tokenFlow: {}, structure: 0.8 } }))).toBeUndefined();
      const sdedit = await problem(m, req({ attention: { tokenFlow: {} }, method: 'sdedit' }));
      expect(sdedit).toMatchObject({ status: 422, title: 'Method not available', field: 'attention.tokenFlow' });
    });
    const oracle = path.join(tmp, 'oracle');
    generateOracle(oracle);
    await withModel(oracle, tmp, async (m) => {
      const none = await problem(m, req({ attention: { tokenFlow: { keyframeEvery: 4 } } }));
      expect(none).toMatchObject({ status: 422, title: 'Method not available', field: 'attention.tokenFlow' });
      expect(none?.detail).toMatch(/no self-attention.*turn attention\.tokenFlow off/);
    });
  }, 120_000);
});
