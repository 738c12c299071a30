// Premiere time is counted in ticks, 254016000000 per second. Tick counts pass 2^53 after about 9.8 hours, so they
// travel as strings and are compared and subtracted as BigInt; only display values become floating-point seconds.

export const TICKS_PER_SECOND = 254016000000n;

export function parseTicks(value: string, what: string): bigint {
  const s = String(value).trim();
  if (!/^-?\d+$/.test(s)) throw new Error(`Premiere reported ${what} as "${value}", which is not a tick count`);
  return BigInt(s);
}

/** Seconds from ticks without losing the fraction on long timelines. */
export function ticksToSeconds(ticks: bigint): number {
  const whole = ticks / TICKS_PER_SECOND;
  const rest = ticks % TICKS_PER_SECOND;
  return Number(whole) + Number(rest) / Number(TICKS_PER_SECOND);
}

/** Half-open ranges [aStart, aEnd) and [bStart, bEnd) share some time; touching ends do not count. */
export function overlaps(aStart: bigint, aEnd: bigint, bStart: bigint, bEnd: bigint): boolean {
  return aStart < bEnd && aEnd > bStart;
}
