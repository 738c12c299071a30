// Full-resolution compositing math (media/composite.ts): out = source + matte · upscale(delta), in place on raw
// packed frames. Checked against closed forms and against an independent per-pixel bilinear reference.
import { bilinearTaps, compositeFrame, subtractInto, type DeltaFrames } from '../../engine/src/media/composite';
import { resizeMask } from '../../engine/src/editing/masks/mask-ops';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function randomBytes(n: number, seed: number): Uint8Array {
  const r = rng(seed);
  return Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
}

function delta(n: number, h: number, w: number, f: (c: number, y: number, x: number) => number): DeltaFrames {
  const data = new Float32Array(n * 3 * h * w);
  for (let k = 0; k < n; k++)
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data[((k * 3 + c) * h + y) * w + x] = f(c, y, x);
  return { n, height: h, width: w, data };
}

/** Bilinear with pixel centres aligned, written out per pixel (no separable passes, no caches). */
function refSample(plane: Float32Array, h: number, w: number, H: number, W: number, Y: number, X: number): number {
  const fy = Math.min(h - 1, Math.max(0, (Y + 0.5) * (h / H) - 0.5));
  const fx = Math.min(w - 1, Math.max(0, (X + 0.5) * (w / W) - 0.5));
  const y0 = Math.floor(fy),
    x0 = Math.floor(fx);
  const y1 = Math.min(h - 1, y0 + 1),
    x1 = Math.min(w - 1, x0 + 1);
  const ay = fy - y0,
    ax = fx - x0;
  const top = plane[y0 * w + x0] * (1 - ax) + plane[y0 * w + x1] * ax;
  const bot = plane[y1 * w + x0] * (1 - ax) + plane[y1 * w + x1] * ax;
  return top * (1 - ay) + bot * ay;
}

describe('compositeFrame', () => {
  const W = 37,
    H = 23,
    w = 8,
    h = 6;

  it('gives the source bytes back exactly for a zero delta (8 and 16 bit)', () => {
    const src8 = randomBytes(W * H * 3, 1);
    const f8 = Uint8Array.from(src8);
    compositeFrame(
      f8,
      delta(1, h, w, () => 0),
      0,
      undefined,
      { width: W, height: H, bitDepth: 8 },
    );
    expect(Buffer.from(f8).equals(Buffer.from(src8))).toBe(true);
    const r = rng(2);
    const src16 = Uint16Array.from({ length: W * H * 3 }, () => Math.floor(r() * 65536));
    const f16 = Uint16Array.from(src16);
    compositeFrame(
      f16,
      delta(1, h, w, () => 0),
      0,
      undefined,
      { width: W, height: H, bitDepth: 16 },
    );
    expect(Array.from(f16)).toEqual(Array.from(src16));
  });

  it('gives the source back exactly where the matte is 0, whatever the delta', () => {
    const src = randomBytes(W * H * 3, 3);
    const f = Uint8Array.from(src);
    const r = rng(4);
    const touched = compositeFrame(
      f,
      delta(1, h, w, () => r() * 2 - 1),
      0,
      { height: 3, width: 4, data: new Float32Array(12) },
      { width: W, height: H, bitDepth: 8 },
    );
    expect(touched).toBe(0);
    expect(Buffer.from(f).equals(Buffer.from(src))).toBe(true);
  });

  it('adds a constant delta everywhere, scaled to the sample range and clamped', () => {
    const f = new Uint8Array(W * H * 3).fill(100);
    f[0] = 250;
    compositeFrame(
      f,
      delta(1, h, w, (c) => [0.3, -0.3, 0][c]),
      0,
      undefined,
      { width: W, height: H, bitDepth: 8 },
    );
    expect(f[0]).toBe(255);
    expect(f[3]).toBe(Math.round(100 + 0.3 * 127.5));
    expect(f[4]).toBe(Math.round(100 - 0.3 * 127.5));
    expect(f[5]).toBe(100);
    const g = new Uint16Array(3).fill(30000);
    compositeFrame(
      g,
      delta(1, 1, 1, () => 0.1),
      0,
      undefined,
      { width: 1, height: 1, bitDepth: 16 },
    );
    expect(g[0]).toBe(Math.round(30000 + 0.1 * 32767.5));
  });

  it('reproduces a linear ramp inside the frame (pixel-centre aligned) and holds the edge samples outside', () => {
    // 4 → 8 columns: output column X samples source position X/2 − 1/4.
    const d = delta(1, 1, 4, (_c, _y, x) => x * 0.1);
    const f = new Uint8Array(8 * 1 * 3).fill(128);
    compositeFrame(f, d, 0, undefined, { width: 8, height: 1, bitDepth: 8 });
    const want = [0, 0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.6].map(
      (v, X) => (X === 0 ? 0 : X === 7 ? 0.3 : v / 2) * 127.5 + 128,
    );
    for (let X = 0; X < 8; X++) expect(f[3 * X]).toBe(Math.round(want[X]));
  });

  it('matches a per-pixel bilinear reference for random delta and matte of different sizes, and the matte writer', () => {
    const r = rng(5);
    const n = 2;
    const d = delta(n, h, w, () => r() * 0.4 - 0.2);
    const mh = 3,
      mw = 5;
    const matte = Float32Array.from({ length: mh * mw }, () => (r() < 0.3 ? 0 : r()));
    // The compositing matte is the same bilinear the matte writer (matte-output.ts) uses for the file it writes.
    const big = resizeMask(matte, 1, mh, mw, H, W);
    for (let k = 0; k < n; k++) {
      const src = randomBytes(W * H * 3, 10 + k);
      const f = Uint8Array.from(src);
      compositeFrame(f, d, k, { height: mh, width: mw, data: matte }, { width: W, height: H, bitDepth: 8 });
      let worst = 0;
      for (let Y = 0; Y < H; Y++) {
        for (let X = 0; X < W; X++) {
          const m = refSample(matte, mh, mw, H, W, Y, X);
          expect(Math.abs(m - big[Y * W + X])).toBeLessThan(1e-6);
          for (let c = 0; c < 3; c++) {
            const dv = refSample(d.data.subarray((k * 3 + c) * h * w, (k * 3 + c + 1) * h * w), h, w, H, W, Y, X);
            const want = Math.min(255, Math.max(0, src[(Y * W + X) * 3 + c] + m * dv * 127.5));
            worst = Math.max(worst, Math.abs(f[(Y * W + X) * 3 + c] - want));
          }
        }
      }
      // Rounding to the nearest integer, and float32 arithmetic.
      expect(worst).toBeLessThanOrEqual(0.5 + 1e-3);
    }
  });

  it('gives the same frame composited in bands of rows as in one go', () => {
    const r = rng(7);
    const d = delta(1, h, w, () => r() * 0.4 - 0.2);
    const matte = { height: 4, width: 4, data: Float32Array.from({ length: 16 }, () => r()) };
    const src = randomBytes(W * H * 3, 8);
    const whole = Uint8Array.from(src);
    compositeFrame(whole, d, 0, matte, { width: W, height: H, bitDepth: 8 });
    const banded = Uint8Array.from(src);
    for (let from = 0; from < H; from += 5)
      compositeFrame(banded, d, 0, matte, { width: W, height: H, bitDepth: 8, rows: { from, to: from + 5 } });
    expect(Buffer.from(banded).equals(Buffer.from(whole))).toBe(true);
  });

  it('is the identity for same-size inputs and refuses frames of the wrong size', () => {
    const t = bilinearTaps(5, 5);
    expect(Array.from(t.i0)).toEqual([0, 1, 2, 3, 4]);
    expect(Array.from(t.f)).toEqual([0, 0, 0, 0, 0]);
    expect(() =>
      compositeFrame(
        new Uint8Array(10),
        delta(1, 1, 1, () => 0),
        0,
        undefined,
        { width: 2, height: 2, bitDepth: 8 },
      ),
    ).toThrow(/needs 12/);
    expect(() =>
      compositeFrame(
        new Uint8Array(12),
        delta(1, 1, 1, () => 0),
        0,
        undefined,
        { width: 2, height: 2, bitDepth: 16 },
      ),
    ).toThrow(/Uint16Array/);
  });
});

describe('subtractInto', () => {
  it('turns the edit into edit − reconstruction', () => {
    const e = Float32Array.from([1, 0.5, -1]);
    subtractInto(e, Float32Array.from([1, 0.25, -0.5]));
    expect(Array.from(e)).toEqual([0, 0.25, -0.5]);
    expect(() => subtractInto(e, new Float32Array(2))).toThrow();
  });
});
