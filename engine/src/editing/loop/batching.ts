// What every pipeline does around its UNet calls: split frames into batches, lay out prompt embeddings per batch item,
// check the frames fit the VAE, and decode the latents batch by batch.
import type { ImageBatch } from '../../diffusion/images';
import { batches } from '../../diffusion/images';
import type { DiffusionModel } from '../../models/sd-model';
import type { ProgressTracker } from './progress';

/** Repeats each prompt's embedding `times` times, in order: [p0 ×times, p1 ×times, ...]. */
export function repeatEmbeddings(rows: Float32Array[], times: number): Float32Array {
  const per = rows[0].length;
  const out = new Float32Array(rows.length * times * per);
  rows.forEach((row, i) => {
    for (let k = 0; k < times; k++) out.set(row, (i * times + k) * per);
  });
  return out;
}

/** Each distinct prompt encoded once; the text encoder's warnings (truncation) are added to `warnings` once each. */
export async function embedRows(
  model: DiffusionModel,
  prompts: string[],
  warnings: string[],
): Promise<Map<string, Float32Array>> {
  const unique = [...new Set(prompts)];
  const emb = await model.encodePrompts(unique);
  for (const w of emb.warnings) if (!warnings.includes(w)) warnings.push(w);
  const per = emb.data.length / unique.length;
  return new Map(unique.map((p, i) => [p, emb.data.slice(i * per, (i + 1) * per)]));
}

export function validateFrames(model: DiffusionModel, frames: ImageBatch): void {
  const s = model.info.vaeScale;
  if (frames.n < 1) throw new Error('no frames to edit');
  if (frames.height % s || frames.width % s) {
    throw new Error(
      `frame size ${frames.width}x${frames.height} must be a multiple of ${s} (the model's VAE factor); resize or crop the frames`,
    );
  }
}

export async function decodeAll(
  model: DiffusionModel,
  latents: Float32Array,
  n: number,
  C: number,
  h: number,
  w: number,
  batchSize: number,
  track: ProgressTracker,
): Promise<ImageBatch> {
  const per = C * h * w;
  let result: ImageBatch | undefined;
  for (const { start, count } of batches(n, batchSize)) {
    track.checkStop();
    const img = await model.decodeLatents(latents.subarray(start * per, (start + count) * per), count, h, w);
    if (!result)
      result = { n, height: img.height, width: img.width, data: new Float32Array(n * 3 * img.height * img.width) };
    result.data.set(img.data, start * 3 * img.height * img.width);
    track.advance('decoding latents', start);
  }
  return result!;
}
