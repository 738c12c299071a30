// Which frames a range holds, chosen by presentation time relative to the video stream's first frame. For
// constant-rate video that is the grid k·den/num (range.ts). Phones and screen recorders write variable frame rate,
// and a damaged or spliced file can skip frames: there the grid would pick the wrong frames and the wrong count, so
// the frames of [in, out) are read from the container's packet timestamps and the result keeps them.

import { ffprobePath } from './binaries';
import type { MediaInfo } from './probe';
import { run } from './process';
import { secondsToTimecode } from '../api/timecode';
import { FrameRange, resolveRange } from './range';
import { MediaError } from './errors';
import { LOCAL_INPUT } from './local-input';
import { frameTime, rationalValue } from './rational';

export interface FrameSelection extends FrameRange {
  /**
   * Set when the frames do not sit on the constant-rate grid: each selected frame's time after the first one
   * (times[0] = 0), what the encoder stamps them with, and where the decoder seeks (see DecodeOptions.seek).
   */
  variable?: { times: number[]; seek: { timeSec: number; leadSec: number } };
}

/** Seconds of packets read on each side of the range: more than any frame gap a real file has. */
const MARGIN_SEC = 1;

/**
 * The frames of `range` (seconds after the video stream's first frame). Constant-rate clips get the exact grid;
 * when the packets around the range are off the grid (variable rate, dropped or duplicated frames), the frames
 * whose own timestamps lie in [in, out).
 */
export async function selectFrames(info: MediaInfo, range: { in: number; out: number }): Promise<FrameSelection> {
  const grid = resolveRange(info, range);
  const frame = frameTime(1, info.video.fps);
  const end = Math.max(grid.outSec, range.out) + MARGIN_SEC;
  let times = await packetTimes(info, grid.inSec - MARGIN_SEC, end);
  // A seek can land late (MPEG-TS seeks by byte position), and the packets just after it can be incomplete: list
  // from the start when the listing does not reach back before the range.
  if (times && times.length && times[0] > range.in - 2 * frame && grid.inSec - MARGIN_SEC > 0)
    times = await packetTimes(info, 0, end);
  if (!times || times.length === 0) return grid;
  const near = times.filter((t) => t > range.in - 2 * frame && t < range.out + 2 * frame);
  if (onGrid(near, info)) return grid;
  return variableRange(info, range, times);
}

/**
 * Presentation times (after the stream's first frame, sorted) of the video packets between `fromSec` and `toSec`,
 * or null when the container does not time its packets (AVI, raw streams), where only the grid can be used.
 */
async function packetTimes(info: MediaInfo, fromSec: number, toSec: number): Promise<number[] | null> {
  const v = info.video;
  const clock = (t: number) => (v.startTimeSec + t).toFixed(6);
  const interval = `${fromSec > 0 ? clock(fromSec) : ''}%${clock(toSec)}`;
  const r = await run(
    ffprobePath(),
    [
      '-v',
      'error',
      ...LOCAL_INPUT,
      '-select_streams',
      String(v.index),
      '-show_entries',
      'packet=pts',
      '-read_intervals',
      interval,
      '-of',
      'csv=p=0',
      '--',
      info.path,
    ],
    info.path,
  );
  if (r.code !== 0) return null;
  const tb = rationalValue(v.timeBase);
  const out: number[] = [];
  for (const line of r.stdout.toString('utf8').split('\n')) {
    const text = line.trim().replace(/,+$/, '');
    if (text === '') continue;
    const pts = Number(text);
    if (!Number.isFinite(pts)) return null;
    out.push(pts * tb - v.startTimeSec);
  }
  // Two packets with one timestamp (a careless muxer) are still two frames the decoder delivers: kept, so the count
  // matches what ffmpeg hands over; the grid check then sees a slot taken twice.
  return out.sort((a, b) => a - b);
}

/** Every frame within a quarter frame of the grid, and no grid slot skipped or taken twice. */
function onGrid(times: number[], info: MediaInfo): boolean {
  const perSec = rationalValue(info.video.fps);
  let prev: number | undefined;
  for (const t of times) {
    const k = Math.round(t * perSec);
    if (Math.abs(t * perSec - k) > 0.25) return false;
    if (prev !== undefined && k !== prev + 1) return false;
    prev = k;
  }
  return true;
}

/** Tolerance for "lies in [in, out)": ffprobe times are exact, in/out come through float seconds. */
function tolerance(info: MediaInfo): number {
  return 2e-6 + frameTime(1e-6, info.video.fps);
}

function variableRange(info: MediaInfo, range: { in: number; out: number }, times: number[]): FrameSelection {
  const tol = tolerance(info);
  const first = times.findIndex((t) => t >= range.in - tol);
  const end = times.findIndex((t) => t >= range.out - tol);
  const last = end === -1 ? times.length : end;
  if (first === -1 || first >= last) {
    throw new MediaError(
      'bad-range',
      `Out must be at least a frame after In: no frame of this variable-frame-rate clip (${info.path}) starts between ${secondsToTimecode(range.in, info.video.fps)} and ${secondsToTimecode(range.out, info.video.fps)}. Widen the range.`,
      { file: info.path },
    );
  }
  const inSec = times[first];
  const selected = times.slice(first, last).map((t) => t - inSec);
  const gapBefore = first > 0 ? inSec - times[first - 1] : inSec;
  const outSec = end === -1 ? Math.min(range.out, info.durationSec) : times[end];
  return {
    startFrame: Math.round(inSec * rationalValue(info.video.fps)),
    frameCount: selected.length,
    inSec,
    outSec: Math.max(outSec, inSec + selected[selected.length - 1] + 1e-6),
    variable: {
      times: selected,
      seek: { timeSec: inSec, leadSec: Math.min(gapBefore, frameTime(1, info.video.fps)) / 2 },
    },
  };
}
