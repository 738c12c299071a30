// Layered synthetic scenes with exact ground truth, for the evaluation suite: a textured background that can pan,
// one object to edit that moves and scales, and occluders passing in front of it. Every pixel belongs to one layer
// whose content transform is known in closed form, so the object mask, the forward flow and the occlusion of every
// frame pair are exact rather than estimated. makeMovingObjectClip is the one-layer special case kept for its tests.

import { imageBatch } from '../diffusion/images';
import { Rng } from '../diffusion/random';
import { latticeNormal, type SyntheticClip } from './synthetic-clip';

export type Rgb = [number, number, number];

export interface SceneObject {
  shape: 'square' | 'circle' | 'rect';
  colour: Rgb;
  /** Side (square), diameter (circle) or [width, height] (rect) in pixels at frame 0. */
  size: number | [number, number];
  /** Centre at frame 0, in pixels (pixel centres sit at integer + 0.5). */
  centre: [number, number];
  /** Pixels per frame. */
  velocity?: [number, number];
  /** Size factor per frame (1.03 grows 3 % a frame); the texture scales with the object. */
  growth?: number;
}

export interface SceneOptions {
  frames: number;
  width: number;
  height: number;
  background: Rgb;
  /**
   * Achromatic pattern added equally to r, g and b: it gives the background structure (for optical flow and for
   * the eye) without raising its chroma, so the oracle still reads it as background.
   */
  pattern?: { amplitude: number; period: number };
  /** Background content velocity in pixels per frame (a camera pan). */
  pan?: [number, number];
  /** The object the edit targets; `objectMask` is its visible part. */
  object: SceneObject;
  /** Drawn in front of the object, later entries on top. */
  occluders?: SceneObject[];
  /** Std of the per-layer texture that moves with its layer; default 0.03. */
  noise?: number;
  /**
   * Std of independent per-frame noise (sensor noise). Unlike the texture it does not follow the flow, so it is
   * the part of a clip that a temporally consistent edit must not turn into flicker. Default 0.
   */
  frameNoise?: number;
  seed?: number;
}

export interface SyntheticScene extends SyntheticClip {
  /** Which layer each pixel shows: 0 background, 1 the object, 2.. occluders; [n, H, W]. */
  layers: Uint8Array;
}

const BACKGROUND_SALT = 0x5ce0b6;
const LAYER_SALT = 0x5ce1a0;

/** Bilinear lattice texture over a fixed integer box, computed once (hashing per sample is several times slower). */
class Lattice {
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
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++) this.values[(c * h + y) * w + x] = latticeNormal(seed, salt, c, x0 + x, y0 + y);
  }
  private at(c: number, ix: number, iy: number): number {
    const x = Math.min(this.w - 1, Math.max(0, ix - this.x0));
    const y = Math.min(this.h - 1, Math.max(0, iy - this.y0));
    return this.values[(c * this.h + y) * this.w + x];
  }
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

function dims(o: SceneObject): [number, number] {
  if (Array.isArray(o.size)) return [o.size[0], o.size[1]];
  return [o.size, o.size];
}

/** A moving, scaling shape: content coordinate u (frame-0 pixels from the centre) sits at centre_t + scale_t · u. */
class ObjectLayer {
  readonly w: number;
  readonly h: number;
  private readonly lattice: Lattice;
  constructor(
    readonly o: SceneObject,
    seed: number,
    salt: number,
  ) {
    [this.w, this.h] = dims(o);
    if (!(this.w > 0 && this.h > 0))
      throw new Error(`synthetic scene: object size must be > 0, got ${JSON.stringify(o.size)}`);
    this.lattice = new Lattice(seed, salt, -2, -2, Math.ceil(this.w) + 5, Math.ceil(this.h) + 5);
  }
  scale(t: number): number {
    return Math.pow(this.o.growth ?? 1, t);
  }
  centre(t: number): [number, number] {
    const v = this.o.velocity ?? [0, 0];
    return [this.o.centre[0] + v[0] * t, this.o.centre[1] + v[1] * t];
  }
  toContent(t: number, px: number, py: number): [number, number] {
    const [cx, cy] = this.centre(t);
    const s = this.scale(t);
    return [(px - cx) / s, (py - cy) / s];
  }
  toFrame(t: number, ux: number, uy: number): [number, number] {
    const [cx, cy] = this.centre(t);
    const s = this.scale(t);
    return [cx + s * ux, cy + s * uy];
  }
  contains(ux: number, uy: number): boolean {
    if (this.o.shape === 'circle') {
      const r = this.w / 2;
      return ux * ux + uy * uy < r * r;
    }
    return ux >= -this.w / 2 && ux < this.w / 2 && uy >= -this.h / 2 && uy < this.h / 2;
  }
  /** Texel coordinates: at growth 1 and a pixel-aligned corner these are integers, so texels move bit for bit. */
  texture(c: number, ux: number, uy: number): number {
    return this.lattice.sample(c, ux + this.w / 2 - 0.5, uy + this.h / 2 - 0.5);
  }
}

export function makeScene(o: SceneOptions): SyntheticScene {
  const { frames: n, width: W, height: H } = o;
  for (const [name, v] of [
    ['frames', n],
    ['width', W],
    ['height', H],
  ] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`synthetic scene: ${name} must be a positive integer, got ${v}`);
  }
  const seed = (o.seed ?? 0) | 0;
  const noise = o.noise ?? 0.03;
  const frameNoise = o.frameNoise ?? 0;
  const pan = o.pan ?? [0, 0];
  const layers = [
    new ObjectLayer(o.object, seed, LAYER_SALT),
    ...(o.occluders ?? []).map((oc, i) => new ObjectLayer(oc, seed, LAYER_SALT + 17 * (i + 1))),
  ];
  const colours = [o.object.colour, ...(o.occluders ?? []).map((oc) => oc.colour)];
  // Background content coordinate = pixel − pan·t; the lattice must cover every coordinate any frame shows.
  const minX = Math.floor(Math.min(0, -pan[0] * (n - 1))) - 2;
  const minY = Math.floor(Math.min(0, -pan[1] * (n - 1))) - 2;
  const maxX = Math.ceil(W + Math.max(0, -pan[0] * (n - 1))) + 2;
  const maxY = Math.ceil(H + Math.max(0, -pan[1] * (n - 1))) + 2;
  const bgLattice = new Lattice(seed, BACKGROUND_SALT, minX, minY, maxX - minX, maxY - minY);
  const pattern = (x: number, y: number) =>
    o.pattern
      ? o.pattern.amplitude *
        Math.sin((2 * Math.PI * x) / o.pattern.period) *
        Math.cos((2 * Math.PI * y) / (1.3 * o.pattern.period))
      : 0;

  const hw = H * W;
  /** Top layer at a pixel centre of frame t: the last occluder containing it, else the object, else background. */
  const topAt = (t: number, px: number, py: number): number => {
    for (let l = layers.length - 1; l >= 0; l--) {
      const [ux, uy] = layers[l].toContent(t, px, py);
      if (layers[l].contains(ux, uy)) return l + 1;
    }
    return 0;
  };

  const frames = imageBatch(n, H, W);
  const layerIds = new Uint8Array(n * hw);
  for (let t = 0; t < n; t++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const p = y * W + x;
        const px = x + 0.5;
        const py = y + 0.5;
        const top = topAt(t, px, py);
        layerIds[t * hw + p] = top;
        for (let c = 0; c < 3; c++) {
          let v: number;
          if (top === 0) {
            const bx = x - pan[0] * t;
            const by = y - pan[1] * t;
            v = o.background[c] + pattern(bx, by) + noise * bgLattice.sample(c, bx, by);
          } else {
            const L = layers[top - 1];
            const [ux, uy] = L.toContent(t, px, py);
            v = colours[top - 1][c] + noise * L.texture(c, ux, uy);
          }
          frames.data[(t * 3 + c) * hw + p] = v;
        }
      }
    }
  }
  if (frameNoise > 0) {
    const rng = new Rng(seed ^ 0x6e015e);
    for (let i = 0; i < frames.data.length; i++) frames.data[i] += frameNoise * rng.normal();
  }
  for (let i = 0; i < frames.data.length; i++) frames.data[i] = Math.max(-1, Math.min(1, frames.data[i]));

  const objectMask = new Float32Array(n * hw);
  for (let i = 0; i < objectMask.length; i++) objectMask[i] = layerIds[i] === 1 ? 1 : 0;

  const pairs = Math.max(0, n - 1);
  const flow = new Float32Array(pairs * 2 * hw);
  const occ = new Float32Array(pairs * hw);
  for (let t = 0; t < pairs; t++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const p = y * W + x;
        const px = x + 0.5;
        const py = y + 0.5;
        const top = layerIds[t * hw + p];
        let qx: number;
        let qy: number;
        if (top === 0) {
          qx = px + pan[0];
          qy = py + pan[1];
        } else {
          const L = layers[top - 1];
          const [ux, uy] = L.toContent(t, px, py);
          [qx, qy] = L.toFrame(t + 1, ux, uy);
        }
        flow[t * 2 * hw + p] = qx - px;
        flow[(t * 2 + 1) * hw + p] = qy - py;
        // Occluded: the point is still in the frame next time but another layer covers it there.
        if (qx >= 0 && qx < W && qy >= 0 && qy < H && topAt(t + 1, qx, qy) !== top) occ[t * hw + p] = 1;
      }
    }
  }

  const positions: [number, number][] = [];
  for (let t = 0; t < n; t++) {
    const L = layers[0];
    const [cx, cy] = L.centre(t);
    const s = L.scale(t);
    positions.push([cx - (s * L.w) / 2, cy - (s * L.h) / 2]);
  }
  return {
    frames,
    objectMask: { n, height: H, width: W, data: objectMask },
    flow,
    occlusion: { n: pairs, height: H, width: W, data: occ },
    positions,
    layers: layerIds,
  };
}
