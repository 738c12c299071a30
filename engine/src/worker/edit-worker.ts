// Worker thread entry: owns the model's ONNX Runtime sessions so the main thread (HTTP server, CLI progress) never
// blocks on a UNet call. session.run executes on the calling thread, which is why this has to live here.
import { parentPort } from 'node:worker_threads';
import { editFromInversion, inversionEdit } from '../editing/inversion-edit';
import { sdedit } from '../editing/sdedit';
import type { Progress } from '../editing/types';
import { loadDiffusionModel, type DiffusionModel } from '../models/sd-model';
import { buffersOf, type FromWorker, type Task, type TaskResult, type ToWorker } from './protocol';

const PREVIEW_INTERVAL_MS = 250;
// Fault injection for reliability tests: RESHOOT_FAULT=worker-exit-at-progress:N ends this thread abruptly after the
// N-th progress event of a task, as a crash would.
const exitAtProgress = Number(/^worker-exit-at-progress:(\d+)$/.exec(process.env.RESHOOT_FAULT ?? '')?.[1] ?? 0);
const port = parentPort;
if (!port) throw new Error('edit-worker must run inside a worker thread');

let model: DiffusionModel | undefined;

function send(msg: FromWorker, transfer: ArrayBuffer[] = []): void {
  port!.postMessage(msg, transfer);
}

async function runTask(task: Task, shouldStop: () => boolean, onProgress: (p: Progress) => void): Promise<TaskResult> {
  if (!model) throw new Error('no model is loaded in the compute worker');
  const before = { ...model.stats };
  const hooks = { shouldStop, onProgress };
  let out: Omit<TaskResult, 'stats'>;
  switch (task.kind) {
    case 'inversion-edit':
      out = await inversionEdit(model, task.frames, task.params, hooks);
      break;
    case 'edit-from-inversion':
      out = await editFromInversion(model, task.trajectory, task.params, hooks);
      break;
    case 'sdedit':
      out = await sdedit(model, task.frames, task.params, hooks);
      break;
  }
  const s = model.stats;
  const stats = {
    unetRuns: s.unetRuns - before.unetRuns,
    unetEvals: s.unetEvals - before.unetEvals,
    unetMs: s.unetMs - before.unetMs,
    vaeMs: s.vaeMs - before.vaeMs,
    textMs: s.textMs - before.textMs,
  };
  return { ...out, stats };
}

port.on('message', async (msg: ToWorker) => {
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
        const result = await runTask(msg.task, () => Atomics.load(flag, 0) !== 0, (p) => {
          // Previews are throttled: a progress event per step is cheap, a latent image per step is not.
          if (exitAtProgress && p.done === exitAtProgress) process.exit(70);
          const now = Date.now();
          const withPreview = p.preview && now - lastPreview >= PREVIEW_INTERVAL_MS;
          if (withPreview) lastPreview = now;
          send({ type: 'progress', id: msg.id, progress: withPreview ? p : { ...p, preview: undefined } });
        });
        const traj = result.trajectory;
        send({ type: 'result', id: msg.id, result }, buffersOf(result.frames.data, result.latentMask, ...(traj?.latents ?? [])));
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
});
