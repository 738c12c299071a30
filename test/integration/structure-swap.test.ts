// Structure lock (editing/stages/structure-lock.ts) and prompt-to-prompt word swap (stages/word-swap.ts) through the
// real denoising loop, on a real-export fixture (folded heads) and a generated tiny-sd (split heads), random
// weights: what must hold whatever the weights. Each target item reads the source item of its frame and part
// (conditional from conditional, unconditional from unconditional; word swap the conditional only), in the site's
// layout; a same-prompt edit with both on still gives the input back, with and without direct inversion running the
// source branch; both change a real edit; word swap and re-weighting share one rewrite of the cross-attention; and a
// job that cannot use them is refused at submission with the field to fix.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { JobRequest, type Job, type JobEvent, type JobRequestInput } from '../../engine/src/api/schemas';
import type { EditContext, UnetCallInfo } from '../../engine/src/editing/loop/stage';
import { editFromInversion, invertFrames } from '../../engine/src/editing/pipelines/inversion-edit';
import { alignPrompts } from '../../engine/src/editing/prompt-alignment';
import { structureLockStage, structureSpans } from '../../engine/src/editing/stages/structure-lock';
import { wordSwapStage } from '../../engine/src/editing/stages/word-swap';
import type { EditParams, InvertedTrajectory } from '../../engine/src/editing/types';
import { JobManager } from '../../engine/src/jobs/manager';
import { planJob } from '../../engine/src/jobs/runner';
import type { ProblemError } from '../../engine/src/jobs/service';
import { makeTestClip } from '../../engine/src/media';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import type { DiffusionModel, PortTensor } from '../../engine/src/models/sd-model';
import { crossAttentionMapsPorts } from '../../engine/src/onnx/passes/cross-attention-maps';
import { structureLockPorts } from '../../engine/src/onnx/passes/structure-lock';
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
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'reshoot-structure-swap-'));
  generateStageModels(tmp);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const SOURCE = 'a red car on a gray road';
const TARGET = 'a blue car on a gray road';
const params = (over: Partial<EditParams> = {}): EditParams => ({
  prompt: TARGET,
  sourcePrompt: SOURCE,
  guidance: 3,
  directInversion: true,
  batchSize: 2,
  ...over,
});

const STEPS = 4;
const invert = (m: DiffusionModel) =>
  invertFrames(m, frames(2, 64), { sourcePrompt: SOURCE, steps: STEPS, strength: 1, batchSize: 2 });
/** Source steps dropped, so a plain edit runs its source branch like the ones with the stages. */
const fresh = (t: InvertedTrajectory): InvertedTrajectory => ({ ...t, sourceSteps: undefined });

/** One call of a guided first edit: two frames, four branches (target cond, target uncond, source cond, uncond). */
const call = (step: number): UnetCallInfo => ({
  step,
  level: STEPS - step + 1,
  timestep: 500,
  start: 0,
  count: 2,
  branches: [
    { latent: 'target', prompt: TARGET },
    { latent: 'target', prompt: '' },
    { latent: 'source', prompt: SOURCE },
    { latent: 'source', prompt: '' },
  ],
});

/** The source item each row reads and its weight, from a `source` index and a weight of `width` per row. */
function perRow(source: PortTensor, weight: PortTensor, width: number) {
  return Array.from(source.data, (s, r) => ({
    row: r,
    source: s,
    weight: weight.data.subarray(r * width, (r + 1) * width),
  }));
}

describe.each(stageModels(() => tmp))('%s', (_label, dir) => {
  it('feeds structure lock: every target item reads its own part of the source, for the lock spans only', async () => {
    await withModel(dir(), tmp, async (m) => {
      const stage = structureLockStage();
      const ctx = {
        model: m,
        params: params({ structure: 1 }),
        traj: { latents: new Array(STEPS + 1) },
      } as unknown as EditContext;
      expect(await stage.plan(ctx)).toBe(true);
      const spans = structureSpans(1, STEPS);
      expect(spans).toEqual({ features: 4, attention: 3 });
      const decoder = m.info.attention.sites.filter((s) => s.kind === 'self' && s.module.startsWith('up_blocks.'));
      expect(decoder.length).toBeGreaterThan(0);
      const resnet = structureLockPorts('up_blocks.1.resnets.1');
      // items 0,1 target cond → 4,5 source cond; 2,3 target uncond → 6,7 source uncond; sources read nothing.
      const expectItem = [4, 5, 6, 7, 4, 5, 6, 7];
      const check = (feeds: Record<string, PortTensor>, ports: { source: string; weight: string }, perItem: number) => {
        for (const r of perRow(feeds[ports.source], feeds[ports.weight], 1)) {
          const item = Math.floor(r.row / perItem);
          const reads = item < 4;
          expect(r.source).toBe(reads ? expectItem[item] * perItem + (r.row % perItem) : r.row);
          expect(r.weight[0]).toBe(reads ? 1 : 0);
        }
      };
      const locked = stage.beforeUnet!(call(3))!;
      expect(Object.keys(locked).sort()).toEqual(
        [...decoder.map((s) => structureLockPorts(s.module)), resnet].flatMap((p) => [p.source, p.weight]).sort(),
      );
      for (const s of decoder) {
        const perItem = s.layout === 'split' ? 1 : s.heads;
        const ports = structureLockPorts(s.module);
        expect(locked[ports.weight].dims).toEqual(s.layout === 'split' ? [8, 1, 1, 1] : [8 * s.heads, 1, 1]);
        check(locked, ports, perItem);
      }
      check(locked, resnet, 1);
      // Step 4: features only; past the spans: nothing fed, the ports stay neutral.
      expect(Object.keys(stage.beforeUnet!(call(4))!).sort()).toEqual([resnet.source, resnet.weight].sort());
      const shorter = structureLockStage();
      await shorter.plan({ ...ctx, params: params({ structure: 0.25 }) });
      expect(shorter.beforeUnet!(call(2))).toBeUndefined();
    });
  });

  it("feeds word swap: the target's conditional items read the source's maps through the alignment", async () => {
    await withModel(dir(), tmp, async (m) => {
      const stage = wordSwapStage();
      const ctx = {
        model: m,
        params: params({ prompt: 'a blue fast car on a gray road', wordSwap: { steps: 0.5 } }),
        traj: { latents: new Array(STEPS + 1) },
      } as unknown as EditContext;
      expect(await stage.plan(ctx)).toBe(true);
      const { sourceOf } = alignPrompts(m.tokenizer, SOURCE, 'a blue fast car on a gray road');
      const T = m.tokenizer.maxLength;
      const feeds = stage.beforeUnet!({
        ...call(2),
        branches: [{ latent: 'target', prompt: 'a blue fast car on a gray road' }, ...call(2).branches.slice(1)],
      })!;
      const cross = m.info.attention.sites.filter((s) => s.kind === 'cross');
      for (const s of cross) {
        const ports = crossAttentionMapsPorts(s.module);
        const perItem = s.layout === 'split' ? 1 : s.heads;
        expect(Array.from(feeds[ports.swapToken].data)).toEqual(Array.from(sourceOf, (v, t) => (v < 0 ? t : v)));
        for (const r of perRow(feeds[ports.swapSource], feeds[ports.swapWeight], T)) {
          const item = Math.floor(r.row / perItem);
          expect(r.source).toBe(item < 2 ? (item + 4) * perItem + (r.row % perItem) : r.row);
          // "fast" is new: it keeps its own map; every other token of the conditional target takes the source's.
          expect(Array.from(r.weight)).toEqual(Array.from(sourceOf, (v) => (item < 2 && v >= 0 ? 1 : 0)));
        }
      }
      expect(stage.beforeUnet!(call(3))).toBeUndefined();
    });
  });

  it('keeps a same-prompt edit the identity, and runs the source branch for the lock without direct inversion', async () => {
    await withModel(dir(), tmp, async (m) => {
      const traj = fresh(await invert(m));
      const same = { prompt: SOURCE, structure: 1, wordSwap: { steps: 1 } };
      const plain = await editFromInversion(m, traj, params({ prompt: SOURCE }));
      const locked = await editFromInversion(m, traj, params(same));
      expect(locked.stages).toEqual(['structure lock', 'word swap']);
      expect(maxDiff(locked.frames.data, plain.frames.data)).toBeLessThanOrEqual(1e-5);
      // Without direct inversion the target drifts off the inverted trajectory while the source branch, run only for
      // the lock, stays on it: two branches per frame and step become four, and the lock changes the result.
      const evals = async (p: EditParams) => {
        const before = m.stats.unetEvals;
        const r = await editFromInversion(m, traj, p);
        return { frames: r.frames.data, evals: m.stats.unetEvals - before };
      };
      const noDi = await evals(params({ prompt: SOURCE, directInversion: false }));
      const noDiLocked = await evals(params({ ...same, directInversion: false }));
      expect(noDi.evals).toBe(STEPS * 2 * 2);
      expect(noDiLocked.evals).toBe(STEPS * 4 * 2);
      expect(maxDiff(noDiLocked.frames, noDi.frames)).toBeGreaterThan(1e-3);
    });
  }, 120_000);

  it('changes a real edit; word swap and re-weighting run together on one rewrite', async () => {
    await withModel(dir(), tmp, async (m) => {
      const traj = fresh(await invert(m));
      const plain = await editFromInversion(m, traj, params());
      const source = await editFromInversion(m, traj, params({ prompt: SOURCE }));
      const lock = await editFromInversion(m, traj, params({ structure: 1 }));
      const swap = await editFromInversion(m, traj, params({ wordSwap: { steps: 1 } }));
      const toSource = (r: { frames: { data: Float32Array } }) => maxDiff(r.frames.data, source.frames.data);
      console.log(
        `plain Δ ${toSource(plain).toFixed(4)} from the source, locked ${toSource(lock).toFixed(4)}, swapped ${toSource(swap).toFixed(4)}`,
      );
      expect(maxDiff(lock.frames.data, plain.frames.data)).toBeGreaterThan(1e-3);
      expect(maxDiff(swap.frames.data, plain.frames.data)).toBeGreaterThan(1e-3);
      const both = await editFromInversion(
        m,
        traj,
        params({ wordSwap: { steps: 1 }, reweight: [{ word: 'blue', scale: 1 }] }),
      );
      expect(both.stages).toEqual(['word swap', 'attention re-weighting']);
      expect(maxDiff(both.frames.data, swap.frames.data)).toBeLessThanOrEqual(1e-6);
    });
  }, 120_000);
});

describe('every attention method at once', () => {
  it('runs together on one rewritten UNet, and a same-prompt edit is still the identity', async () => {
    await withModel(stageModels(() => tmp)[0][1](), tmp, async (m) => {
      const clip = frames(3, 64);
      const traj = fresh(await invertFrames(m, clip, { sourcePrompt: SOURCE, steps: 3, strength: 1, batchSize: 2 }));
      const all: Partial<EditParams> = {
        structure: 0.8,
        wordSwap: { steps: 0.8 },
        reweight: [{ word: 'gray', scale: 1.5 }],
        crossFrame: { anchors: 'first', mode: 'extend', layers: 'decoder' },
        autoMask: { threshold: 0.5, from: 'both' },
        consistency: { maskSmoothing: 0.25, latentCorrection: { steps: 2, weights: [0.25, 0.5, 0.25] } },
      };
      const edit = await editFromInversion(m, traj, params(all));
      expect(edit.stages).toEqual(
        expect.arrayContaining([
          'automatic mask',
          'cross-frame attention',
          'structure lock',
          'word swap',
          'attention re-weighting',
        ]),
      );
      expect(edit.frames.n).toBe(3);
      expect(edit.frames.data.every(Number.isFinite)).toBe(true);
      const plain = await editFromInversion(m, traj, params({ prompt: SOURCE }));
      const same = await editFromInversion(m, traj, params({ ...all, prompt: SOURCE, reweight: [], autoMask: null }));
      expect(maxDiff(same.frames.data, plain.frames.data)).toBeLessThanOrEqual(1e-5);
    });
  }, 180_000);

  it('structure lock composes with joint attention: cross-frame "all" and TokenFlow gather the locked keys', async () => {
    await withModel(stageModels(() => tmp)[0][1](), tmp, async (m) => {
      const traj = fresh(
        await invertFrames(m, frames(3, 64), { sourcePrompt: SOURCE, steps: 3, strength: 1, batchSize: 3 }),
      );
      const joint: Partial<EditParams> = {
        batchSize: 3,
        crossFrame: { anchors: 'all', mode: 'extend', layers: 'all' },
      };
      const lock = { structure: 1 };
      const lockedJoint = await editFromInversion(m, traj, params({ ...joint, ...lock }));
      const jointAlone = await editFromInversion(m, traj, params(joint));
      const lockAlone = await editFromInversion(m, traj, params({ ...lock, batchSize: 3 }));
      expect(lockedJoint.stages).toEqual(['structure lock', 'cross-frame attention']);
      expect(maxDiff(lockedJoint.frames.data, jointAlone.frames.data)).toBeGreaterThan(1e-3);
      expect(maxDiff(lockedJoint.frames.data, lockAlone.frames.data)).toBeGreaterThan(1e-3);
      // Every frame a keyframe: TokenFlow's frames take back their joint keyframe outputs, so with the lock too it
      // equals the locked joint edit of the whole clip in one call.
      const lockedFlow = await editFromInversion(m, traj, params({ ...lock, tokenFlow: { keyframeEvery: 1 } }));
      expect(lockedFlow.stages).toEqual(['structure lock', 'TokenFlow']);
      expect(maxDiff(lockedFlow.frames.data, lockedJoint.frames.data)).toBeLessThanOrEqual(1e-4);
      // A same-prompt edit with the lock and joint attention, or the lock and TokenFlow, is still the input.
      const plain = await editFromInversion(m, traj, params({ prompt: SOURCE, batchSize: 3 }));
      for (const method of [joint, { tokenFlow: { keyframeEvery: 2 } }]) {
        const same = await editFromInversion(m, traj, params({ ...method, ...lock, prompt: SOURCE }));
        expect(maxDiff(same.frames.data, plain.frames.data)).toBeLessThanOrEqual(1e-5);
      }
    });
  }, 180_000);
});

describe('jobs with structure lock, word swap and the attention mask, through the worker', () => {
  let worker: PipelineWorker;
  let clip: string;
  const FRAMES = 4;
  beforeAll(async () => {
    worker = await PipelineWorker.start(path.join(tmp, 'tiny-sd'), {
      threads: 1,
      graphCache: path.join(tmp, 'graph-cache'),
    });
    clip = path.join(tmp, 'square.mp4');
    await makeTestClip({ file: clip, width: 64, height: 64, fps: { num: 8, den: 1 }, frames: FRAMES });
  });
  afterAll(() => worker?.terminate());

  let n = 0;
  const run = async (m: JobManager, prompt: string, attention: boolean): Promise<Job> => {
    const req = JobRequest.parse({
      source: { path: clip, in: 0, out: FRAMES / 8 },
      prompt,
      sourcePrompt: SOURCE,
      steps: 2,
      guidance: 3,
      mask: attention ? { type: 'auto', from: 'attention' } : { type: 'none' },
      attention: attention ? { structure: 1, wordSwap: {} } : {},
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

  it('say which stages ran, and re-edit with the source branch running again', async () => {
    const plainJobs = await JobManager.open({ worker, dataDir: path.join(tmp, 'jobs-plain'), version: 'test' });
    const methodJobs = await JobManager.open({ worker, dataDir: path.join(tmp, 'jobs-methods'), version: 'test' });
    const plain = await run(plainJobs, TARGET, false);
    const first = await run(methodJobs, TARGET, true);
    expect(first.result!.frames).toBe(FRAMES);
    expect(first.result!.stages).toEqual([
      'automatic mask',
      'mask refinement',
      'latent correction',
      'structure lock',
      'word swap',
    ]);
    // Only the attention mask's calls (2 prompts at each of the 2 levels) come on top of the same edit: the methods
    // read the source branch that direct inversion runs anyway.
    const maskEvals = FRAMES * 2 * 2;
    expect(first.result!.unetEvaluations - plain.result!.unetEvaluations).toBe(maskEvals);
    // A re-edit of the same range: the plain one reuses the first edit's source steps, the methods run the source
    // branch again (2 more items a frame and step).
    const plainAgain = await run(plainJobs, 'a green car on a gray road', false);
    const again = await run(methodJobs, 'a green car on a gray road', true);
    expect(plainAgain.result!.inversionCacheHit).toBe(true);
    expect(again.result!.inversionCacheHit).toBe(true);
    expect(again.result!.unetEvaluations - plainAgain.result!.unetEvaluations).toBe(FRAMES * 2 * 2 + maskEvals);
  }, 300_000);
});

describe('a job asking for structure lock or word swap', () => {
  it('is refused at submission with the field to fix: no sourcePrompt, no attention in the model, not inversion', async () => {
    const clip = path.join(tmp, 'clip.mp4');
    await makeTestClip({ file: clip, frames: 4, width: 64, height: 48, fps: { num: 24, den: 1 } });
    const out = path.join(tmp, 'out.mp4');
    const req = (over: Partial<JobRequestInput>) =>
      JobRequest.parse({ source: { path: clip, in: 0, out: 0.1 }, prompt: TARGET, output: { path: out }, ...over });
    const problem = (m: DiffusionModel, r: JobRequest) =>
      planJob(r, m.info, out).then(
        () => undefined,
        (e: ProblemError) => e.problem,
      );
    await withModel(path.join(REAL_EXPORT, 'sd15-tiny'), tmp, async (m) => {
      const swap = { attention: { wordSwap: {} } };
      expect(await problem(m, req({ ...swap, sourcePrompt: SOURCE }))).toBeUndefined();
      expect(await problem(m, req({ attention: { structure: 0.8 } }))).toBeUndefined();
      const noSource = await problem(m, req(swap));
      expect(noSource).toMatchObject({ status: 422, title: 'Source prompt needed', field: 'sourcePrompt' });
      expect(noSource?.detail).toMatch(/needs sourcePrompt: say what the shot shows now/);
      expect(await problem(m, req({ attention: { structure: 0.5, crossFrame: { anchors: 'all' } } }))).toBeUndefined();
      const sdedit = await problem(m, req({ attention: { structure: 0.5 }, method: 'sdedit' }));
      expect(sdedit).toMatchObject({ status: 422, title: 'Method not available', field: 'attention.structure' });
    });
    const oracle = path.join(tmp, 'oracle');
    generateOracle(oracle);
    await withModel(oracle, tmp, async (m) => {
      const lock = await problem(m, req({ attention: { structure: 1 } }));
      expect(lock).toMatchObject({ status: 422, field: 'attention.structure' });
      expect(lock?.detail).toMatch(/this model has none.*set attention\.structure to 0/);
      const swap = await problem(m, req({ attention: { wordSwap: { steps: 0.5 } }, sourcePrompt: SOURCE }));
      expect(swap).toMatchObject({ status: 422, field: 'attention.wordSwap' });
    });
    expect(fs.existsSync(out)).toBe(false);
    expect(() => req({ attention: { structure: 1.5 } })).toThrow(/strength from 0 \(off\) to 1/);
  }, 60_000);
});
