// Frame rates stay exact rationals end to end: 29.97 fps is 30000/1001, and float rounding of it is exactly
// what makes frame N land on N-1 after a seek.

export interface Rational {
  num: number;
  den: number;
}

function gcd(a: number, b: number): number {
  a = Math.abs(a);
  b = Math.abs(b);
  while (b) [a, b] = [b, a % b];
  return a;
}

export function rational(num: number, den: number): Rational {
  const g = gcd(num, den) || 1;
  return { num: num / g, den: den / g };
}

/** "30000/1001" or "16:9" -> Rational, null for 0/0, N/0 or junk. */
export function parseRational(text: unknown): Rational | null {
  if (typeof text !== 'string') return null;
  const m = /^\s*(\d+)\s*[/:]\s*(\d+)\s*$/.exec(text);
  if (!m) return null;
  const num = Number(m[1]);
  const den = Number(m[2]);
  if (!(num > 0 && den > 0)) return null;
  return rational(num, den);
}

export function rationalValue(r: Rational): number {
  return r.num / r.den;
}

export function rationalEquals(a: Rational, b: Rational): boolean {
  return a.num * b.den === b.num * a.den;
}

/** For ffmpeg arguments such as -r and -framerate. */
export function rationalArg(r: Rational): string {
  return `${r.num}/${r.den}`;
}

/** Presentation time of frame k at a constant rate: k·den/num seconds. */
export function frameTime(k: number, fps: Rational): number {
  return (k * fps.den) / fps.num;
}

export function formatFps(r: Rational): string {
  const v = rationalValue(r);
  return r.den === 1 ? `${r.num} fps` : `${Number(v.toFixed(3))} fps (${r.num}/${r.den})`;
}
