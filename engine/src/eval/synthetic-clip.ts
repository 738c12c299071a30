// A clip whose ground truth is known exactly: which pixels are the object, and where every pixel goes next
// frame. Metrics (edit accuracy inside the object, background preservation, warp error) can then be checked
// against truth instead of against another estimator such as RAFT.

import { ImageBatch, MaskBatch, imageBatch } from '../diffusion/images';

export interface SyntheticClipOptions {
  frames: number;
  width: number;
  height: number;
  /** RGB in [-1, 1]. */
  objectColour: [number, number, number];
  backgroundColour: [number, number, number];
  /** Default 'square'. */
  shape?: 'square' | 'circle';
  /** Object side (or diameter) as a fraction of min(width, height); default 0.3. */
  size?: number;
  /** Pixels per frame. Default: left to right across about half the frame over the clip. */
  velocity?: [number, number];
  /** Std of the per-pixel texture on object and background; default 0.03. */
  noise?: number;
  seed?: number;
}

export interface SyntheticClip {
  frames: ImageBatch;
  /** Exactly 1 inside the object, 0 outside. */
  objectMask: MaskBatch;
  /** Forward flow frame t -> t+1, layout [(n - 1), 2, H, W] as (dx, dy) in pixels. */
  flow: Float32Array;
  /**
   * For each pair (t, t+1), the pixels of frame t that frame t+1 does not show: background about to be covered
   * by the object. Their forward flow (0) is still correct, but no warp can recover them, so warp error must
   * exclude them exactly as Lai et al. exclude occluded pixels. Layout [(n - 1), H, W]. Pixels whose flow
   * leaves the frame are not marked here; warpError detects those itself.
   */
  occlusion: MaskBatch;
  /** Top-left corner of the object's bounding box in each frame (x, y), for tests and diagnostics. */
  positions: [number, number][];
}

const OBJECT_SALT = 0x0b1ec7;
const BACKGROUND_SALT = 0x0bac6d;

function checkPositiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) throw new Error(`synthetic clip: ${name} must be a positive integer, got ${v}`);
}

/** 32-bit integer hash (lowbias32); stable across platforms, unlike Math.random. */
function hash32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

/**
 * Standard normal value attached to an integer lattice point. Each texture sample is a pure function of its
 * coordinates, not of a generator's call order, which is what lets the same object texel show up unchanged
 * at its moved position in the next frame.
 */
export function latticeNormal(seed: number, salt: number, channel: number, ix: number, iy: number): number {
  let h = hash32(seed ^ salt);
  h = hash32(h ^ Math.imul(channel + 1, 0x9e3779b1));
  h = hash32(h ^ Math.imul(ix | 0, 0x85ebca6b));
  h = hash32(h ^ Math.imul(iy | 0, 0xc2b2ae35));
  const h2 = hash32(h ^ 0x68bc21eb);
  const u1 = (h + 1) / 4294967297; // in (0, 1): keeps log() finite
  const u2 = h2 / 4294967296;
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}

/**
 * Lattice values of one texture over integer points [x0, x0 + w) x [y0, y0 + h), per channel, computed once
 * rather than re-hashed for every frame (hashing per sample made a 16-frame 512² clip ~6x slower).
 */
class TextureTable {
  private readonly values: Float32Array;
  constructor(
    seed: number,
    salt: number,
    readonly x0: number,
    readonly y0: number,
    readonly w: number,
    readonly h: number,
  ) {
    this.values = new Float32Array(3 * w * h);
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) this.values[(c * h + y) * w + x] = latticeNormal(seed, salt, c, x0 + x, y0 + y);
      }
    }
  }

  private at(c: number, ix: number, iy: number): number {
    return this.values[(c * this.h + (iy - this.y0)) * this.w + (ix - this.x0)];
  }

  /**
   * Texture at a possibly fractional point, bilinear between lattice values. At integer points it is exactly the
   * lattice value, so integer motion reproduces texels bit for bit; fractional motion still moves the texture
   * rigidly with the object (only the flow's bilinear warp is then approximate).
   */
  sample(c: number, x: number, y: number): number {
    const ix = Math.floor(x);
    const iy = Math.floor(y);
    const fx = x - ix;
    const fy = y - iy;
    let v = (1 - fx) * (1 - fy) * this.at(c, ix, iy);
    if (fx > 0) v += fx * (1 - fy) * this.at(c, ix + 1, iy);
    if (fy > 0) v += (1 - fx) * fy * this.at(c, ix, iy + 1);
    if (fx > 0 && fy > 0) v += fx * fy * this.at(c, ix + 1, iy + 1);
    return v;
  }
}

export function makeMovingObjectClip(o: SyntheticClipOptions): SyntheticClip {
  const { frames: n, width: W, height: H } = o;
  checkPositiveInt('frames', n);
  checkPositiveInt('width', W);
  checkPositiveInt('height', H);
  const shape = o.shape ?? 'square';
  const sizeFrac = o.size ?? 0.3;
  if (!(sizeFrac > 0)) throw new Error(`synthetic clip: size must be > 0, got ${sizeFrac}`);
  const noise = o.noise ?? 0.03;
  if (!(noise >= 0)) throw new Error(`synthetic clip: noise must be >= 0, got ${noise}`);
  const seed = (o.seed ?? 0) | 0;

  // An integer side keeps a square's area exactly side² pixels when its corner sits on integer coordinates.
  const side = Math.max(1, Math.round(sizeFrac * Math.min(W, H)));

  let velocity: [number, number];
  if (o.velocity) {
    velocity = [o.velocity[0], o.velocity[1]];
  } else {
    const perFrame = n > 1 ? (0.5 * W) / (n - 1) : 0;
    // Whole pixels when the speed allows it, so the default clip's ground-truth flow is exact under
    // bilinear warping; slow default clips keep their fractional speed rather than standing still.
    velocity = [perFrame >= 1 ? Math.round(perFrame) : perFrame, 0];
  }
  const [vx, vy] = velocity;

  // Centre the whole path in the frame; floor keeps the start on the pixel grid.
  const x0 = Math.floor((W - side - vx * (n - 1)) / 2);
  const y0 = Math.floor((H - side - vy * (n - 1)) / 2);
  const positions: [number, number][] = [];
  for (let t = 0; t < n; t++) positions.push([x0 + vx * t, y0 + vy * t]);

  const hw = H * W;
  const inside = (t: number, x: number, y: number): boolean => {
    // Pixel centres, so a shape on integer coordinates covers whole pixels.
    const px = x + 0.5 - positions[t][0];
    const py = y + 0.5 - positions[t][1];
    if (shape === 'square') return px >= 0 && px < side && py >= 0 && py < side;
    const r = side / 2;
    const dx = px - r;
    const dy = py - r;
    return dx * dx + dy * dy < r * r;
  };

  // Object coordinates of object pixels lie in (-1, side], so lattice points -1..side+1 cover every bilinear tap.
  const objectTexture = new TextureTable(seed, OBJECT_SALT, -1, -1, side + 3, side + 3);
  const backgroundTexture = new TextureTable(seed, BACKGROUND_SALT, 0, 0, W, H);

  const frames = imageBatch(n, H, W);
  const maskData = new Float32Array(n * hw);
  for (let t = 0; t < n; t++) {
    const [ox, oy] = positions[t];
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const p = y * W + x;
        const isObj = inside(t, x, y);
        maskData[t * hw + p] = isObj ? 1 : 0;
        for (let c = 0; c < 3; c++) {
          const base = isObj ? o.objectColour[c] : o.backgroundColour[c];
          const tex =
            noise === 0 ? 0 : isObj ? objectTexture.sample(c, x - ox, y - oy) : backgroundTexture.sample(c, x, y);
          const v = base + noise * tex;
          frames.data[(t * 3 + c) * hw + p] = v < -1 ? -1 : v > 1 ? 1 : v;
        }
      }
    }
  }

  const pairs = Math.max(0, n - 1);
  const flow = new Float32Array(pairs * 2 * hw);
  const occData = new Float32Array(pairs * hw);
  for (let t = 0; t < pairs; t++) {
    for (let p = 0; p < hw; p++) {
      const objNow = maskData[t * hw + p] === 1;
      if (objNow) {
        flow[t * 2 * hw + p] = vx;
        flow[(t * 2 + 1) * hw + p] = vy;
      } else if (maskData[(t + 1) * hw + p] === 1) {
        occData[t * hw + p] = 1;
      }
    }
  }

  return {
    frames,
    objectMask: { n, height: H, width: W, data: maskData },
    flow,
    occlusion: { n: pairs, height: H, width: W, data: occData },
    positions,
  };
}
