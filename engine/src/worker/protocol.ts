// Messages between the engine's main thread and the compute worker that owns the ONNX Runtime sessions.
import type { ImageBatch } from '../diffusion/images';
import type { InversionEditParams } from '../editing/inversion-edit';
import type { SdeditParams } from '../editing/sdedit';
import type { EditParams, InvertedTrajectory, Progress } from '../editing/types';
import type { ModelInfo, ModelStats } from '../models/sd-model';
import type { SessionSettings } from '../models/providers';

export type Task =
  | { kind: 'inversion-edit'; frames: ImageBatch; params: InversionEditParams }
  | { kind: 'edit-from-inversion'; trajectory: InvertedTrajectory; params: EditParams }
  | { kind: 'sdedit'; frames: ImageBatch; params: SdeditParams };

export type TaskResult = {
  frames: ImageBatch;
  trajectory?: InvertedTrajectory;
  latentMask?: Float32Array;
  warnings: string[];
  stats: ModelStats;
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
    if (a && a.buffer instanceof ArrayBuffer && a.byteOffset === 0 && a.byteLength === a.buffer.byteLength) seen.add(a.buffer);
  }
  return [...seen];
}
