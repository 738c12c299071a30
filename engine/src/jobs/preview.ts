// A small picture of what the denoiser currently predicts, for the panel's live thumbnail. Decoding through the
// VAE on every step would cost as much as a UNet call on real models, so the latent is mapped to RGB linearly.
import { encodePng } from '../media/png';

/**
 * Approximate latent→RGB map of the Stable Diffusion 1.x/2.x VAE (scaled latents), a least-squares fit that is
 * widely used for step previews. Rows: latent channels; columns: r, g, b.
 */
const SD_LATENT_RGB = [
  [0.298, 0.207, 0.208],
  [0.187, 0.286, 0.173],
  [-0.158, 0.189, 0.264],
  [-0.184, -0.271, -0.473],
];

/**
 * PNG of a [C, h, w] latent at most maxWidth wide. Pixel-resolution latents (VAE factor 1, like the oracle's)
 * hold RGB in their first three channels; 4-channel SD latents use the fitted map; anything else shows channel 0.
 */
export function latentPreviewPng(
  latent: Float32Array,
  channels: number,
  height: number,
  width: number,
  vaeScale: number,
  maxWidth = 160,
): Buffer {
  const step = Math.max(1, Math.ceil(width / maxWidth));
  const ow = Math.max(1, Math.floor(width / step));
  const oh = Math.max(1, Math.floor(height / step));
  const hw = height * width;
  const rgb = new Uint8Array(ow * oh * 3);
  const toByte = (v: number) => Math.max(0, Math.min(255, Math.round((v + 1) * 127.5)));
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      const p = y * step * width + x * step;
      const o = (y * ow + x) * 3;
      for (let c = 0; c < 3; c++) {
        let v: number;
        if (vaeScale === 1 && channels >= 3) v = latent[c * hw + p];
        else if (channels === 4) v = SD_LATENT_RGB.reduce((sum, row, k) => sum + row[c] * latent[k * hw + p], 0);
        else v = latent[p];
        rgb[o + c] = toByte(v);
      }
    }
  }
  return encodePng(rgb, ow, oh, 3);
}
