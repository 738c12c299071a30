// The compute worker: ONNX Runtime runs off the main thread, progress and results come back, cancel and crashes
// affect only the task in flight.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CanceledError, type Progress } from '../../engine/src/editing/types';
import { psnr } from '../../engine/src/eval/metrics';
import { makeMovingObjectClip } from '../../engine/src/eval/synthetic-clip';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import { ORACLE } from '../../engine/src/models/generate/oracle-spec';
import { PipelineWorker } from '../../engine/src/worker/pipeline-worker';

const RED = ORACLE.colours.red as [number, number, number];
const GRAY = ORACLE.colours.gray as [number, number, number];
const SRC = 'a red car on a gray road';

let dir: string;
let worker: PipelineWorker;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'worker-'));
  generateOracle(path.join(dir, 'oracle'));
  worker = await PipelineWorker.start(path.join(dir, 'oracle'), { threads: 1 });
});

afterAll(async () => {
  await worker?.terminate();
  fs.rmSync(dir, { recursive: true, force: true });
});

const params = {
  sourcePrompt: SRC,
  prompt: SRC,
  steps: 30,
  strength: 1,
  guidance: 5,
  directInversion: true,
  batchSize: 4,
};

it('reports what it loaded', () => {
  expect(worker.info.name).toBe('oracle');
  expect(worker.info.provider).toBe('cpu');
  expect(worker.info.latentChannels).toBe(4);
  expect(worker.info.vaeScale).toBe(1);
});

it('runs an edit in the worker while the main thread stays responsive', async () => {
  const clip = makeMovingObjectClip({
    frames: 8,
    width: 128,
    height: 96,
    objectColour: RED,
    backgroundColour: GRAY,
    seed: 1,
  });
  const progress: Progress[] = [];
  let ticks = 0;
  let maxGap = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
    ticks++;
  }, 5);
  const t0 = performance.now();
  const result = await worker.run(
    { kind: 'inversion-edit', frames: clip.frames, params },
    { onProgress: (p) => progress.push(p) },
  ).result;
  const wall = performance.now() - t0;
  clearInterval(timer);
  console.log(
    `worker edit: ${wall.toFixed(0)} ms, ${ticks} main-thread ticks, longest gap ${maxGap.toFixed(1)} ms, ${result.stats.unetEvals} UNet evaluations`,
  );
  expect(psnr(result.frames, clip.frames)).toBeGreaterThanOrEqual(35);
  expect(result.trajectory?.latents).toHaveLength(31);
  // Per frame: 30 inversion steps, then 30 edit steps × 4 branches (target and source, each conditional and unconditional).
  expect(result.stats.unetEvals).toBe(8 * 30 + 8 * 30 * 4);
  expect(progress[progress.length - 1].done).toBe(progress[0].total);
  // The main thread was never blocked for a whole UNet-heavy stretch.
  expect(ticks).toBeGreaterThan(wall / 50);
  expect(maxGap).toBeLessThan(250);
});

it('cancels a running task at a step boundary and runs the next one', async () => {
  const clip = makeMovingObjectClip({
    frames: 4,
    width: 64,
    height: 64,
    objectColour: RED,
    backgroundColour: GRAY,
    seed: 2,
  });
  const running = worker.run(
    { kind: 'inversion-edit', frames: clip.frames, params: { ...params, steps: 200 } },
    {
      onProgress: (p) => {
        if (p.done === 3) running.cancel();
      },
    },
  );
  await expect(running.result).rejects.toBeInstanceOf(CanceledError);
  const next = await worker.run({
    kind: 'sdedit',
    frames: clip.frames,
    params: { prompt: SRC, steps: 10, strength: 0.5, guidance: 1, seed: 1, batchSize: 4 },
  }).result;
  expect(next.frames.n).toBe(4);
});

it('fails only the task in flight when the worker thread dies, then spawns a fresh thread for the next', async () => {
  const clip = makeMovingObjectClip({
    frames: 4,
    width: 64,
    height: 64,
    objectColour: RED,
    backgroundColour: GRAY,
    seed: 3,
  });
  const crashy = await PipelineWorker.start(
    path.join(dir, 'oracle'),
    { threads: 1 },
    { RESHOOT_FAULT: 'worker-exit-at-progress:3' },
  );
  try {
    const doomed = crashy.run({ kind: 'inversion-edit', frames: clip.frames, params: { ...params, steps: 20 } });
    await expect(doomed.result).rejects.toThrow(/compute worker stopped \(exit code 70\)/);
    // The next task gets a freshly spawned thread: it loads the model and makes progress (until the injected fault,
    // which every thread of this handle carries, ends it again).
    const seen: number[] = [];
    const next = crashy.run(
      { kind: 'inversion-edit', frames: clip.frames, params: { ...params, steps: 10 } },
      { onProgress: (p) => seen.push(p.done) },
    );
    await expect(next.result).rejects.toThrow(/exit code 70/);
    expect(seen).toEqual([1, 2]);
    // Other workers are unaffected.
    const fine = await worker.run({ kind: 'inversion-edit', frames: clip.frames, params: { ...params, steps: 10 } })
      .result;
    expect(psnr(fine.frames, clip.frames)).toBeGreaterThanOrEqual(35);
  } finally {
    await crashy.terminate();
  }
});

it('shuts down cleanly while a task is running, failing that task', async () => {
  const clip = makeMovingObjectClip({
    frames: 4,
    width: 64,
    height: 64,
    objectColour: RED,
    backgroundColour: GRAY,
    seed: 4,
  });
  const other = await PipelineWorker.start(path.join(dir, 'oracle'), { threads: 1 });
  const running = other.run(
    { kind: 'inversion-edit', frames: clip.frames, params: { ...params, steps: 500 } },
    {
      onProgress: (p) => {
        if (p.done === 2) void other.terminate();
      },
    },
  );
  await expect(running.result).rejects.toBeInstanceOf(CanceledError);
});

it('rejects a broken model folder with a message that names the problem', async () => {
  await expect(PipelineWorker.start(path.join(dir, 'nope'))).rejects.toThrow(/model folder does not exist/);
});
