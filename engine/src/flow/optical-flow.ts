// Dense pyramidal Lucas–Kanade optical flow, for the warp error of real clips (synthetic clips carry their exact
// flow). Not RAFT: it is a small, dependency-free estimator whose error is measured against the synthetic suite's
// exact flow in the tests, so the warp error it feeds is known to be usable. Warp error takes the flow of the
// SOURCE clip (Lai et al.), so an edit cannot lower its own error by distorting the motion.
//
// Per level, coarse to fine, for every pixel: sample frame b over the pixel's window shifted by its current flow and
// solve the 2×2 normal equations of the brightness-constancy linearisation over that window (a few iterations),
//   [Σ Ix²  Σ IxIy; Σ IxIy  Σ Iy²] · Δ = −[Σ Ix·It; Σ Iy·It],
// skipping pixels whose window has too little texture (small eigenvalue) rather than inventing motion there.
// Occlusion: the forward–backward check of Sundaram et al. (2010).

import type { ImageBatch, MaskBatch } from '../diffusion/images';

export interface FlowOptions {
  /** Window radius of the normal equations; default 2 (5×5). */
  window?: number;
  /** Most refinement iterations per pixel and pyramid level; default 4 (it stops earlier below 0.01 px). */
  iterations?: number;
  /** Coarsest level's shorter side is at least this; default 12. */
  minSize?: number;
  /** Smallest eigenvalue of the window's structure tensor (per pixel, intensities in [0, 1]) to trust; default 1e-4. */
  minEigen?: number;
}

/** Luma in [0, 1] of frame f, [H, W]. */
export function luma(frames: ImageBatch, f: number): Float32Array {
  const hw = frames.height * frames.width;
  const out = new Float32Array(hw);
  const o = f * 3 * hw;
  for (let p = 0; p < hw; p++)
    out[p] =
      (0.299 * frames.data[o + p] + 0.587 * frames.data[o + hw + p] + 0.114 * frames.data[o + 2 * hw + p] + 1) / 2;
  return out;
}

function sample(img: Float32Array, H: number, W: number, x: number, y: number): number {
  const cx = Math.min(W - 1, Math.max(0, x));
  const cy = Math.min(H - 1, Math.max(0, y));
  const x0 = Math.floor(cx);
  const y0 = Math.floor(cy);
  const x1 = Math.min(W - 1, x0 + 1);
  const y1 = Math.min(H - 1, y0 + 1);
  const fx = cx - x0;
  const fy = cy - y0;
  return (
    (1 - fy) * ((1 - fx) * img[y0 * W + x0] + fx * img[y0 * W + x1]) +
    fy * ((1 - fx) * img[y1 * W + x0] + fx * img[y1 * W + x1])
  );
}

/** Binomial blur [1 4 6 4 1]/16 then every second pixel. */
function downsample(img: Float32Array, H: number, W: number): { img: Float32Array; H: number; W: number } {
  const k = [1, 4, 6, 4, 1];
  const tmp = new Float32Array(H * W);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      let s = 0;
      for (let i = -2; i <= 2; i++) s += k[i + 2] * img[y * W + Math.min(W - 1, Math.max(0, x + i))];
      tmp[y * W + x] = s / 16;
    }
  }
  const h = Math.ceil(H / 2);
  const w = Math.ceil(W / 2);
  const out = new Float32Array(h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let i = -2; i <= 2; i++) s += k[i + 2] * tmp[Math.min(H - 1, Math.max(0, 2 * y + i)) * W + 2 * x];
      out[y * w + x] = s / 16;
    }
  }
  return { img: out, H: h, W: w };
}

function boxSum(src: Float32Array, H: number, W: number, r: number): Float32Array {
  const tmp = new Float32Array(H * W);
  const out = new Float32Array(H * W);
  for (let y = 0; y < H; y++) {
    let s = 0;
    for (let k = -r; k <= r; k++) s += src[y * W + Math.min(W - 1, Math.max(0, k))];
    for (let x = 0; x < W; x++) {
      tmp[y * W + x] = s;
      s += src[y * W + Math.min(W - 1, x + r + 1)] - src[y * W + Math.max(0, x - r)];
    }
  }
  for (let x = 0; x < W; x++) {
    let s = 0;
    for (let k = -r; k <= r; k++) s += tmp[Math.min(H - 1, Math.max(0, k)) * W + x];
    for (let y = 0; y < H; y++) {
      out[y * W + x] = s;
      s += tmp[Math.min(H - 1, y + r + 1) * W + x] - tmp[Math.max(0, y - r) * W + x];
    }
  }
  return out;
}

/** 3×3 median of each flow component: removes the isolated wrong vectors a local solver leaves. */
function median3(flow: Float32Array, H: number, W: number): Float32Array {
  const hw = H * W;
  const out = new Float32Array(flow.length);
  const win: number[] = [];
  for (let c = 0; c < 2; c++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        win.length = 0;
        for (let dy = -1; dy <= 1; dy++)
          for (let dx = -1; dx <= 1; dx++)
            win.push(flow[c * hw + Math.min(H - 1, Math.max(0, y + dy)) * W + Math.min(W - 1, Math.max(0, x + dx))]);
        win.sort((a, b) => a - b);
        out[c * hw + y * W + x] = win[4];
      }
    }
  }
  return out;
}

/** Forward flow a → b, [2, H, W] as (dx, dy): the content at p in a is at p + flow(p) in b. */
export function lucasKanade(a: Float32Array, b: Float32Array, H: number, W: number, o: FlowOptions = {}): Float32Array {
  const r = o.window ?? 2;
  const iterations = o.iterations ?? 4;
  const minSize = o.minSize ?? 12;
  const minEigen = (o.minEigen ?? 1e-4) * (2 * r + 1) ** 2;
  const pyrA = [{ img: a, H, W }];
  const pyrB = [{ img: b, H, W }];
  while (Math.min(pyrA[pyrA.length - 1].H, pyrA[pyrA.length - 1].W) / 2 >= minSize) {
    const la = pyrA[pyrA.length - 1];
    const lb = pyrB[pyrB.length - 1];
    pyrA.push(downsample(la.img, la.H, la.W));
    pyrB.push(downsample(lb.img, lb.H, lb.W));
  }
  let flow: Float32Array = new Float32Array(2 * pyrA[pyrA.length - 1].H * pyrA[pyrA.length - 1].W);
  for (let level = pyrA.length - 1; level >= 0; level--) {
    const { img: A, H: h, W: w } = pyrA[level];
    const B = pyrB[level].img;
    const hw = h * w;
    if (level < pyrA.length - 1) {
      // Upsample the coarser flow: positions and displacements both double.
      const prev = pyrA[level + 1];
      const up = new Float32Array(2 * hw);
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const sx = (x + 0.5) / 2 - 0.5;
          const sy = (y + 0.5) / 2 - 0.5;
          up[y * w + x] = 2 * sample(flow.subarray(0, prev.H * prev.W), prev.H, prev.W, sx, sy);
          up[hw + y * w + x] = 2 * sample(flow.subarray(prev.H * prev.W), prev.H, prev.W, sx, sy);
        }
      }
      flow = up;
    }
    // Gradients of a (central differences) and their window sums: fixed for the level.
    const ix = new Float32Array(hw);
    const iy = new Float32Array(hw);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        ix[y * w + x] = (A[y * w + Math.min(w - 1, x + 1)] - A[y * w + Math.max(0, x - 1)]) / 2;
        iy[y * w + x] = (A[Math.min(h - 1, y + 1) * w + x] - A[Math.max(0, y - 1) * w + x]) / 2;
      }
    }
    const sxx = boxSum(
      ix.map((v) => v * v),
      h,
      w,
      r,
    );
    const syy = boxSum(
      iy.map((v) => v * v),
      h,
      w,
      r,
    );
    const sxy = boxSum(
      ix.map((v, i) => v * iy[i]),
      h,
      w,
      r,
    );
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const p = y * w + x;
        const a11 = sxx[p];
        const a22 = syy[p];
        const a12 = sxy[p];
        const tr = a11 + a22;
        const det = a11 * a22 - a12 * a12;
        if (tr / 2 - Math.sqrt(Math.max(0, (tr * tr) / 4 - det)) < minEigen) continue;
        // The whole window moves with this pixel's displacement (classic Lucas–Kanade): warping each neighbour by
        // its own flow instead lets one wrong neighbour pull every window it belongs to, and the iteration drifts.
        let u = flow[p];
        let v = flow[hw + p];
        for (let iter = 0; iter < iterations; iter++) {
          let bx = 0;
          let by = 0;
          for (let yy = Math.max(0, y - r); yy <= Math.min(h - 1, y + r); yy++) {
            for (let xx = Math.max(0, x - r); xx <= Math.min(w - 1, x + r); xx++) {
              const q = yy * w + xx;
              const it = sample(B, h, w, xx + u, yy + v) - A[q];
              bx += ix[q] * it;
              by += iy[q] * it;
            }
          }
          const du = (-a22 * bx + a12 * by) / det;
          const dv = (a12 * bx - a11 * by) / det;
          u += du;
          v += dv;
          if (du * du + dv * dv < 1e-4) break;
        }
        flow[p] = u;
        flow[hw + p] = v;
      }
    }
    flow = median3(flow, h, w);
  }
  return flow;
}

/**
 * Forward flow of every pair of a clip and the occlusion of each pair: a pixel is occluded when following the
 * forward flow and then the backward flow does not come back, |f + b(p + f)|² > 0.01·(|f|² + |b|²) + 0.5.
 */
export function estimateFlow(frames: ImageBatch, o: FlowOptions = {}): { flow: Float32Array; occlusion: MaskBatch } {
  const { n, height: H, width: W } = frames;
  const hw = H * W;
  const pairs = Math.max(0, n - 1);
  const flow = new Float32Array(pairs * 2 * hw);
  const occ = new Float32Array(pairs * hw);
  let next = luma(frames, 0);
  for (let t = 0; t < pairs; t++) {
    const a = next;
    const b = luma(frames, t + 1);
    next = b;
    const fw = lucasKanade(a, b, H, W, o);
    const bw = lucasKanade(b, a, H, W, o);
    flow.set(fw, t * 2 * hw);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const p = y * W + x;
        const fx = fw[p];
        const fy = fw[hw + p];
        const bxv = sample(bw.subarray(0, hw), H, W, x + fx, y + fy);
        const byv = sample(bw.subarray(hw), H, W, x + fx, y + fy);
        const dx = fx + bxv;
        const dy = fy + byv;
        if (dx * dx + dy * dy > 0.01 * (fx * fx + fy * fy + bxv * bxv + byv * byv) + 0.5) occ[t * hw + p] = 1;
      }
    }
  }
  return { flow, occlusion: { n: pairs, height: H, width: W, data: occ } };
}
