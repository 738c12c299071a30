// SMPTE timecode as Premiere shows it: HH:MM:SS:FF counted at the nominal rate (30 for 29.97), and at 29.97 and
// 59.94 drop-frame HH;MM;SS;FF, which skips frame numbers so the clock keeps to wall time. Shared by the panel (viewer,
// range fields) and the engine (messages about ranges), so both speak the same time.

export interface Rate {
  num: number;
  den: number;
}

/** A rate from a decimal fps as the panel's hosts report it (29.97 → 30000/1001). */
export function rateOf(fps: number | Rate): Rate {
  if (typeof fps !== 'number') return fps;
  if (!Number.isFinite(fps) || fps <= 0) return { num: 25, den: 1 };
  const ntsc = Math.round(fps * 1.001);
  if (Math.abs(fps - (ntsc * 1000) / 1001) < 0.005 && Math.abs(fps - ntsc) > 0.005)
    return { num: ntsc * 1000, den: 1001 };
  return { num: Math.round(fps * 1000), den: 1000 };
}

export function nominalFps(rate: Rate): number {
  return Math.max(1, Math.round(rate.num / rate.den));
}

/** Drop-frame applies to the NTSC rates that are multiples of 29.97, as in Premiere's default display. */
export function isDropFrame(rate: Rate): boolean {
  const nominal = nominalFps(rate);
  return rate.den === 1001 && nominal % 30 === 0;
}

function droppedPerMinute(rate: Rate): number {
  return (nominalFps(rate) / 30) * 2;
}

/** The label of frame `frame` (0-based, counted from `start`). */
export function framesToTimecode(frame: number, fps: number | Rate, start = 0): string {
  if (!Number.isFinite(frame)) return '—';
  const rate = rateOf(fps);
  const nominal = nominalFps(rate);
  let n = Math.max(0, Math.round(frame) + start);
  const drop = isDropFrame(rate);
  if (drop) {
    const d = droppedPerMinute(rate);
    const per10 = nominal * 600 - d * 9;
    const perMinute = nominal * 60 - d;
    const tens = Math.floor(n / per10);
    const rest = n % per10;
    n += d * 9 * tens + (rest > d ? d * Math.floor((rest - d) / perMinute) : 0);
  }
  const ff = n % nominal;
  const totalSec = Math.floor(n / nominal);
  const sep = drop ? ';' : ':';
  return [Math.floor(totalSec / 3600) % 24, Math.floor(totalSec / 60) % 60, totalSec % 60, ff].map(pad).join(sep);
}

const TIMECODE = /^(\d{1,2})[:;.](\d{1,2})[:;.](\d{1,2})[:;.](\d{1,3})$/;

/** Written as timecode (HH:MM:SS:FF, any of the separators Premiere accepts), whatever the rate. */
export function looksLikeTimecode(text: string): boolean {
  return TIMECODE.test(text.trim());
}

/** The frame a label names; undefined when it is not a timecode of this rate (frame number past the rate, a dropped label). */
export function timecodeToFrames(label: string, fps: number | Rate): number | undefined {
  const m = TIMECODE.exec(label.trim());
  if (!m) return undefined;
  const [hh, mm, ss, ff] = m.slice(1).map(Number) as [number, number, number, number];
  const rate = rateOf(fps);
  const nominal = nominalFps(rate);
  if (mm > 59 || ss > 59 || ff >= nominal) return undefined;
  const minutes = hh * 60 + mm;
  let n = (minutes * 60 + ss) * nominal + ff;
  if (isDropFrame(rate)) {
    const d = droppedPerMinute(rate);
    if (ss === 0 && ff < d && mm % 10 !== 0) return undefined;
    n -= d * (minutes - Math.floor(minutes / 10));
  }
  return n;
}

/** The label of the frame that starts at `sec` seconds (rounded to the nearest frame). */
export function secondsToTimecode(sec: number, fps: number | Rate): string {
  if (!Number.isFinite(sec)) return '—';
  const rate = rateOf(fps);
  return framesToTimecode(Math.round((Math.max(0, sec) * rate.num) / rate.den), rate);
}

function pad(v: number): string {
  return String(v).padStart(2, '0');
}

/**
 * A time typed by an editor: timecode in the clip's rate (00:00:01:12, or 00;00;01;12 drop-frame) or seconds (1.5).
 * Seconds; undefined when it is neither, or a label that does not exist at this rate.
 */
export function parseTime(text: string, fps: number | Rate): number | undefined {
  const t = text.trim();
  if (/^\d+(\.\d*)?$|^\.\d+$/.test(t)) return Number(t);
  const rate = rateOf(fps);
  const frame = timecodeToFrames(t, rate);
  return frame === undefined ? undefined : (frame * rate.den) / rate.num;
}
