// FateZero's attention blend mask: where the words the edit changes are attended to is where the edit belongs. The
// cross-attention maps of the changed words (the source's words in the source run, the target's in the target run),
// from the coarse sites (16×16 at SD's 64×64 latent), summed over those words, averaged over sites and levels, then
// 3×3 max-pooled, upsampled to the latent, normalised by the frame's maximum and thresholded like the DiffEdit score.
import { resizeMask } from './mask-ops';

/** The coarse grid of a site at `resolution` (the UNet halves the grid with stride-2 convolutions that round up). */
export function siteGrid(h: number, w: number, resolution: number): { h: number; w: number } {
  return { h: Math.ceil(h / resolution), w: Math.ceil(w / resolution) };
}

/**
 * Adds the maps' columns `tokens`, summed, of `items` consecutive batch items starting at `first`, into `into`
 * ([n, gh·gw], frame `frame0` onwards). `maps` is [B, N_q, T], N_q = gh·gw.
 */
export function addWordMaps(
  into: Float32Array,
  maps: { data: Float32Array; dims: readonly number[] },
  first: number,
  items: number,
  frame0: number,
  tokens: readonly number[],
): void {
  const [, nq, T] = maps.dims;
  for (let i = 0; i < items; i++) {
    const src = (first + i) * nq * T;
    const dst = (frame0 + i) * nq;
    for (let q = 0; q < nq; q++) {
      let s = 0;
      for (const t of tokens) s += maps.data[src + q * T + t];
      into[dst + q] += s;
    }
  }
}

/** Coarse per-frame word maps [n, gh, gw] → the score [n, h, w] in [0, 1]: 3×3 max-pool, upsample, normalise. */
export function wordMapScore(
  coarse: Float32Array,
  n: number,
  gh: number,
  gw: number,
  h: number,
  w: number,
): Float32Array {
  const pooled = new Float32Array(coarse.length);
  for (let f = 0; f < n; f++)
    for (let y = 0; y < gh; y++)
      for (let x = 0; x < gw; x++) {
        let m = -Infinity;
        for (let dy = -1; dy <= 1; dy++)
          for (let dx = -1; dx <= 1; dx++) {
            const yy = y + dy;
            const xx = x + dx;
            if (yy >= 0 && yy < gh && xx >= 0 && xx < gw) m = Math.max(m, coarse[(f * gh + yy) * gw + xx]);
          }
        pooled[(f * gh + y) * gw + x] = m;
      }
  const score = resizeMask(pooled, n, gh, gw, h, w);
  for (let f = 0; f < n; f++) {
    const plane = score.subarray(f * h * w, (f + 1) * h * w);
    let max = 0;
    for (const v of plane) max = Math.max(max, v);
    // No attention to the changed words anywhere (identical prompts): nothing to edit.
    const scale = max > 1e-12 ? 1 / max : 0;
    for (let p = 0; p < plane.length; p++) plane[p] *= scale;
  }
  return score;
}
