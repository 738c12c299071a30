// Quality metrics on planar [-1, 1] batches. Sums run in float64 (JS numbers): float32 accumulation over a
// few million pixels would lose the small differences these metrics exist to measure.

import { ImageBatch, MaskBatch } from '../diffusion/images';

export type Region = 'inside' | 'outside';

function sizeOf(b: { n: number; height: number; width: number }): string {
  return `${b.n}x${b.height}x${b.width}`;
}

function sameImageSize(a: ImageBatch, b: ImageBatch, what: string): void {
  if (a.n !== b.n || a.height !== b.height || a.width !== b.width) {
    throw new Error(`${what}: image sizes differ: ${sizeOf(a)} vs ${sizeOf(b)} (frames x height x width)`);
  }
  checkImageData(a, what);
  checkImageData(b, what);
}

function checkImageData(a: ImageBatch, what: string): void {
  const want = a.n * 3 * a.height * a.width;
  if (a.data.length !== want)
    throw new Error(`${what}: image ${sizeOf(a)}x3 needs ${want} values, has ${a.data.length}`);
}

function maskMatches(img: ImageBatch, mask: MaskBatch, what: string): void {
  if (mask.n !== img.n || mask.height !== img.height || mask.width !== img.width) {
    throw new Error(
      `${what}: mask size ${sizeOf(mask)} differs from image size ${sizeOf(img)} (frames x height x width)`,
    );
  }
  const want = mask.n * mask.height * mask.width;
  if (mask.data.length !== want)
    throw new Error(`${what}: mask ${sizeOf(mask)} needs ${want} values, has ${mask.data.length}`);
}

function weightOf(m: number, region: Region): number {
  return region === 'inside' ? m : 1 - m;
}

export function mse(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`mse: lengths differ: ${a.length} vs ${b.length}`);
  if (a.length === 0) throw new Error('mse: arrays are empty');
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    s += d * d;
  }
  return s / a.length;
}

function psnrFromMse(m: number, peak: number): number {
  if (Number.isNaN(m)) return NaN;
  if (m === 0) return Infinity;
  return 10 * Math.log10((peak * peak) / m);
}

/** Images in [-1, 1], so the peak-to-peak range is 2. Infinity when identical. */
export function psnr(a: ImageBatch, b: ImageBatch, peak = 2): number {
  sameImageSize(a, b, 'psnr');
  return psnrFromMse(mse(a.data, b.data), peak);
}

/**
 * Weighted mean squared error over the selected pixels, every channel counted. PIE-Bench zeroes the other
 * region and then averages over the whole image, which dilutes the error by the region's area; dividing by the
 * selected weight instead keeps the number comparable between small and large masks.
 * NaN when the region selects nothing.
 */
function maskedMse(a: ImageBatch, b: ImageBatch, mask: MaskBatch, region: Region): number {
  const hw = a.height * a.width;
  let s = 0;
  let w = 0;
  for (let f = 0; f < a.n; f++) {
    for (let p = 0; p < hw; p++) {
      const wt = weightOf(mask.data[f * hw + p], region);
      if (wt === 0) continue;
      let d2 = 0;
      for (let c = 0; c < 3; c++) {
        const i = (f * 3 + c) * hw + p;
        const d = a.data[i] - b.data[i];
        d2 += d * d;
      }
      s += wt * d2;
      w += wt;
    }
  }
  return w > 0 ? s / (3 * w) : NaN;
}

/**
 * PSNR over the pixels the mask selects: region 'inside' weights by mask, 'outside' by 1 - mask (the PIE-Bench
 * unedited-region protocol uses 'outside' with the edit mask). NaN when the region is empty; Infinity when the
 * selected pixels are identical.
 */
export function maskedPsnr(a: ImageBatch, b: ImageBatch, mask: MaskBatch, region: Region, peak = 2): number {
  sameImageSize(a, b, 'maskedPsnr');
  maskMatches(a, mask, 'maskedPsnr');
  return psnrFromMse(maskedMse(a, b, mask, region), peak);
}

/** Weighted mean RGB of the selected pixels; NaNs when the region is empty. */
export function meanColour(batch: ImageBatch, mask: MaskBatch, region: Region): [number, number, number] {
  checkImageData(batch, 'meanColour');
  maskMatches(batch, mask, 'meanColour');
  const hw = batch.height * batch.width;
  const sum = [0, 0, 0];
  let w = 0;
  for (let f = 0; f < batch.n; f++) {
    for (let p = 0; p < hw; p++) {
      const wt = weightOf(mask.data[f * hw + p], region);
      if (wt === 0) continue;
      for (let c = 0; c < 3; c++) sum[c] += wt * batch.data[(f * 3 + c) * hw + p];
      w += wt;
    }
  }
  return [sum[0] / w, sum[1] / w, sum[2] / w];
}

/**
 * Mean Euclidean RGB distance (in [-1, 1] units, so at most 2·√3) between each selected pixel and a target
 * colour, weighted like meanColour. Distance per pixel rather than distance of the mean: a half-red,
 * half-blue object averaging to purple must not score as a good purple edit. NaN when the region is empty.
 */
export function colourError(
  batch: ImageBatch,
  mask: MaskBatch,
  target: [number, number, number],
  region: Region = 'inside',
): number {
  checkImageData(batch, 'colourError');
  maskMatches(batch, mask, 'colourError');
  return meanDistance(batch, mask, region, (_f, c) => target[c]);
}

/**
 * Mean distance inside the mask to the exact edit: every source pixel moved by `shift`, which is what an ideal inversion
 * edit does to a pixel that stays in one component of the oracle (docs/ORACLE.md, "Partial edits"). Unlike
 * colourError it leaves out what no method can change, the texture and the residual of the starting noise level.
 */
export function exactEditError(batch: ImageBatch, source: ImageBatch, mask: MaskBatch, shift: number[]): number {
  checkImageData(batch, 'exactEditError');
  maskMatches(batch, mask, 'exactEditError');
  if (source.data.length !== batch.data.length)
    throw new Error('exactEditError: the source and the edit differ in size');
  const hw = batch.height * batch.width;
  return meanDistance(batch, mask, 'inside', (f, c, p) => source.data[(f * 3 + c) * hw + p] + shift[c]);
}

/** Mean Euclidean RGB distance to a reference colour per pixel, weighted by the mask (or its complement). */
function meanDistance(
  batch: ImageBatch,
  mask: MaskBatch,
  region: Region,
  reference: (frame: number, channel: number, pixel: number) => number,
): number {
  const hw = batch.height * batch.width;
  let s = 0;
  let w = 0;
  for (let f = 0; f < batch.n; f++) {
    for (let p = 0; p < hw; p++) {
      const wt = weightOf(mask.data[f * hw + p], region);
      if (wt === 0) continue;
      let d2 = 0;
      for (let c = 0; c < 3; c++) {
        const d = batch.data[(f * 3 + c) * hw + p] - reference(f, c, p);
        d2 += d * d;
      }
      s += wt * Math.sqrt(d2);
      w += wt;
    }
  }
  return s / w;
}

/**
 * Intersection over union of the two masks binarised at value > threshold. Two empty masks agree perfectly,
 * so that case is 1 rather than 0/0.
 */
export function maskIoU(a: MaskBatch, b: MaskBatch, threshold = 0.5): number {
  if (a.n !== b.n || a.height !== b.height || a.width !== b.width) {
    throw new Error(`maskIoU: mask sizes differ: ${sizeOf(a)} vs ${sizeOf(b)} (frames x height x width)`);
  }
  if (a.data.length !== b.data.length)
    throw new Error(`maskIoU: mask data lengths differ: ${a.data.length} vs ${b.data.length}`);
  let inter = 0;
  let union = 0;
  for (let i = 0; i < a.data.length; i++) {
    const x = a.data[i] > threshold;
    const y = b.data[i] > threshold;
    if (x && y) inter++;
    if (x || y) union++;
  }
  return union === 0 ? 1 : inter / union;
}

/**
 * Sample channel plane `plane` (offset into data) at fractional pixel position (x, y), bilinear. Callers keep
 * (x, y) within [0, W-1] x [0, H-1]; a neighbour is read only when its weight is non-zero, so integer positions
 * on the last row or column never touch memory outside the plane.
 */
function bilinear(data: Float32Array, plane: number, W: number, x: number, y: number): number {
  const x0 = Math.floor(x);
  const y0 = Math.floor(y);
  const fx = x - x0;
  const fy = y - y0;
  const i = plane + y0 * W + x0;
  let v = (1 - fx) * (1 - fy) * data[i];
  if (fx > 0) v += fx * (1 - fy) * data[i + 1];
  if (fy > 0) v += (1 - fx) * fy * data[i + W];
  if (fx > 0 && fy > 0) v += fx * fy * data[i + W + 1];
  return v;
}

/**
 * Flow warp error (Lai et al. 2018, fast_blind_video_consistency evaluate_WarpError.py).
 *
 * Direction: `flow` is the FORWARD flow of the SOURCE clip, layout [(n-1), 2, H, W] as (dx, dy) in pixels.
 * flow_t(p) says that the content at pixel p of frame t is found at p + flow_t(p) in frame t+1. The backward
 * warp therefore samples O_{t+1} at p + flow_t(p) (bilinear) and compares it with O_t(p). Passing backward flow
 * (t+1 -> t) by mistake roughly doubles the error on moving regions instead of cancelling it.
 *
 * Per pair: E_t = Σ_p Σ_c ((warp(O_{t+1}) - O_t)² · (1 - occ)) / (3 · Σ_p (1 - occ)), images mapped to [0, 1]. The
 * 3 matches the reference, whose occlusion mask is read as a 3-channel image, so E_t is a per-channel mean.
 * occ is 1 where the flow target lies outside the frame (pixel centres, [0, W-1] x [0, H-1]) and otherwise
 * the optional `occlusion` mask ([(n-1), H, W], 1 = occluded; a soft value counts as a partial weight).
 * A pair with nothing visible contributes 0, as in the reference. Result: mean of E_t over the n-1 pairs.
 */
export function warpError(frames: ImageBatch, flow: Float32Array, occlusion?: MaskBatch): number {
  const perPair = warpErrorPerPair(frames, flow, occlusion);
  let total = 0;
  for (const e of perPair) total += e;
  return total / perPair.length;
}

/** E_t of each pair (t, t+1), as defined for warpError; for per-frame plots and seam measurements. */
export function warpErrorPerPair(frames: ImageBatch, flow: Float32Array, occlusion?: MaskBatch): number[] {
  checkImageData(frames, 'warpError');
  const { n, height: H, width: W } = frames;
  if (n < 2) throw new Error(`warpError: needs at least 2 frames, got ${n}`);
  const hw = H * W;
  const pairs = n - 1;
  if (flow.length !== pairs * 2 * hw) {
    throw new Error(
      `warpError: flow has ${flow.length} values, expected ${pairs}x2x${H}x${W} = ${pairs * 2 * hw} for ${n} frames of ${H}x${W}`,
    );
  }
  if (occlusion) {
    if (occlusion.n !== pairs || occlusion.height !== H || occlusion.width !== W) {
      throw new Error(
        `warpError: occlusion size ${sizeOf(occlusion)} differs from expected ${pairs}x${H}x${W} (one mask per frame pair)`,
      );
    }
    if (occlusion.data.length !== pairs * hw)
      throw new Error(`warpError: occlusion needs ${pairs * hw} values, has ${occlusion.data.length}`);
  }
  const d = frames.data;
  const out: number[] = [];
  for (let t = 0; t < pairs; t++) {
    let s = 0;
    let w = 0;
    const fx = t * 2 * hw;
    const fy = fx + hw;
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const p = y * W + x;
        const sx = x + flow[fx + p];
        const sy = y + flow[fy + p];
        // The negated comparison also rejects NaN flow.
        if (!(sx >= 0 && sx <= W - 1 && sy >= 0 && sy <= H - 1)) continue;
        const vis = occlusion ? 1 - occlusion.data[t * hw + p] : 1;
        if (vis <= 0) continue;
        let d2 = 0;
        for (let c = 0; c < 3; c++) {
          // (v + 1) / 2 maps [-1, 1] to [0, 1]; the difference therefore halves.
          const warped = bilinear(d, ((t + 1) * 3 + c) * hw, W, sx, sy);
          const diff = (warped - d[(t * 3 + c) * hw + p]) / 2;
          d2 += diff * diff;
        }
        s += vis * d2;
        w += vis;
      }
    }
    out.push(w > 0 ? s / (3 * w) : 0);
  }
  return out;
}

/**
 * Occlusion for a warp error restricted to a region of frame t (e.g. the true object): 1 where the pair's own
 * occlusion says so or where the region mask of frame t is 0. region is [n, H, W]; the result has one plane per pair.
 */
export function regionOcclusion(occlusion: MaskBatch, region: MaskBatch): MaskBatch {
  const hw = occlusion.height * occlusion.width;
  if (region.height !== occlusion.height || region.width !== occlusion.width || region.n < occlusion.n) {
    throw new Error(`regionOcclusion: region ${sizeOf(region)} does not cover occlusion ${sizeOf(occlusion)}`);
  }
  const data = new Float32Array(occlusion.n * hw);
  for (let i = 0; i < data.length; i++) data[i] = Math.max(occlusion.data[i], 1 - region.data[i]);
  return { n: occlusion.n, height: occlusion.height, width: occlusion.width, data };
}

/**
 * SSIM (Wang et al. 2004) per pixel on one channel plane pair, with a (2r+1)² uniform window (scikit-image's default
 * is 7×7, r = 3), C1 = (0.01·L)², C2 = (0.03·L)², L = 2 for [-1, 1] images, sample covariance (N − 1). Windows are
 * clipped at the border rather than padded.
 */
function ssimPlane(
  a: Float32Array,
  ao: number,
  b: Float32Array,
  bo: number,
  H: number,
  W: number,
  r: number,
  out: Float64Array,
): void {
  const C1 = (0.01 * 2) ** 2;
  const C2 = (0.03 * 2) ** 2;
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      let n = 0;
      let sa = 0;
      let sb = 0;
      let saa = 0;
      let sbb = 0;
      let sab = 0;
      for (let yy = Math.max(0, y - r); yy <= Math.min(H - 1, y + r); yy++) {
        for (let xx = Math.max(0, x - r); xx <= Math.min(W - 1, x + r); xx++) {
          const va = a[ao + yy * W + xx];
          const vb = b[bo + yy * W + xx];
          n++;
          sa += va;
          sb += vb;
          saa += va * va;
          sbb += vb * vb;
          sab += va * vb;
        }
      }
      const ma = sa / n;
      const mb = sb / n;
      const k = n > 1 ? n / (n - 1) : 1;
      const va = (saa / n - ma * ma) * k;
      const vb = (sbb / n - mb * mb) * k;
      const cov = (sab / n - ma * mb) * k;
      out[y * W + x] = ((2 * ma * mb + C1) * (2 * cov + C2)) / ((ma * ma + mb * mb + C1) * (va + vb + C2));
    }
  }
}

/**
 * Mean SSIM over the pixels a mask selects ('outside' = 1 − mask, the unedited region), each pixel's SSIM averaged
 * over the three channels and weighted like maskedPsnr. Windows straddling the mask edge still see both sides, which
 * is why masked PSNR is the cleaner number (docs/QUALITY.md). NaN when the region is empty.
 */
export function maskedSsim(a: ImageBatch, b: ImageBatch, mask: MaskBatch, region: Region, radius = 3): number {
  sameImageSize(a, b, 'maskedSsim');
  maskMatches(a, mask, 'maskedSsim');
  const { n, height: H, width: W } = a;
  const hw = H * W;
  const plane = new Float64Array(hw);
  const acc = new Float64Array(hw);
  let s = 0;
  let w = 0;
  for (let f = 0; f < n; f++) {
    acc.fill(0);
    for (let c = 0; c < 3; c++) {
      ssimPlane(a.data, (f * 3 + c) * hw, b.data, (f * 3 + c) * hw, H, W, radius, plane);
      for (let p = 0; p < hw; p++) acc[p] += plane[p] / 3;
    }
    for (let p = 0; p < hw; p++) {
      const wt = weightOf(mask.data[f * hw + p], region);
      s += wt * acc[p];
      w += wt;
    }
  }
  return w > 0 ? s / w : NaN;
}
