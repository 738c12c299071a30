// Refinements of the automatic mask between the InvEdit score and the blend: temporal smoothing along the source's
// correspondences, dilation, and a soft outer edge. All sizes are in latent pixels (the oracle's latents are at
// pixel resolution; a real SD VAE's latent pixel is 8 image pixels). Masks are [n, h, w] planes in [0, 1].
import { smoothAlongFields, type NeighbourFields } from '../../flow/correspondence';

export interface MaskRefinement {
  /** Score threshold (the automatic mask's). */
  threshold: number;
  /** Weight a of each neighbouring frame in the motion-compensated score average; 0 = off, at most 1/3. */
  smoothing: number;
  /**
   * Hysteresis (as in Canny's edge detector): a region above `threshold` is kept only if it reaches `seed` somewhere;
   * 0 (or anything not above the threshold) keeps every pixel above the threshold.
   */
  seed: number;
  /** Grow the binary mask by this radius (Euclidean disc). */
  dilate: number;
  /**
   * Width of a linear ramp outside the (dilated) mask: 1 inside, falling to 0 over `softEdge` pixels outside.
   * Outward only, so every pixel the mask selected is still fully edited; the ramp hides the seam instead.
   */
  softEdge: number;
  minSimilarity: number;
}

/** Score → binary mask at the threshold, per value. */
export function thresholdMap(score: Float32Array, threshold: number): Float32Array {
  const out = new Float32Array(score.length);
  for (let i = 0; i < score.length; i++) out[i] = score[i] > threshold ? 1 : 0;
  return out;
}

/**
 * Score → binary mask by hysteresis, per frame: pixels above `seed` and every pixel above `threshold` connected to
 * one of them (8-neighbourhood). Regions that pass the threshold without a strong core — the background specks that
 * noise and texture push over it in one frame and not the next — are dropped; the object's weaker edge pixels stay,
 * because they hang together with its core.
 */
export function hysteresisMap(
  score: Float32Array,
  n: number,
  h: number,
  w: number,
  threshold: number,
  seed: number,
): Float32Array {
  const out = new Float32Array(score.length);
  const hw = h * w;
  const stack = new Int32Array(score.length);
  let top = 0;
  for (let i = 0; i < score.length; i++) {
    if (score[i] > seed) {
      out[i] = 1;
      stack[top++] = i;
    }
  }
  while (top > 0) {
    const i = stack[--top];
    const base = i - (i % hw);
    const p = i - base;
    const y = (p / w) | 0;
    const x = p - y * w;
    for (let dy = -1; dy <= 1; dy++) {
      const yy = y + dy;
      if (yy < 0 || yy >= h) continue;
      for (let dx = -1; dx <= 1; dx++) {
        const xx = x + dx;
        if (xx < 0 || xx >= w) continue;
        const j = base + yy * w + xx;
        if (out[j] === 0 && score[j] > threshold) {
          out[j] = 1;
          stack[top++] = j;
        }
      }
    }
  }
  return out;
}

/**
 * Dilation by `dilate` and an outward ramp of `softEdge`, per frame: value = 1 within distance `dilate` of a mask
 * pixel (> 0.5), then 1 − (d − dilate)/(softEdge + 1) out to `dilate + softEdge`, else the input value (soft input
 * values are kept where they are larger).
 */
export function growAndFeather(
  mask: Float32Array,
  n: number,
  h: number,
  w: number,
  dilate: number,
  softEdge: number,
): Float32Array {
  const out = Float32Array.from(mask);
  const R = dilate + softEdge;
  if (R <= 0) return out;
  const reach = Math.ceil(R);
  const hw = h * w;
  for (let f = 0; f < n; f++) {
    const base = f * hw;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        if (mask[base + y * w + x] <= 0.5) continue;
        for (let dy = -reach; dy <= reach; dy++) {
          const yy = y + dy;
          if (yy < 0 || yy >= h) continue;
          for (let dx = -reach; dx <= reach; dx++) {
            const xx = x + dx;
            if (xx < 0 || xx >= w) continue;
            const d = Math.sqrt(dx * dx + dy * dy);
            if (d > R) continue;
            const v = d <= dilate ? 1 : 1 - (d - dilate) / (softEdge + 1);
            const i = base + yy * w + xx;
            if (v > out[i]) out[i] = v;
          }
        }
      }
    }
  }
  return out;
}

/**
 * The automatic mask after refinement: smoothed score (when `fields` are given and smoothing > 0) → threshold, with
 * hysteresis seeds when asked → dilation → soft edge. Without any refinement this is exactly the automatic mask's
 * own thresholding.
 */
export function refineAutoMask(
  score: Float32Array,
  n: number,
  h: number,
  w: number,
  r: MaskRefinement,
  fields?: NeighbourFields,
): Float32Array {
  const smoothed =
    fields && r.smoothing > 0
      ? smoothAlongFields(score, n, h * w, fields, Math.min(r.smoothing, 1 / 3), r.minSimilarity)
      : score;
  const binary =
    r.seed > r.threshold ? hysteresisMap(smoothed, n, h, w, r.threshold, r.seed) : thresholdMap(smoothed, r.threshold);
  return growAndFeather(binary, n, h, w, r.dilate, r.softEdge);
}

/**
 * Bilinear resize of [n, h, w] mattes to [n, H, W] with pixel-centre alignment: used to hand the latent-resolution
 * mask back at frame or output size.
 */
export function resizeMask(mask: Float32Array, n: number, h: number, w: number, H: number, W: number): Float32Array {
  if (h === H && w === W) return Float32Array.from(mask);
  const out = new Float32Array(n * H * W);
  const sy = h / H;
  const sx = w / W;
  for (let f = 0; f < n; f++) {
    const src = f * h * w;
    for (let Y = 0; Y < H; Y++) {
      const fy = Math.min(h - 1, Math.max(0, (Y + 0.5) * sy - 0.5));
      const y0 = Math.floor(fy);
      const y1 = Math.min(h - 1, y0 + 1);
      const ay = fy - y0;
      for (let X = 0; X < W; X++) {
        const fx = Math.min(w - 1, Math.max(0, (X + 0.5) * sx - 0.5));
        const x0 = Math.floor(fx);
        const x1 = Math.min(w - 1, x0 + 1);
        const ax = fx - x0;
        const top = (1 - ax) * mask[src + y0 * w + x0] + ax * mask[src + y0 * w + x1];
        const bottom = (1 - ax) * mask[src + y1 * w + x0] + ax * mask[src + y1 * w + x1];
        out[(f * H + Y) * W + X] = (1 - ay) * top + ay * bottom;
      }
    }
  }
  return out;
}
