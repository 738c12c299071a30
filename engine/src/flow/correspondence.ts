// Correspondences between neighbouring frames: for every pixel of frame t, its best match within a search radius in
// frames t − 1 and t + 1, and the match's similarity. Latent correction (editing/stages/latent-correction.ts) and
// the automatic mask's temporal smoothing (smoothAlongFields below) follow these fields; eval measures with the
// optical flow beside this file.
//
// Features are whatever the caller gives: the UNet's decoder features where the graph can be tapped (GenVideo
// matches by them), else the source clip's own latents (trajectory level 0). They are compared as zero-mean,
// unit-norm 5×5 patches (cosine similarity of centred patches, i.e. normalised cross-correlation). Centring matters:
// a latent's mean says "object" or "background" and is the same over a whole region, so raw cosine similarity would
// call every object pixel a perfect match for every other one; the texture around a pixel is what identifies it. The
// fields are computed once per chunk, since the source does not change.

export interface CorrespondenceOptions {
  /** Search window radius in latent pixels (the window is (2r+1)²). */
  radius: number;
  /** Patch radius of the features; default 2 (5×5 patches: 3×3 ones matched a third as often under sensor noise). */
  patch?: number;
  /** Below this cosine similarity a match is not trusted (occlusion, textureless area) and not used. */
  minSimilarity?: number;
  /** Called between frame pairs: the search is the longest stretch of JavaScript in an edit, and cancel must not wait for all of it. */
  checkStop?: () => void;
}

/** For each pixel of frame t, the best match in frame t + d (d = ±1): flat pixel index, or −1 when none. */
export interface NeighbourFields {
  n: number;
  h: number;
  w: number;
  /** prev[t·hw + p]: match of (t, p) in frame t − 1. */
  prev: Int32Array;
  /** next[t·hw + p]: match of (t, p) in frame t + 1. */
  next: Int32Array;
  /** Cosine similarities of those matches (−1 when none). */
  prevSim: Float32Array;
  nextSim: Float32Array;
}

const EPS = 1e-8;

/**
 * Zero-mean unit-norm patch descriptors of one frame, [hw, D] with D = C·(2·patch+1)². Each channel is centred on
 * its own patch mean: channels differ in scale (the oracle's object channel is ±4, colours ±0.8), and a shared mean
 * would let the largest channel's level dominate. Patches are clamped at the frame border.
 */
export function patchDescriptors(latent: Float32Array, C: number, h: number, w: number, patch = 1): Float32Array {
  const side = 2 * patch + 1;
  const taps = side * side;
  const D = C * taps;
  const hw = h * w;
  const out = new Float32Array(hw * D);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = y * w + x;
      const o = p * D;
      let norm = 0;
      for (let c = 0; c < C; c++) {
        const plane = c * hw;
        let mean = 0;
        let i = 0;
        for (let dy = -patch; dy <= patch; dy++) {
          const yy = Math.min(h - 1, Math.max(0, y + dy));
          for (let dx = -patch; dx <= patch; dx++) {
            const xx = Math.min(w - 1, Math.max(0, x + dx));
            const v = latent[plane + yy * w + xx];
            out[o + c * taps + i++] = v;
            mean += v;
          }
        }
        mean /= taps;
        for (let k = 0; k < taps; k++) {
          const v = out[o + c * taps + k] - mean;
          out[o + c * taps + k] = v;
          norm += v * v;
        }
      }
      const inv = 1 / Math.sqrt(norm + EPS);
      for (let k = 0; k < D; k++) out[o + k] *= inv;
    }
  }
  return out;
}

/**
 * Nearest-neighbour field from frame a to frame b: for each pixel of a where `need` is set (all when omitted), the
 * pixel of b within the search window whose descriptor has the largest cosine similarity. Ties go to the smaller
 * displacement, so a textureless region maps onto itself rather than drifting to the window's corner.
 */
export function nearestNeighbourField(
  descA: Float32Array,
  descB: Float32Array,
  D: number,
  h: number,
  w: number,
  radius: number,
  need?: (p: number) => boolean,
): { index: Int32Array; sim: Float32Array } {
  const hw = h * w;
  const index = new Int32Array(hw).fill(-1);
  const sim = new Float32Array(hw).fill(-1);
  // Candidates ordered by distance, so the first best found is also the nearest among equals.
  const offsets: [number, number][] = [];
  for (let dy = -radius; dy <= radius; dy++) for (let dx = -radius; dx <= radius; dx++) offsets.push([dx, dy]);
  offsets.sort((a, b) => a[0] * a[0] + a[1] * a[1] - (b[0] * b[0] + b[1] * b[1]));
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = y * w + x;
      if (need && !need(p)) continue;
      const oa = p * D;
      let best = -Infinity;
      let bestQ = -1;
      for (const [dx, dy] of offsets) {
        const xx = x + dx;
        const yy = y + dy;
        if (xx < 0 || xx >= w || yy < 0 || yy >= h) continue;
        const ob = (yy * w + xx) * D;
        let s = 0;
        for (let k = 0; k < D; k++) s += descA[oa + k] * descB[ob + k];
        if (s > best + 1e-7) {
          best = s;
          bestQ = yy * w + xx;
        }
      }
      index[p] = bestQ;
      sim[p] = bestQ >= 0 ? best : -1;
    }
  }
  return { index, sim };
}

/**
 * Reusable working arrays for one chunk's field computation. The search runs per frame pair over windows of varying
 * size; allocating its dozen arrays each time made megabytes of short-lived garbage per frame, which showed up as a
 * slowly rising peak RSS over long jobs.
 */
export class Scratch {
  private readonly f = new Map<string, Float32Array>();
  private readonly i = new Map<string, Int32Array>();
  f32(key: string, n: number): Float32Array {
    let b = this.f.get(key);
    if (!b || b.length < n) this.f.set(key, (b = new Float32Array(n)));
    return b.subarray(0, n);
  }
  i32(key: string, n: number): Int32Array {
    let b = this.i.get(key);
    if (!b || b.length < n) this.i.set(key, (b = new Int32Array(n)));
    return b.subarray(0, n);
  }
}

/** Sums over a (2r+1)² window with edge replication, separable with running sums: O(hw) whatever r is. */
function boxSum(src: Float32Array, h: number, w: number, r: number, tmp: Float32Array, out: Float32Array): void {
  for (let y = 0; y < h; y++) {
    const row = y * w;
    let s = 0;
    for (let k = -r; k <= r; k++) s += src[row + Math.min(w - 1, Math.max(0, k))];
    for (let x = 0; x < w; x++) {
      tmp[row + x] = s;
      s += src[row + Math.min(w - 1, x + r + 1)] - src[row + Math.max(0, x - r)];
    }
  }
  for (let x = 0; x < w; x++) {
    let s = 0;
    for (let k = -r; k <= r; k++) s += tmp[Math.min(h - 1, Math.max(0, k)) * w + x];
    for (let y = 0; y < h; y++) {
      out[y * w + x] = s;
      s += tmp[Math.min(h - 1, y + r + 1) * w + x] - tmp[Math.max(0, y - r) * w + x];
    }
  }
}

/** Window sums of an (h + 2r)×(w + 2r) grid over its (2r+1)² windows that fit, giving h×w values. */
function boxValid(src: Float32Array, He: number, We: number, r: number, tmp: Float32Array, out: Float32Array): void {
  const h = He - 2 * r;
  const w = We - 2 * r;
  const side = 2 * r + 1;
  // Columns first (h rows of We sums), then rows.
  for (let X = 0; X < We; X++) {
    let s = 0;
    for (let k = 0; k < side; k++) s += src[k * We + X];
    for (let y = 0; y < h; y++) {
      tmp[y * We + X] = s;
      if (y + side < He) s += src[(y + side) * We + X] - src[y * We + X];
    }
  }
  for (let y = 0; y < h; y++) {
    const row = y * We;
    let s = 0;
    for (let k = 0; k < side; k++) s += tmp[row + k];
    for (let x = 0; x < w; x++) {
      out[y * w + x] = s;
      if (x + side < We) s += tmp[row + x + side] - tmp[row + x];
    }
  }
}

/** Per channel patch means, and the norm of each pixel's centred patch vector over all channels. */
function patchMoments(
  z: Float32Array,
  C: number,
  h: number,
  w: number,
  patch: number,
  sc: Scratch,
  tag: string,
): { mean: Float32Array; norm: Float32Array } {
  const hw = h * w;
  const taps = (2 * patch + 1) ** 2;
  const mean = sc.f32(`mean${tag}`, C * hw);
  const norm = sc.f32(`norm${tag}`, hw).fill(0);
  const sq = sc.f32('sq', hw);
  const tmp = sc.f32('tmp', hw);
  const box = sc.f32('box', hw);
  for (let c = 0; c < C; c++) {
    const plane = z.subarray(c * hw, (c + 1) * hw);
    boxSum(plane, h, w, patch, tmp, box);
    for (let p = 0; p < hw; p++) mean[c * hw + p] = box[p] / taps;
    for (let p = 0; p < hw; p++) sq[p] = plane[p] * plane[p];
    boxSum(sq, h, w, patch, tmp, box);
    for (let p = 0; p < hw; p++) {
      const m = mean[c * hw + p];
      norm[p] += Math.max(0, box[p] - taps * m * m);
    }
  }
  for (let p = 0; p < hw; p++) norm[p] = Math.sqrt(norm[p] + EPS);
  return { mean, norm };
}

type Field = { index: Int32Array<ArrayBufferLike>; sim: Float32Array<ArrayBufferLike> };

/**
 * The fields a → b and b → a in one pass: for each offset d, the patch sums of A·B(· + d) come from one box filter
 * (so the cost does not grow with the patch area, and all channels share the pass), and the similarity of (p in a,
 * p + d in b) is also that of (p + d in b, p in a) at offset −d. About 8× faster than per-pixel dot products at
 * 5×5 patches, which on the oracle (latents at pixel resolution) cost more than its UNet.
 */
export function pairFields(
  a: Float32Array,
  b: Float32Array,
  C: number,
  h: number,
  w: number,
  radius: number,
  patch: number,
  needA?: (p: number) => boolean,
  needB?: (p: number) => boolean,
  sc: Scratch = new Scratch(),
): { fwd: Field; bwd: Field } {
  const hw = h * w;
  const taps = (2 * patch + 1) ** 2;
  const ma = patchMoments(a, C, h, w, patch, sc, 'A');
  const mb = patchMoments(b, C, h, w, patch, sc, 'B');
  const fwd = { index: sc.i32('fwdIndex', hw).fill(-1), sim: sc.f32('fwdSim', hw).fill(-1) };
  const bwd = { index: sc.i32('bwdIndex', hw).fill(-1), sim: sc.f32('bwdSim', hw).fill(-1) };
  const bestA = sc.f32('bestA', hw).fill(-Infinity);
  const bestB = sc.f32('bestB', hw).fill(-Infinity);
  // Products live on the frame grown by the patch radius, each factor clamped on its own, so a border patch
  // replicates its edge exactly as patchDescriptors does.
  const He = h + 2 * patch;
  const We = w + 2 * patch;
  const prod = sc.f32('prod', He * We);
  const tmp = sc.f32('tmpv', h * We);
  const box = sc.f32('boxv', hw);
  // Candidates nearest first, so that among equal similarities the smallest displacement wins and a textureless
  // region maps onto itself rather than drifting to the window's corner.
  const offsets: [number, number][] = [];
  for (let dy = -radius; dy <= radius; dy++) for (let dx = -radius; dx <= radius; dx++) offsets.push([dx, dy]);
  offsets.sort((u, v) => u[0] * u[0] + u[1] * u[1] - (v[0] * v[0] + v[1] * v[1]));
  const wantA = sc.i32('wantA', hw);
  const wantB = sc.i32('wantB', hw);
  for (let p = 0; p < hw; p++) {
    wantA[p] = !needA || needA(p) ? 1 : 0;
    wantB[p] = needB && needB(p) ? 1 : 0;
  }
  const clamp = (v: number, n: number) => (v < 0 ? 0 : v >= n ? n - 1 : v);
  const colA = sc.i32('colA', We);
  const rowA = sc.i32('rowA', He);
  for (let X = 0; X < We; X++) colA[X] = clamp(X - patch, w);
  for (let Y = 0; Y < He; Y++) rowA[Y] = clamp(Y - patch, h) * w;
  const colB = sc.i32('colB', We);
  const rowB = sc.i32('rowB', He);
  for (const [dx, dy] of offsets) {
    for (let X = 0; X < We; X++) colB[X] = clamp(X - patch + dx, w);
    for (let Y = 0; Y < He; Y++) rowB[Y] = clamp(Y - patch + dy, h) * w;
    prod.fill(0);
    for (let c = 0; c < C; c++) {
      const pa = c * hw;
      for (let Y = 0; Y < He; Y++) {
        const ra = pa + rowA[Y];
        const rb = pa + rowB[Y];
        const o = Y * We;
        for (let X = 0; X < We; X++) prod[o + X] += a[ra + colA[X]] * b[rb + colB[X]];
      }
    }
    boxValid(prod, He, We, patch, tmp, box);
    for (let y = Math.max(0, -dy); y < Math.min(h, h - dy); y++) {
      for (let x = Math.max(0, -dx); x < Math.min(w, w - dx); x++) {
        const p = y * w + x;
        const q = p + dy * w + dx;
        if (!wantA[p] && !wantB[q]) continue;
        let m = 0;
        for (let c = 0; c < C; c++) m += ma.mean[c * hw + p] * mb.mean[c * hw + q];
        const s = (box[p] - taps * m) / (ma.norm[p] * mb.norm[q]);
        if (wantA[p] && s > bestA[p] + 1e-7) {
          bestA[p] = s;
          fwd.index[p] = q;
        }
        if (wantB[q] && s > bestB[q] + 1e-7) {
          bestB[q] = s;
          bwd.index[q] = p;
        }
      }
    }
  }
  for (let p = 0; p < hw; p++) {
    if (fwd.index[p] >= 0) fwd.sim[p] = bestA[p];
    if (bwd.index[p] >= 0) bwd.sim[p] = bestB[p];
  }
  return { fwd, bwd };
}

/** The field a → b alone: exactly nearestNeighbourField over patchDescriptors, borders included. */
export function fastNeighbourField(
  a: Float32Array,
  b: Float32Array,
  C: number,
  h: number,
  w: number,
  radius: number,
  patch: number,
  need?: (p: number) => boolean,
  sc?: Scratch,
): Field {
  return pairFields(a, b, C, h, w, radius, patch, need, () => false, sc).fwd;
}

/** [C, h, w] → the [C, y1−y0, x1−x0] window. */
function crop(
  z: Float32Array,
  C: number,
  h: number,
  w: number,
  x0: number,
  y0: number,
  x1: number,
  y1: number,
  out: Float32Array,
): Float32Array {
  const cw = x1 - x0;
  const ch = y1 - y0;
  for (let c = 0; c < C; c++)
    for (let y = 0; y < ch; y++)
      out.set(z.subarray(c * h * w + (y0 + y) * w + x0, c * h * w + (y0 + y) * w + x1), (c * ch + y) * cw);
  return out;
}

/**
 * Both fields between frames a and b for the pixels the needs select, computed only over their bounding box grown by
 * the search radius and the patch: every value a selected pixel's match depends on lies in that window, and where
 * the window meets the frame edge the edge is the same one, so the result equals the whole-frame computation.
 * A compact object costs its own area rather than the frame's.
 */
function pairWithin(
  a: Float32Array,
  b: Float32Array,
  C: number,
  h: number,
  w: number,
  radius: number,
  patch: number,
  sc: Scratch,
  needA?: (p: number) => boolean,
  needB?: (p: number) => boolean,
): { fwd: Field; bwd: Field } {
  if (!needA || !needB) return pairFields(a, b, C, h, w, radius, patch, needA, needB ?? (() => true), sc);
  let x0 = w;
  let y0 = h;
  let x1 = -1;
  let y1 = -1;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (!needA(y * w + x) && !needB(y * w + x)) continue;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
    }
  }
  const hw = h * w;
  const full: { fwd: Field; bwd: Field } = {
    fwd: { index: sc.i32('fullFwdIndex', hw).fill(-1), sim: sc.f32('fullFwdSim', hw).fill(-1) },
    bwd: { index: sc.i32('fullBwdIndex', hw).fill(-1), sim: sc.f32('fullBwdSim', hw).fill(-1) },
  };
  if (x1 < 0) return full;
  const m = radius + patch;
  const cx0 = Math.max(0, x0 - m);
  const cy0 = Math.max(0, y0 - m);
  const cx1 = Math.min(w, x1 + 1 + m);
  const cy1 = Math.min(h, y1 + 1 + m);
  const cw = cx1 - cx0;
  const ch = cy1 - cy0;
  const size = C * ch * cw;
  const toFull = (p: number) => (cy0 + Math.floor(p / cw)) * w + cx0 + (p % cw);
  const r = pairFields(
    crop(a, C, h, w, cx0, cy0, cx1, cy1, sc.f32('cropA', size)),
    crop(b, C, h, w, cx0, cy0, cx1, cy1, sc.f32('cropB', size)),
    C,
    ch,
    cw,
    radius,
    patch,
    (p) => needA(toFull(p)),
    (p) => needB(toFull(p)),
    sc,
  );
  for (const [from, to] of [
    [r.fwd, full.fwd],
    [r.bwd, full.bwd],
  ] as const) {
    for (let p = 0; p < ch * cw; p++) {
      if (from.index[p] < 0) continue;
      to.index[toFull(p)] = toFull(from.index[p]);
      to.sim[toFull(p)] = from.sim[p];
    }
  }
  return full;
}

/**
 * Fields to both neighbours for every frame of a chunk, from the frames' latents [n, C, h, w]. `need(t, p)` limits
 * the search to the pixels a stage will use (those that can end up in the mask); others get no match.
 */
export function neighbourFields(
  latents: Float32Array,
  n: number,
  C: number,
  h: number,
  w: number,
  o: CorrespondenceOptions,
  need?: (t: number, p: number) => boolean,
): NeighbourFields {
  const hw = h * w;
  const per = C * hw;
  const patch = o.patch ?? 2;
  const frame = (t: number) => latents.subarray(t * per, (t + 1) * per);
  const f: NeighbourFields = {
    n,
    h,
    w,
    prev: new Int32Array(n * hw).fill(-1),
    next: new Int32Array(n * hw).fill(-1),
    prevSim: new Float32Array(n * hw).fill(-1),
    nextSim: new Float32Array(n * hw).fill(-1),
  };
  const sc = new Scratch();
  for (let t = 0; t + 1 < n; t++) {
    o.checkStop?.();
    const r = pairWithin(
      frame(t),
      frame(t + 1),
      C,
      h,
      w,
      o.radius,
      patch,
      sc,
      need && ((p) => need(t, p)),
      need && ((p) => need(t + 1, p)),
    );
    f.next.set(r.fwd.index, t * hw);
    f.nextSim.set(r.fwd.sim, t * hw);
    f.prev.set(r.bwd.index, (t + 1) * hw);
    f.prevSim.set(r.bwd.sim, (t + 1) * hw);
  }
  return f;
}

/**
 * Motion-compensated temporal smoothing of a per-frame map [n, hw] (the automatic mask's score): each value is
 * mixed with its matches in the neighbouring frames, a·s_{t−1}(q₋) + (1 − 2a)·s_t(p) + a·s_{t+1}(q₊), an untrusted
 * or missing neighbour's share staying with the frame itself. Following the matches rather than the pixel grid
 * keeps a moving object's map from smearing along its path.
 */
export function smoothAlongFields(
  map: Float32Array,
  n: number,
  hw: number,
  fields: NeighbourFields,
  a: number,
  minSimilarity: number,
): Float32Array {
  const out = new Float32Array(map.length);
  for (let t = 0; t < n; t++) {
    for (let p = 0; p < hw; p++) {
      const i = t * hw + p;
      const self = map[i];
      let v = self;
      if (t > 0 && fields.prevSim[i] >= minSimilarity && fields.prev[i] >= 0)
        v += a * (map[(t - 1) * hw + fields.prev[i]] - self);
      if (t < n - 1 && fields.nextSim[i] >= minSimilarity && fields.next[i] >= 0)
        v += a * (map[(t + 1) * hw + fields.next[i]] - self);
      out[i] = v;
    }
  }
  return out;
}
