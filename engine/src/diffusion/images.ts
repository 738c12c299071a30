// Frames as the models see them: planar float batches. Media code converts to and from packed 8/10-bit pixels.

/** n RGB frames, layout NCHW (C = 3), values in [-1, 1]. */
export interface ImageBatch {
  n: number;
  height: number;
  width: number;
  data: Float32Array;
}

/** n single-channel mattes, layout NHW, values in [0, 1] (1 = edit here). */
export interface MaskBatch {
  n: number;
  height: number;
  width: number;
  data: Float32Array;
}

export function imageBatch(n: number, height: number, width: number, data?: Float32Array): ImageBatch {
  const size = n * 3 * height * width;
  if (data && data.length !== size)
    throw new Error(`image batch ${n}x3x${height}x${width} needs ${size} values, got ${data.length}`);
  return { n, height, width, data: data ?? new Float32Array(size) };
}

/** Packed RGB bytes (rgb24, one frame after another) -> planar [-1, 1]. */
export function fromRgb24(bytes: Uint8Array, n: number, height: number, width: number): ImageBatch {
  const hw = height * width;
  if (bytes.length !== n * hw * 3) throw new Error(`expected ${n * hw * 3} rgb24 bytes, got ${bytes.length}`);
  const out = imageBatch(n, height, width);
  for (let f = 0; f < n; f++) {
    const src = f * hw * 3;
    const dst = f * 3 * hw;
    for (let p = 0; p < hw; p++) {
      out.data[dst + p] = bytes[src + 3 * p] / 127.5 - 1;
      out.data[dst + hw + p] = bytes[src + 3 * p + 1] / 127.5 - 1;
      out.data[dst + 2 * hw + p] = bytes[src + 3 * p + 2] / 127.5 - 1;
    }
  }
  return out;
}

/** Planar [-1, 1] -> packed RGB bytes, clamped and rounded. */
export function toRgb24(batch: ImageBatch): Uint8Array {
  const hw = batch.height * batch.width;
  const out = new Uint8Array(batch.n * hw * 3);
  for (let f = 0; f < batch.n; f++) {
    const src = f * 3 * hw;
    const dst = f * hw * 3;
    for (let c = 0; c < 3; c++) {
      for (let p = 0; p < hw; p++) {
        const v = Math.round((batch.data[src + c * hw + p] + 1) * 127.5);
        out[dst + 3 * p + c] = v < 0 ? 0 : v > 255 ? 255 : v;
      }
    }
  }
  return out;
}

/** Frames [start, start + count) of a batch, sharing no memory with it. */
export function sliceFrames(batch: ImageBatch, start: number, count: number): ImageBatch {
  const per = 3 * batch.height * batch.width;
  return imageBatch(count, batch.height, batch.width, batch.data.slice(start * per, (start + count) * per));
}

/** `n` items in consecutive parts of at most `size`. */
export function batches(n: number, size: number): { start: number; count: number }[] {
  if (!Number.isInteger(size) || size < 1) throw new Error(`batch size must be a positive integer, got ${size}`);
  const out = [];
  for (let start = 0; start < n; start += size) out.push({ start, count: Math.min(size, n - start) });
  return out;
}
