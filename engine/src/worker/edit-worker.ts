// Worker thread entry: owns the model's ONNX Runtime sessions so the main thread (HTTP server, CLI progress) never
// blocks on a UNet call. session.run executes on the calling thread, which is why this has to live here.
import { parentPort } from 'node:worker_threads';
import { runMethod } from '../editing/pipelines';
import { inversionChunk, type ChunkOutput } from '../editing/long-clip';
import { editFromInversion } from '../editing/pipelines/inversion-edit';
import type { Progress, Stage, TrajectoryStore } from '../editing/types';
import { InversionCache } from '../store/inversion-cache';
import { loadDiffusionModel, type DiffusionModel } from '../models/sd-model';
import { buffersOf, type FromWorker, type Task, type TaskResult, type TaskTimings, type ToWorker } from './protocol';

const PREVIEW_INTERVAL_MS = 250;
// Fault injection for reliability tests: RESHOOT_FAULT=worker-exit-at-progress:N ends this thread abruptly after the
// N-th progress event of a task, as a crash would.
const exitAtProgress = Number(/^worker-exit-at-progress:(\d+)$/.exec(process.env.RESHOOT_FAULT ?? '')?.[1] ?? 0);
const port = parentPort;
if (!port) throw new Error('edit-worker must run inside a worker thread');

let model: DiffusionModel | undefined;
const caches = new Map<string, InversionCache>();

/** One cache object per folder: constructing one sweeps stale temp files, which must not happen under a live put. */
function cacheAt(dir: string, maxBytes: number): InversionCache {
  let c = caches.get(dir);
  if (!c || c.maxBytes !== maxBytes) caches.set(dir, (c = new InversionCache(dir, maxBytes)));
  return c;
}

function send(msg: FromWorker, transfer: ArrayBuffer[] = []): void {
  port!.postMessage(msg, transfer);
}

const STAGE_FIELD: Record<Stage, keyof TaskTimings> = {
  'encoding latents': 'vaeEncodeMs',
  inverting: 'inversionMs',
  editing: 'editMs',
  'decoding latents': 'vaeDecodeMs',
};

async function runTask(task: Task, shouldStop: () => boolean, onProgress: (p: Progress) => void): Promise<TaskResult> {
  if (!model) throw new Error('no model is loaded in the compute worker');
  const m = model;
  const before = { ...m.stats };
  const timings: TaskTimings = {
    vaeEncodeMs: 0,
    inversionMs: 0,
    editMs: 0,
    vaeDecodeMs: 0,
    textMs: 0,
    cacheMs: 0,
    otherMs: 0,
    taskMs: 0,
  };
  let tailCacheMs = 0;
  const t0 = performance.now();
  let mark = t0;
  let textMark = m.stats.textMs;
  const hooks = {
    shouldStop,
    onProgress(p: Progress) {
      const now = performance.now();
      const text = m.stats.textMs - textMark;
      timings[STAGE_FIELD[p.stage]] += now - mark - text;
      timings.textMs += text;
      mark = now;
      textMark = m.stats.textMs;
      onProgress(p);
    },
  };
  let out: ChunkOutput;
  if (task.kind === 'edit-from-inversion') {
    const { sourceSteps, ...edited } = await editFromInversion(m, task.trajectory, task.params, hooks);
    out = sourceSteps ? { ...edited, trajectory: { ...task.trajectory, sourceSteps } } : edited;
  } else {
    // The cache's reads are charged to cacheMs, not to the first stage; its writes come after the last progress.
    const cache = task.cache && cacheAt(task.cache.dir, task.cache.maxBytes);
    const key = task.cache?.key ?? '';
    const store: TrajectoryStore | undefined = cache && {
      get() {
        const start = performance.now();
        const t = cache.get(key);
        mark = performance.now();
        timings.cacheMs += mark - start;
        // The key names the model; an entry another render node wrote names that node's folder for it.
        return t && { ...t, modelDir: m.info.dir };
      },
      put(t) {
        const start = performance.now();
        cache.put(key, t);
        tailCacheMs = performance.now() - start;
        timings.cacheMs += tailCacheMs;
      },
    };
    out =
      task.kind === 'inversion-edit' && task.carry
        ? await inversionChunk(m, task.frames, task.params, task.carry, hooks, store)
        : await runMethod(task, m, hooks, store);
  }
  const end = performance.now();
  timings.textMs += m.stats.textMs - textMark;
  timings.otherMs = end - mark - (m.stats.textMs - textMark) - tailCacheMs;
  timings.taskMs = end - t0;
  const s = m.stats;
  const stats = {
    unetRuns: s.unetRuns - before.unetRuns,
    unetEvals: s.unetEvals - before.unetEvals,
    unetMs: s.unetMs - before.unetMs,
    vaeMs: s.vaeMs - before.vaeMs,
    textMs: s.textMs - before.textMs,
  };
  return { ...out, stats, timings };
}

async function handle(msg: ToWorker): Promise<void> {
  try {
    switch (msg.type) {
      case 'load': {
        await model?.release();
        model = undefined;
        model = await loadDiffusionModel(msg.modelDir, msg.settings);
        send({ type: 'loaded', id: msg.id, info: model.info });
        break;
      }
      case 'run': {
        const flag = new Int32Array(msg.cancelFlag);
        let lastPreview = 0;
        const result = await runTask(
          msg.task,
          () => Atomics.load(flag, 0) !== 0,
          (p) => {
            // Previews are throttled: a progress event per step is cheap, a latent image per step is not.
            if (exitAtProgress && p.done === exitAtProgress) process.exit(70);
            const now = Date.now();
            const withPreview = p.preview && now - lastPreview >= PREVIEW_INTERVAL_MS;
            if (withPreview) lastPreview = now;
            send({ type: 'progress', id: msg.id, progress: withPreview ? p : { ...p, preview: undefined } });
          },
        );
        const traj = result.trajectory;
        send(
          { type: 'result', id: msg.id, result },
          buffersOf(
            result.frames.data,
            result.reconstruction?.data,
            result.latentMask,
            ...(traj?.latents ?? []),
            ...(traj?.sourceSteps?.levels ?? []),
            ...(result.anchor?.trajectory.latents ?? []),
            ...(result.anchor?.path ?? []),
            result.anchor?.mask,
          ),
        );
        break;
      }
      case 'close':
        await model?.release();
        model = undefined;
        send({ type: 'closed', id: msg.id });
        break;
    }
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    send({ type: 'error', id: msg.id, error: { name: e.name, message: e.message } });
  }
}

// handle() reports every failure to the main thread itself, so nothing is left to catch here.
port.on('message', (msg: ToWorker) => void handle(msg));
