// Seeded noise for latents. A seed must give the same noise on every machine and every run so that an edit can be
// reproduced and compared, hence a fixed 32-bit integer generator (mulberry32) instead of Math.random. The integer
// stream is exact everywhere; the Gaussian transform uses Math.log/sqrt/cos/sin, which V8 implements identically on
// all platforms (its own fdlibm port), so Node gives the same floats on Windows, macOS and Linux.

const TWO_POW_32 = 4294967296;

export class Rng {
  private state: number;
  // Box–Muller makes two independent normals per pair of uniforms; the second is kept for the next call.
  private spare: number | null = null;

  /** Any finite number; it is reduced to 32 bits (ToUint32), so seeds that agree modulo 2^32 give the same stream. */
  constructor(seed: number) {
    if (!Number.isFinite(seed)) throw new RangeError(`seed must be a finite number (got ${seed})`);
    this.state = seed >>> 0;
  }

  private nextUint32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform in [0, 1) with 32-bit resolution. */
  uniform(): number {
    return this.nextUint32() / TWO_POW_32;
  }

  /** Standard normal. */
  normal(): number {
    if (this.spare !== null) {
      const z = this.spare;
      this.spare = null;
      return z;
    }
    // (k + 1) / 2^32 lies in (0, 1], so the logarithm is finite.
    const u1 = (this.nextUint32() + 1) / TWO_POW_32;
    const u2 = this.nextUint32() / TWO_POW_32;
    const r = Math.sqrt(-2 * Math.log(u1));
    const theta = 2 * Math.PI * u2;
    this.spare = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  /** Fills `out` with the same values successive normal() calls would return. */
  fillNormal(out: Float32Array): Float32Array {
    for (let i = 0; i < out.length; i++) out[i] = this.normal();
    return out;
  }
}

export function seededNoise(seed: number, length: number): Float32Array {
  if (!Number.isInteger(length) || length < 0)
    throw new RangeError(`length must be a non-negative integer (got ${length})`);
  return new Rng(seed).fillNormal(new Float32Array(length));
}
