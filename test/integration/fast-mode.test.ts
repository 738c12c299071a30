// The fast preset for distilled models: SD-Turbo and LCM exports (generated tiny variants with their real I/O and
// scheduler configs) edited in 1–4 UNet evaluations per frame, no guidance batch, through the same loader and the
// same job path as every other method.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { JobRequest } from '../../engine/src/api/schemas';
import { imageBatch, type ImageBatch } from '../../engine/src/diffusion/images';
import { fastEdit, fastLevels } from '../../engine/src/editing/pipelines/fast-edit';
import { planJob, runJob } from '../../engine/src/jobs/runner';
import { ProblemError } from '../../engine/src/jobs/service';
import { makeTestClip, probeMedia } from '../../engine/src/media';
import { generateTinySd } from '../../engine/src/models/generate/tiny-sd';
import { loadDiffusionModel, type DiffusionModel } from '../../engine/src/models/sd-model';
import { PipelineWorker } from '../../engine/src/worker/pipeline-worker';

let root: string;
const models: Record<'sd-turbo' | 'lcm', DiffusionModel> = {} as never;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'fast-mode-'));
  for (const v of ['sd-turbo', 'lcm'] as const) {
    generateTinySd(path.join(root, v), v);
    models[v] = await loadDiffusionModel(path.join(root, v), { threads: 1 });
  }
});

afterAll(async () => {
  await Promise.all(Object.values(models).map((m) => m.release()));
  fs.rmSync(root, { recursive: true, force: true });
});

function frames(n: number, height: number, width: number): ImageBatch {
  const b = imageBatch(n, height, width);
  for (let i = 0; i < b.data.length; i++) b.data[i] = Math.sin(i * 0.37) * 0.8;
  return b;
}

const base = { prompt: 'a blue car on a gray road', strength: 0.5, guidance: 7.5, seed: 3, batchSize: 2 };

describe.each(['sd-turbo', 'lcm'] as const)('%s', (variant) => {
  it.each([1, 2, 3, 4])(
    'edits 5 frames with exactly %i UNet evaluation(s) per frame, one branch per call',
    async (steps) => {
      const model = models[variant];
      const before = { ...model.stats };
      const input = frames(5, 48, 64);
      const out = await fastEdit(model, input, { ...base, steps });
      expect(out.frames.n).toBe(5);
      expect([out.frames.height, out.frames.width]).toEqual([48, 64]);
      expect(out.frames.data.length).toBe(5 * 3 * 48 * 64);
      expect(out.frames.data.every(Number.isFinite)).toBe(true);
      expect(model.stats.unetEvals - before.unetEvals).toBe(5 * steps);
      // Batches of 2, 2 and 1 frames, each denoised `steps` times, with no unconditional rows in any call.
      expect(model.stats.unetRuns - before.unetRuns).toBe(3 * steps);
    },
  );
});

it('feeds guidance to the LCM embedding only: it changes the LCM result, not the SD-Turbo one', async () => {
  const input = frames(2, 32, 32);
  const run = (v: 'sd-turbo' | 'lcm', guidance: number) => fastEdit(models[v], input, { ...base, steps: 2, guidance });
  const [t1, t8, l1, l8] = [
    await run('sd-turbo', 1),
    await run('sd-turbo', 8),
    await run('lcm', 1),
    await run('lcm', 8),
  ];
  expect(t8.frames.data).toEqual(t1.frames.data);
  expect(l8.frames.data).not.toEqual(l1.frames.data);
});

it('runs the last K levels of a trailing schedule, as diffusers img2img with SD-Turbo does', () => {
  const cfg = models['sd-turbo'].scheduler;
  expect(cfg.timestepSpacing).toBe('trailing');
  // 2 steps at strength 0.5: the 4-step trailing schedule 999, 749, 499, 249, of which 499 and 249 run.
  const half = fastLevels(cfg, 2, 0.5);
  expect([half.N, half.K]).toEqual([4, 2]);
  expect(half.levels.timestep.slice(1, half.K + 1)).toEqual([249, 499]);
  // Strength 1: from t = 999, i.e. generation from (almost) pure noise.
  const full = fastLevels(cfg, 1, 1);
  expect(full.levels.timestep[full.K]).toBe(999);
  // LCM folders carry SD's leading spacing; LCM's own sampler starts at 999 too.
  expect(fastLevels(models.lcm.scheduler, 4, 1).levels.timestep.slice(1, 5)).toEqual([249, 499, 749, 999]);
  expect(() => fastLevels(cfg, 5, 1)).toThrow(/1 to 4 steps/);
});

describe('as a job', () => {
  let worker: PipelineWorker;
  let clip: string;
  beforeAll(async () => {
    worker = await PipelineWorker.start(path.join(root, 'sd-turbo'), { threads: 1 });
    clip = path.join(root, 'clip.mp4');
    await makeTestClip({
      file: clip,
      width: 96,
      height: 64,
      fps: { num: 24, den: 1 },
      frames: 20,
      content: 'moving-square',
    });
  });
  afterAll(async () => {
    await worker?.terminate();
  });

  it('method "fast" writes every frame of the range in 2 UNet evaluations per frame by default', async () => {
    const out = path.join(root, 'fast.mp4');
    const req = JobRequest.parse({
      source: { path: clip, in: 0, out: 19 / 24 },
      prompt: 'a blue car on a gray road',
      method: 'fast',
      output: { path: out },
    });
    expect(req.fast).toBeUndefined();
    const plan = await planJob(req, worker.info, out);
    expect(plan.strength).toBe(0.5);
    const result = await runJob(req, plan, { worker, seed: 1, onProgress: () => undefined });
    expect(result.frames).toBe(19);
    expect(result.unetEvaluations).toBe(19 * 2);
    const info = await probeMedia(out);
    expect(info.video.frameCount).toBe(19);
    expect([info.video.width, info.video.height]).toEqual([96, 64]);
  });

  it('takes 1–4 steps in `fast.steps`, and refuses `fast` with another method', async () => {
    const out = path.join(root, 'fast4.mp4');
    const req = JobRequest.parse({
      source: { path: clip, in: 0, out: 5 / 24 },
      prompt: 'a red car',
      method: 'fast',
      fast: { steps: 4 },
      output: { path: out },
    });
    const result = await runJob(req, await planJob(req, worker.info, out), {
      worker,
      seed: 1,
      onProgress: () => undefined,
    });
    expect(result.unetEvaluations).toBe(5 * 4);
    const tooMany = JobRequest.safeParse({
      source: { path: clip, in: 0, out: 1 },
      prompt: 'x',
      method: 'fast',
      fast: { steps: 5 },
    });
    expect(tooMany.success).toBe(false);
    expect(tooMany.error?.issues[0].path).toEqual(['fast', 'steps']);
    const wrong = JobRequest.parse({ source: { path: clip, in: 0, out: 0.5 }, prompt: 'x', fast: { steps: 1 } });
    await expect(planJob(wrong, worker.info, path.join(root, 'never.mp4'))).rejects.toThrow(ProblemError);
    const auto = JobRequest.parse({
      source: { path: clip, in: 0, out: 0.5 },
      prompt: 'x',
      method: 'fast',
      mask: { type: 'auto' },
    });
    await expect(planJob(auto, worker.info, path.join(root, 'never.mp4'))).rejects.toMatchObject({
      problem: { field: 'mask.type' },
    });
  });

  it('`reshoot edit --method fast --fast-steps N` runs the same job from the command line, and refuses a bad step count', async () => {
    const cli = path.resolve(__dirname, '../../dist/engine/src/cli/main.js');
    const out = path.join(root, 'cli-fast.mp4');
    const env = { ...process.env, RESHOOT_HOME: path.join(root, 'home') };
    const run = (args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          [
            cli,
            'edit',
            clip,
            '--model',
            path.join(root, 'sd-turbo'),
            '--prompt',
            'a blue car',
            '--in',
            '0',
            '--out',
            String(6 / 24),
            ...args,
          ],
          { env },
          (err, stdout, stderr) =>
            resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
        );
      });
    const ok = await run(['--method', 'fast', '--fast-steps', '3', '--json', '-o', out]);
    expect(ok.code).toBe(0);
    const done = ok.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { event: string; result?: { frames: number; unetEvaluations: number } })
      .find((e) => e.event === 'done');
    expect(done?.result?.frames).toBe(6);
    expect(done?.result?.unetEvaluations).toBe(6 * 3);
    expect((await probeMedia(out)).video.frameCount).toBe(6);
    const bad = await run(['--method', 'fast', '--fast-steps', '9', '-o', path.join(root, 'cli-bad.mp4')]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/--fast-steps must be at most 4/);
    expect(fs.existsSync(path.join(root, 'cli-bad.mp4'))).toBe(false);
  });
});
