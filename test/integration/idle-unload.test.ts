// Idle unload: after unloadAfterMs without a task the compute worker thread (which owns every ONNX Runtime session)
// is stopped so that its memory goes back to the system; the next task starts a fresh thread, reloads the model and
// gives the same result as before. Real ORT, a real worker thread, the generated oracle model.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { makeMovingObjectClip } from '../../engine/src/eval/synthetic-clip';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import { ORACLE } from '../../engine/src/models/generate/oracle-spec';
import type { Task, TaskResult } from '../../engine/src/worker/protocol';
import { PipelineWorker } from '../../engine/src/worker/pipeline-worker';

const UNLOAD_AFTER_MS = 300;

let dir: string;
let modelDir: string;
const workers: PipelineWorker[] = [];

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'idle-unload-'));
  modelDir = path.join(dir, 'oracle');
  generateOracle(modelDir);
});

afterAll(async () => {
  for (const w of workers) await w.terminate();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function start(unloadAfterMs?: number): Promise<PipelineWorker> {
  const w = await PipelineWorker.start(modelDir, { threads: 1 }, {}, { unloadAfterMs });
  workers.push(w);
  return w;
}

/** Polls until `cond` holds; generous, so that a slow machine passes (no upper bound on how fast it must be). */
async function waitFor(cond: () => boolean, what: string, limitMs = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > limitMs) throw new Error(`gave up after ${limitMs} ms waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The exact bytes of a result's pixels (float32): equal bytes, equal pixels. */
const bytes = (r: TaskResult) => Buffer.from(r.frames.data.buffer, r.frames.data.byteOffset, r.frames.data.byteLength);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Tasks are copied to the worker (no `transfer`), so one object can be run many times. */
function task(seed = 1): Task {
  const clip = makeMovingObjectClip({
    frames: 4,
    width: 64,
    height: 64,
    objectColour: ORACLE.colours.red as [number, number, number],
    backgroundColour: ORACLE.colours.gray as [number, number, number],
    seed: 5,
  });
  return {
    kind: 'sdedit',
    frames: clip.frames,
    params: { prompt: 'a blue car on a gray road', steps: 6, strength: 0.6, guidance: 3, seed, batchSize: 4 },
  };
}

it('unloads the model after the idle time, and the next task reloads it with the same result', async () => {
  const w = await start(UNLOAD_AFTER_MS);
  expect(w.loaded).toBe(true);
  const first = await w.run(task()).result;
  expect(w.loaded).toBe(true);

  await waitFor(() => !w.loaded, 'the idle worker unloads');
  // The model's description is still there for health and job planning.
  expect(w.info.name).toBe('oracle');

  const second = await w.run(task()).result;
  expect(w.loaded).toBe(true);
  expect(second.frames.width).toBe(first.frames.width);
  expect(second.frames.height).toBe(first.frames.height);
  expect(bytes(second).equals(bytes(first))).toBe(true);
  expect(second.stats.unetEvals).toBe(first.stats.unetEvals);

  // And it unloads again once idle again.
  await waitFor(() => !w.loaded, 'the worker unloads a second time');
});

it('a task keeps the worker loaded while it is queued or running', async () => {
  const w = await start(UNLOAD_AFTER_MS);
  // Several tasks back to back, queued at once: the timer must not fire between them.
  const results = await Promise.all([1, 2, 3].map((seed) => w.run(task(seed)).result));
  expect(results.map((r) => r.frames.n)).toEqual([4, 4, 4]);
  // The seed shows in the pixels, so the equalities the other tests assert are not equal by accident.
  expect(bytes(results[0]).equals(bytes(results[1]))).toBe(false);
  expect(w.loaded).toBe(true);
  await waitFor(() => !w.loaded, 'the idle worker unloads');
});

it('a task submitted right at the unload boundary still completes, with the same result', async () => {
  const reference = await (await start()).run(task(7)).result;
  const same = (r: TaskResult) => bytes(r).equals(bytes(reference));
  const w = await start(UNLOAD_AFTER_MS);
  // Built once, before any timing: making the clip takes the main thread a noticeable while.
  const t7 = task(7);

  // Around the moment the idle timer fires (it is armed as a task's result comes back): just before it (the timer is
  // canceled), at it, and just after (the unload is under way). Whichever side each lands on, it completes.
  for (const offset of [-20, -2, 0, 2, 10, 40]) {
    expect(same(await w.run(t7).result)).toBe(true);
    await sleep(UNLOAD_AFTER_MS + offset);
    expect(same(await w.run(t7).result)).toBe(true);
    expect(w.loaded).toBe(true);
  }

  // A timer of the same length set after the idle timer fires right after it: the unload has begun (its release
  // request is in flight) when this task is queued, so the task waits for it and then starts a fresh worker.
  expect(same(await w.run(t7).result)).toBe(true);
  const atBoundary = await new Promise<TaskResult>((resolve, reject) =>
    setTimeout(() => void w.run(t7).result.then(resolve, reject), UNLOAD_AFTER_MS),
  );
  expect(same(atBoundary)).toBe(true);
  expect(w.loaded).toBe(true);

  // Queued the moment the worker reports unloaded, while its thread is still being terminated.
  expect(same(await w.run(t7).result)).toBe(true);
  const t0 = Date.now();
  while (w.loaded) {
    if (Date.now() - t0 > 60_000) throw new Error('the idle worker never unloaded');
    await new Promise((r) => setImmediate(r));
  }
  expect(same(await w.run(t7).result)).toBe(true);
  expect(w.loaded).toBe(true);
});

it('keeps the model loaded without unloadAfterMs (the default)', async () => {
  const w = await start();
  await w.run(task()).result;
  await sleep(UNLOAD_AFTER_MS * 3);
  expect(w.loaded).toBe(true);
});

it('terminate() leaves no timer behind, and a later task still starts a fresh worker', async () => {
  const w = await start(UNLOAD_AFTER_MS);
  await w.terminate();
  expect(w.loaded).toBe(false);
  const r = await w.run(task()).result;
  expect(r.frames.n).toBe(4);
  expect(w.loaded).toBe(true);
  await waitFor(() => !w.loaded, 'the idle worker unloads');
});
