// Messages between the engine's main thread and the compute worker that owns the ONNX Runtime sessions.
import type { CarriedAnchor, ChunkCarry } from '../editing/long-clip';
import type { MethodCall } from '../editing/pipelines';
import type { EditParams, InvertedTrajectory, MethodOutput, Progress } from '../editing/types';
import type { ModelInfo, ModelStats } from '../models/sd-model';
import type { SessionSettings } from '../models/providers';

/**
 * An inversion cache the worker reads and writes itself (jobs/inversion-cache.ts): multi-megabyte synchronous file IO
 * stays off the main thread, which answers HTTP, and the trajectory never has to travel between threads.
 */
export interface WorkerCache {
  dir: string;
  maxBytes: number;
  key: string;
}

/**
 * One edit method on frames (editing/pipelines/index.ts); `cache` is used by the methods that invert. `carry`: a chunk
 * of an inversion edit with cross-frame attention (editing/long-clip.ts inversionChunk).
 */
export type MethodTask = MethodCall & { cache?: WorkerCache; carry?: ChunkCarry };

export type Task = MethodTask | { kind: 'edit-from-inversion'; trajectory: InvertedTrajectory; params: EditParams };

/**
 * Where a task's wall time went inside the worker. Each stage is charged the time up to the progress event that ends
 * one of its units, so the stages add up to taskMs without timers inside the editing loops; text encoding is split
 * out of whichever stage called it.
 */
export interface TaskTimings {
  vaeEncodeMs: number;
  inversionMs: number;
  editMs: number;
  vaeDecodeMs: number;
  textMs: number;
  /** Reading and writing the inversion cache. */
  cacheMs: number;
  /** After the last progress event (result assembly). */
  otherMs: number;
  taskMs: number;
}

/**
 * The method's output (the trajectory only when the task had no cache to put it in) plus what it cost; `anchor`: the
 * anchor frames a chunk's carry asked to keep.
 */
export type TaskResult = MethodOutput & {
  anchor?: CarriedAnchor;
  stats: ModelStats;
  timings: TaskTimings;
};

export type ToWorker =
  | { type: 'load'; id: number; modelDir: string; settings: SessionSettings }
  | { type: 'run'; id: number; task: Task; cancelFlag: SharedArrayBuffer }
  | { type: 'close'; id: number };

export type FromWorker =
  | { type: 'loaded'; id: number; info: ModelInfo }
  | { type: 'progress'; id: number; progress: Progress }
  | { type: 'result'; id: number; result: TaskResult }
  | { type: 'error'; id: number; error: { name: string; message: string } }
  | { type: 'closed'; id: number };

/** The ArrayBuffers under a value, for transfer lists (each once). */
export function buffersOf(...arrays: (ArrayBufferView | undefined)[]): ArrayBuffer[] {
  const seen = new Set<ArrayBuffer>();
  for (const a of arrays) {
    if (a && a.buffer instanceof ArrayBuffer && a.byteOffset === 0 && a.byteLength === a.buffer.byteLength)
      seen.add(a.buffer);
  }
  return [...seen];
}
