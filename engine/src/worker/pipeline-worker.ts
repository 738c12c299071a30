// Main-thread handle on the compute worker. One task runs at a time (one GPU, one set of sessions); callers queue
// behind it. If the worker dies, the task in flight fails with the reason and the next call starts a fresh worker.
// Optionally the worker is stopped after a stretch with no task (unloadAfterMs): ONNX Runtime's CPU arena keeps a
// session's peak allocation for the session's life, and the Node binding has no run option to shrink it, so ending
// the thread that owns every session is what gives a job's peak memory back; the next task reloads the model.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { CanceledError, type Progress } from '../editing/types';
import type { ModelInfo } from '../models/sd-model';
import type { SessionSettings } from '../models/providers';
import { buffersOf, type FromWorker, type Task, type TaskResult, type ToWorker } from './protocol';

export interface RunOptions {
  onProgress?: (p: Progress) => void;
  /** Hand the input frames' memory to the worker instead of copying it (the caller's arrays become unusable). */
  transfer?: boolean;
}

export interface RunningTask {
  /** Stops the task at the next UNet call boundary; the promise then rejects with CanceledError. */
  cancel(): void;
  result: Promise<TaskResult>;
}

export interface WorkerOptions {
  /**
   * Stop the worker thread (and with it every ONNX Runtime session and their memory) once no task has been queued or
   * running for this long; the next task starts a fresh thread and reloads the model. Absent or 0: keep it loaded.
   */
  unloadAfterMs?: number;
  /** Called after an idle unload, e.g. for a log line. */
  onUnload?: () => void;
}

type Pending = { resolve(v: FromWorker): void; reject(e: Error): void; onProgress?(p: Progress): void };

function workerScript(): string {
  // Under ts-jest/swc this module runs from TypeScript source; the worker needs compiled JavaScript (npm run build).
  const own = __filename.endsWith('.ts')
    ? path.resolve(__dirname, '../../../dist/engine/src/worker/edit-worker.js')
    : path.join(__dirname, 'edit-worker.js');
  if (!fs.existsSync(own)) throw new Error(`compute worker script ${own} is missing; run \`npm run build\` first`);
  return own;
}

export class PipelineWorker {
  private worker?: Worker;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private queue: Promise<unknown> = Promise.resolve();
  private loadedInfo?: ModelInfo;
  /**
   * The model's description outlives a crashed or unloaded thread: health and job planning need it before the next
   * task reloads.
   */
  private lastInfo?: ModelInfo;
  private current?: { flag: Int32Array; done: Promise<unknown> };
  /** Tasks queued or running: the idle timer runs only while this is 0. */
  private active = 0;
  private idleTimer?: NodeJS.Timeout;

  private constructor(
    private readonly modelDir: string,
    private readonly settings: SessionSettings,
    private readonly env: Record<string, string>,
    private readonly options: WorkerOptions,
  ) {}

  /**
   * Starts a worker and loads the model in it; rejects with the loader's message when the folder is unusable.
   * `env` adds variables to the worker's environment (e.g. RESHOOT_FAULT for fault-injection tests).
   */
  static async start(
    modelDir: string,
    settings: SessionSettings = {},
    env: Record<string, string> = {},
    options: WorkerOptions = {},
  ): Promise<PipelineWorker> {
    const w = new PipelineWorker(modelDir, settings, env, options);
    await w.ensureLoaded();
    w.armIdleTimer();
    return w;
  }

  get info(): ModelInfo {
    const info = this.loadedInfo ?? this.lastInfo;
    if (!info) throw new Error('model not loaded');
    return info;
  }

  /** Whether a worker thread holds the model's sessions now (false after an idle unload, a crash or terminate). */
  get loaded(): boolean {
    return this.worker !== undefined && this.loadedInfo !== undefined;
  }

  private spawn(): Worker {
    const worker = new Worker(workerScript(), { env: { ...process.env, ...this.env } });
    worker.on('message', (msg: FromWorker) => {
      const p = this.pending.get(msg.id);
      if (!p) return;
      if (msg.type === 'progress') return p.onProgress?.(msg.progress);
      this.pending.delete(msg.id);
      if (msg.type === 'error') {
        const err =
          msg.error.name === 'CanceledError'
            ? new CanceledError()
            : Object.assign(new Error(msg.error.message), { name: msg.error.name });
        p.reject(err);
      } else p.resolve(msg);
    });
    const fail = (reason: string) => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      this.loadedInfo = undefined;
      for (const [id, p] of this.pending) {
        this.pending.delete(id);
        p.reject(new Error(`the compute worker stopped (${reason}); the task was not finished`));
      }
    };
    worker.on('error', (err) => fail(err.message));
    worker.on('exit', (code) => fail(`exit code ${code}`));
    // The worker must not keep the process alive on its own (CLI exits once its work is done).
    worker.unref();
    return worker;
  }

  private request(
    msg: ToWorker,
    transfer: ArrayBuffer[] = [],
    onProgress?: (p: Progress) => void,
  ): Promise<FromWorker> {
    const worker = this.worker;
    if (!worker) return Promise.reject(new Error('the compute worker is not running'));
    return new Promise((resolve, reject) => {
      this.pending.set(msg.id, { resolve, reject, onProgress });
      worker.postMessage(msg, transfer);
    });
  }

  private async ensureLoaded(): Promise<void> {
    if (this.worker && this.loadedInfo) return;
    this.worker ??= this.spawn();
    this.worker.ref();
    try {
      const reply = await this.request({
        type: 'load',
        id: this.nextId++,
        modelDir: this.modelDir,
        settings: this.settings,
      });
      if (reply.type !== 'loaded') throw new Error(`unexpected reply ${reply.type}`);
      this.loadedInfo = reply.info;
      this.lastInfo = reply.info;
    } catch (err) {
      await this.terminate();
      throw err;
    } finally {
      this.worker?.unref();
    }
  }

  run(task: Task, options: RunOptions = {}): RunningTask {
    const cancelFlag = new SharedArrayBuffer(4);
    const flag = new Int32Array(cancelFlag);
    // Counted from now, not from when its turn comes: an unload already queued ahead of it then stands down.
    this.active++;
    this.clearIdleTimer();
    const result = (this.queue = this.queue
      .catch(() => undefined)
      .then(async () => {
        try {
          if (Atomics.load(flag, 0)) throw new CanceledError();
          await this.ensureLoaded();
          const transfer = options.transfer
            ? buffersOf(task.kind === 'edit-from-inversion' ? undefined : task.frames.data)
            : [];
          this.worker!.ref();
          const done = this.request({ type: 'run', id: this.nextId++, task, cancelFlag }, transfer, options.onProgress);
          this.current = { flag, done };
          try {
            const reply = await done;
            if (reply.type !== 'result') throw new Error(`unexpected reply ${reply.type}`);
            return reply.result;
          } finally {
            this.current = undefined;
            this.worker?.unref();
          }
        } finally {
          if (--this.active === 0) this.armIdleTimer();
        }
      })) as Promise<TaskResult>;
    return { cancel: () => Atomics.store(flag, 0, 1), result };
  }

  /**
   * Stops the worker thread. A task in flight is canceled first and waited for: terminating a thread while it is
   * inside a native ONNX Runtime call aborts the whole process.
   */
  async terminate(): Promise<void> {
    this.clearIdleTimer();
    const running = this.current;
    if (running) {
      Atomics.store(running.flag, 0, 1);
      await running.done.catch(() => undefined);
    }
    const w = this.worker;
    this.worker = undefined;
    this.loadedInfo = undefined;
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.reject(new Error('the compute worker was shut down'));
    }
    if (w) await w.terminate();
  }

  private clearIdleTimer(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  private armIdleTimer(): void {
    const ms = this.options.unloadAfterMs;
    this.clearIdleTimer();
    if (!ms || ms <= 0 || this.active > 0 || !this.worker) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      // Through the task queue, so it never overlaps a task: one queued meanwhile waits for it, then reloads. Nobody
      // awaits this step, so it must not reject (an unhandled rejection ends the process); a failed unload leaves the
      // next task to start a fresh worker as after a crash.
      this.queue = this.queue
        .catch(() => undefined)
        .then(() => this.unloadIfIdle())
        .catch(() => undefined);
    }, ms);
    // An idle engine with nothing else to do (a CLI that has finished) must still be free to exit.
    this.idleTimer.unref();
  }

  /**
   * Unloads the model now, as the idle timer would, unless a task is queued or running; the next task reloads it. The
   * memory probe asks for this so that it does not hold a second copy of the model beside this one.
   */
  unload(): Promise<void> {
    this.clearIdleTimer();
    const step = this.queue
      .catch(() => undefined)
      .then(() => {
        // The caller waits on this: an unreferenced thread would let the process exit before the thread has ended.
        this.worker?.ref();
        return this.unloadIfIdle(false);
      });
    this.queue = step.catch(() => undefined);
    return step;
  }

  /** The idle unload, run in the task queue's turn: releases the sessions in the thread, then ends the thread. */
  private async unloadIfIdle(idle = true): Promise<void> {
    const w = this.worker;
    // A task arrived after the timer fired (it waits behind this step): keep the model for it.
    if (!w || this.active > 0) return;
    // Releasing first frees the sessions while the thread is alive and quiet; a thread's teardown alone leaves them to
    // finalizers. A failure here (the thread already gone) changes nothing about what follows.
    if (this.loadedInfo) await this.request({ type: 'close', id: this.nextId++ }).catch(() => undefined);
    if (this.worker !== w) return; // it died, or terminate() ran, meanwhile
    this.worker = undefined;
    this.loadedInfo = undefined;
    await w.terminate();
    if (idle) this.options.onUnload?.();
  }
}
