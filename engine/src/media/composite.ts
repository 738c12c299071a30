// Full-resolution compositing: the model edits at its working size, but the result is built from the source's own
// pixels at the display size. For each output frame
//
//     out = source + matte · upscale(edit − reconstruction)
//
// where `reconstruction` is the VAE decode of the source's own latents (what the model would give back for an edit
// that changes nothing), `upscale` is bilinear from the working size to the display size with pixel centres
// aligned, and `matte` (optional, 1 = edit here) is bilinearly upscaled from whatever size it was given at. Where the
// delta is 0 or the matte is 0, the source bytes come back exactly.
//
// Pure math on raw packed frames (rgb24, or rgb48 as 16-bit samples in host order), composited in place, so only one
// full-size frame per call is ever held, in the same bytes ffmpeg decoded into. Separable: each source row is
// interpolated horizontally once into a cached row, and each output pixel then costs one vertical lerp per plane.

/** n planar RGB frames [n, 3, h, w] in [-1, 1] units (an ImageBatch's layout): edit − reconstruction. */
export interface DeltaFrames {
  n: number;
  height: number;
  width: number;
  data: Float32Array;
}

/** One matte [h, w] in [0, 1] (1 = edit), at any size; upscaled to the frame's size. */
export interface MattePlane {
  height: number;
  width: number;
  data: Float32Array;
}

/** Source index pair and weight for each destination coordinate (bilinear, pixel-centre aligned, edge-clamped). */
export interface Taps {
  i0: Int32Array;
  i1: Int32Array;
  f: Float32Array;
}

const tapCache = new Map<string, Taps>();

/** Bilinear taps from `src` samples to `dst` samples: x_src = (x + ½)·src/dst − ½, clamped to the edge samples. */
export function bilinearTaps(src: number, dst: number): Taps {
  const key = `${src}>${dst}`;
  const hit = tapCache.get(key);
  if (hit) return hit;
  const i0 = new Int32Array(dst);
  const i1 = new Int32Array(dst);
  const f = new Float32Array(dst);
  const s = src / dst;
  for (let x = 0; x < dst; x++) {
    const p = Math.min(src - 1, Math.max(0, (x + 0.5) * s - 0.5));
    const a = Math.floor(p);
    i0[x] = a;
    i1[x] = Math.min(src - 1, a + 1);
    f[x] = p - a;
  }
  const taps = { i0, i1, f };
  if (tapCache.size > 64) tapCache.clear();
  tapCache.set(key, taps);
  return taps;
}

/** Horizontal pass: row r of a plane (`w` wide, starting at `base`) interpolated to the taps' width. */
function hRow(plane: Float32Array, base: number, t: Taps, out: Float32Array): void {
  const { i0, i1, f } = t;
  for (let x = 0; x < out.length; x++) {
    const a = plane[base + i0[x]];
    out[x] = a + (plane[base + i1[x]] - a) * f[x];
  }
}

/** Per output frame: the bilinear (working → display) upscale of a planar source, row by row, with cached rows. */
class RowUpscaler {
  private readonly xt: Taps;
  readonly yt: Taps;
  private rows: { r: number; data: Float32Array }[];
  constructor(
    private readonly plane: Float32Array,
    private readonly offset: number,
    private readonly w: number,
    h: number,
    W: number,
    H: number,
  ) {
    this.xt = bilinearTaps(w, W);
    this.yt = bilinearTaps(h, H);
    this.rows = [
      { r: -1, data: new Float32Array(W) },
      { r: -1, data: new Float32Array(W) },
    ];
  }
  /** The horizontally interpolated source row r (two are cached: consecutive output rows share them). */
  row(r: number): Float32Array {
    const [a, b] = this.rows;
    if (a.r === r) return a.data;
    if (b.r === r) return b.data;
    // Replace the older one: output rows walk downwards, so the lower index is the one no longer needed.
    const victim = a.r < b.r ? a : b;
    victim.r = r;
    hRow(this.plane, this.offset + r * this.w, this.xt, victim.data);
    return victim.data;
  }
}

export interface CompositeOptions {
  /** Display size of the raw frames. */
  width: number;
  height: number;
  /** 8: rgb24 bytes; 16: rgb48 as Uint16 samples in host byte order. */
  bitDepth: 8 | 16;
  /** Only output rows [from, to) (default all): lets a caller yield between bands of a large frame. */
  rows?: { from: number; to: number };
}

/**
 * Composites one frame in place: `frame` (packed RGB, width×height) += matte · upscale(delta frame `f`). Returns the
 * number of output rows that were touched (rows where the matte is 0 everywhere are skipped and stay the source).
 */
export function compositeFrame(
  frame: Uint8Array | Uint16Array,
  delta: DeltaFrames,
  f: number,
  matte: MattePlane | undefined,
  o: CompositeOptions,
): number {
  const { width: W, height: H } = o;
  const max = o.bitDepth === 16 ? 65535 : 255;
  if (frame.length !== W * H * 3)
    throw new RangeError(`composite: frame has ${frame.length} samples, ${W}x${H} RGB needs ${W * H * 3}`);
  if ((o.bitDepth === 16) !== frame instanceof Uint16Array)
    throw new RangeError(
      `composite: a ${o.bitDepth}-bit frame must be a ${o.bitDepth === 16 ? 'Uint16Array' : 'Uint8Array'}`,
    );
  const { width: w, height: h } = delta;
  const hw = h * w;
  if (!(f >= 0 && f < delta.n) || delta.data.length !== delta.n * 3 * hw)
    throw new RangeError(`composite: delta frame ${f} of ${delta.n} (${w}x${h}) missing`);
  if (matte && matte.data.length !== matte.height * matte.width)
    throw new RangeError(`composite: matte ${matte.width}x${matte.height} has ${matte.data.length} values`);
  // [-1, 1] units → sample units.
  const scale = max / 2;
  const base = f * 3 * hw;
  const planes = [0, 1, 2].map((c) => new RowUpscaler(delta.data, base + c * hw, w, h, W, H));
  const m = matte && new RowUpscaler(matte.data, 0, matte.width, matte.height, W, H);
  // Source rows of the matte that are all zero: an output row between two of them is left as the source.
  let zeroRow: Uint8Array | undefined;
  if (matte) {
    zeroRow = new Uint8Array(matte.height);
    for (let r = 0; r < matte.height; r++) {
      let any = false;
      for (let x = r * matte.width, e = x + matte.width; x < e && !any; x++) any = matte.data[x] !== 0;
      zeroRow[r] = any ? 0 : 1;
    }
  }
  const yt = planes[0].yt;
  // 8-bit: a clamped view rounds and clamps on store. One element type per loop keeps the loops monomorphic.
  const clamped =
    frame instanceof Uint8Array ? new Uint8ClampedArray(frame.buffer, frame.byteOffset, frame.length) : undefined;
  let touched = 0;
  const from = Math.max(0, o.rows?.from ?? 0);
  const to = Math.min(H, o.rows?.to ?? H);
  for (let Y = from; Y < to; Y++) {
    let mt: Float32Array | undefined;
    let mb: Float32Array | undefined;
    let my = 0;
    if (m) {
      const r0 = m.yt.i0[Y];
      const r1 = m.yt.i1[Y];
      my = m.yt.f[Y];
      if (zeroRow![r0] && (zeroRow![r1] || my === 0)) continue;
      mt = m.row(r0);
      mb = m.row(r1);
    }
    touched++;
    const r0 = yt.i0[Y];
    const r1 = yt.i1[Y];
    const fy = yt.f[Y];
    const rt = planes[0].row(r0),
      rb = planes[0].row(r1);
    const gt = planes[1].row(r0),
      gb = planes[1].row(r1);
    const bt = planes[2].row(r0),
      bb = planes[2].row(r1);
    const k = new RowLerp(rt, rb, gt, gb, bt, bb, fy, mt, mb, my, scale);
    if (clamped) addRow8(clamped, Y * W * 3, W, k);
    else addRow16(frame as Uint16Array, Y * W * 3, W, k);
  }
  return touched;
}

/** The two cached source rows of each plane around one output row, and the vertical weights. */
class RowLerp {
  constructor(
    readonly rt: Float32Array,
    readonly rb: Float32Array,
    readonly gt: Float32Array,
    readonly gb: Float32Array,
    readonly bt: Float32Array,
    readonly bb: Float32Array,
    readonly fy: number,
    readonly mt: Float32Array | undefined,
    readonly mb: Float32Array | undefined,
    readonly my: number,
    readonly scale: number,
  ) {}
}

function addRow8(frame: Uint8ClampedArray, p: number, W: number, k: RowLerp): void {
  const { rt, rb, gt, gb, bt, bb, fy, mt, mb, my, scale } = k;
  for (let X = 0; X < W; X++, p += 3) {
    let s = scale;
    if (mt) {
      const a = mt[X];
      const mv = a + (mb![X] - a) * my;
      if (mv === 0) continue;
      s *= mv;
    }
    // Uint8ClampedArray stores round to nearest and clamp to 0..255; a zero delta leaves the sample as it was.
    frame[p] = frame[p] + (rt[X] + (rb[X] - rt[X]) * fy) * s;
    frame[p + 1] = frame[p + 1] + (gt[X] + (gb[X] - gt[X]) * fy) * s;
    frame[p + 2] = frame[p + 2] + (bt[X] + (bb[X] - bt[X]) * fy) * s;
  }
}

function addRow16(frame: Uint16Array, p: number, W: number, k: RowLerp): void {
  const { rt, rb, gt, gb, bt, bb, fy, mt, mb, my, scale } = k;
  for (let X = 0; X < W; X++, p += 3) {
    let s = scale;
    if (mt) {
      const a = mt[X];
      const mv = a + (mb![X] - a) * my;
      if (mv === 0) continue;
      s *= mv;
    }
    // Clamp, then + ½ and the store's truncation: round half up, without Math.round.
    let v = frame[p] + (rt[X] + (rb[X] - rt[X]) * fy) * s;
    frame[p] = (v < 0 ? 0 : v > 65535 ? 65535 : v) + 0.5;
    v = frame[p + 1] + (gt[X] + (gb[X] - gt[X]) * fy) * s;
    frame[p + 1] = (v < 0 ? 0 : v > 65535 ? 65535 : v) + 0.5;
    v = frame[p + 2] + (bt[X] + (bb[X] - bt[X]) * fy) * s;
    frame[p + 2] = (v < 0 ? 0 : v > 65535 ? 65535 : v) + 0.5;
  }
}

/** edit − reconstruction, in place into `edit` (both [n, 3, h, w] of the same size). */
export function subtractInto(edit: Float32Array, reconstruction: Float32Array): void {
  if (edit.length !== reconstruction.length)
    throw new RangeError(`composite: edit has ${edit.length} values, reconstruction ${reconstruction.length}`);
  for (let i = 0; i < edit.length; i++) edit[i] -= reconstruction[i];
}
