import type { MaskBatch } from '../../diffusion/images';

/**
 * A frame-resolution matte averaged down to latent resolution, one plane per frame: [n, h, w]. A single matte
 * applies to every frame. Area averaging keeps soft edges soft instead of aliasing them.
 */
export function latentMask(mask: MaskBatch, frames: number, h: number, w: number): Float32Array {
  if (mask.n !== 1 && mask.n !== frames)
    throw new Error(`the mask has ${mask.n} frames; give one matte for all frames or one per frame (${frames})`);
  const sy = mask.height / h;
  const sx = mask.width / w;
  if (!Number.isInteger(sy) || !Number.isInteger(sx) || sy !== sx) {
    throw new Error(
      `mask size ${mask.width}x${mask.height} does not match the frames (latents ${w}x${h}); scale the matte to the frame size`,
    );
  }
  const out = new Float32Array(frames * h * w);
  const area = sy * sx;
  for (let f = 0; f < frames; f++) {
    const src = (mask.n === 1 ? 0 : f) * mask.height * mask.width;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let sum = 0;
        for (let dy = 0; dy < sy; dy++) {
          const row = src + (y * sy + dy) * mask.width + x * sx;
          for (let dx = 0; dx < sx; dx++) sum += mask.data[row + dx];
        }
        out[f * h * w + y * w + x] = sum / area;
      }
    }
  }
  return out;
}

/**
 * z ← m·z + (1 − m)·keep per latent pixel, for all channels. z and keep are [n, C, hw]; m is [n, hw] for the same
 * n frames (pass the matching subarrays for a batch).
 */
export function blendOutsideMask(
  z: Float32Array,
  keep: Float32Array,
  m: Float32Array,
  channels: number,
  hw: number,
): void {
  const n = m.length / hw;
  if (z.length !== n * channels * hw || keep.length !== z.length)
    throw new Error('blendOutsideMask: latent and mask sizes disagree');
  for (let f = 0; f < n; f++) {
    const mo = f * hw;
    for (let c = 0; c < channels; c++) {
      const zo = (f * channels + c) * hw;
      for (let p = 0; p < hw; p++) {
        const a = m[mo + p];
        z[zo + p] = a * z[zo + p] + (1 - a) * keep[zo + p];
      }
    }
  }
}
