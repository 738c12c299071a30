// What the attention-stage tests share: the models they edit with (a real-export fixture with folded heads and a
// generated tiny-sd with split heads, random weights), a moving test pattern, and a model opened and released around
// a test.
import * as path from 'node:path';
import { imageBatch, type ImageBatch } from '../../engine/src/diffusion/images';
import { generateTinySd } from '../../engine/src/models/generate/tiny-sd';
import { loadDiffusionModel, type DiffusionModel } from '../../engine/src/models/sd-model';

export const REAL_EXPORT = path.join(__dirname, '..', 'fixtures', 'real-export');

/** [label, model folder] pairs; the tiny-sd is generated into `tmp()` by `generateStageModels`. */
export function stageModels(tmp: () => string): [string, () => string][] {
  return [
    ['sd15-tiny (folded heads)', () => path.join(REAL_EXPORT, 'sd15-tiny')],
    ['generated tiny-sd (split heads, Kᵀ)', () => path.join(tmp(), 'tiny-sd')],
  ];
}

export function generateStageModels(tmp: string): void {
  generateTinySd(path.join(tmp, 'tiny-sd'), 'optimum');
}

/** n frames of a moving pattern, or n copies of frame 0 when `still`. */
export function movingFrames(n: number, size: number, still = false): ImageBatch {
  const per = 3 * size * size;
  return imageBatch(
    n,
    size,
    size,
    Float32Array.from({ length: n * per }, (_, i) =>
      Math.sin((i % per) * 0.013 + (still ? 0 : Math.floor(i / per) * 0.4)),
    ),
  );
}

export function maxDiff(a: Float32Array, b: Float32Array, from = 0, to = a.length): number {
  let d = 0;
  for (let i = from; i < to; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

/** Opens the model with one thread and a graph cache under `tmp`, runs `f`, releases the model. */
export async function withModel(dir: string, tmp: string, f: (m: DiffusionModel) => Promise<void>): Promise<void> {
  const m = await loadDiffusionModel(dir, { threads: 1, graphCache: path.join(tmp, 'graph-cache') });
  try {
    await f(m);
  } finally {
    await m.release();
  }
}
