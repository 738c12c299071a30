// Seconds from Premiere -> frame numbers. Premiere computes in/out from frame numbers at 30000/1001, so an in
// point of exactly 10·1001/30000 s must mean frame 10, not 11: the comparison carries a tolerance of a
// millionth of a frame, far below any real timing difference and far above float rounding.

import { MediaError } from './errors';
import type { MediaInfo } from './probe';
import { Rational, formatFps, frameTime } from './rational';

export interface FrameRange {
  /** First frame of the range (0 = first frame of the media). */
  startFrame: number;
  frameCount: number;
  /** Presentation time of startFrame: the requested in point snapped forward to a frame. */
  inSec: number;
  /** Time just after the last frame: inSec + frameCount·den/num, the length of the rendered result. */
  outSec: number;
}

export interface RangeSource {
  path: string;
  video: { fps: Rational; frameCount: number };
}

const EPS_FRAMES = 1e-6;

function sec(t: number): string {
  return `${Number(t.toFixed(3))} s`;
}

/**
 * The frames whose presentation time t (frame k at k·den/num, relative to the media start) satisfies
 * in ≤ t < out. The out point may exceed the media by up to one frame, since hosts often send the end of the
 * last frame rather than its start.
 */
export function resolveRange(info: RangeSource | MediaInfo, range: { in: number; out: number }): FrameRange {
  const { fps, frameCount: total } = info.video;
  const file = info.path;
  const bad = (why: string) => new MediaError('bad-range', `Range ${describe(range)} of ${file}: ${why}`, { file });
  if (
    typeof range?.in !== 'number' ||
    typeof range?.out !== 'number' ||
    !Number.isFinite(range.in) ||
    !Number.isFinite(range.out)
  ) {
    return fail(bad('in and out must be finite numbers of seconds from the start of the media.'));
  }
  const frameDur = frameTime(1, fps);
  const duration = frameTime(total, fps);
  if (range.in < 0)
    return fail(bad('the in point is negative; in and out are seconds from the start of the media (0 = first frame).'));
  if (range.out <= range.in) return fail(bad('the out point must come after the in point.'));
  if (range.in >= duration - frameDur * EPS_FRAMES) {
    return fail(
      bad(
        `the in point is at or past the end of the media (${total} frames, ${sec(duration)}). Choose an in point before ${sec(duration)}.`,
      ),
    );
  }
  if (range.out > duration + frameDur * (1 + EPS_FRAMES)) {
    return fail(
      bad(
        `the out point is past the end of the media (${total} frames, ${sec(duration)}). Choose an out point at or before ${sec(duration)}.`,
      ),
    );
  }
  const perSec = fps.num / fps.den;
  const startFrame = Math.max(0, Math.ceil(range.in * perSec - EPS_FRAMES));
  const endFrame = Math.min(total, Math.ceil(range.out * perSec - EPS_FRAMES));
  const frameCount = endFrame - startFrame;
  if (frameCount <= 0) {
    return fail(
      bad(
        `no frame starts inside it (frames are ${sec(frameDur)} apart at ${formatFps(fps)}). Widen the range to at least one frame.`,
      ),
    );
  }
  return { startFrame, frameCount, inSec: frameTime(startFrame, fps), outSec: frameTime(endFrame, fps) };
}

function describe(range: { in: number; out: number } | undefined): string {
  return `[${String(range?.in)}, ${String(range?.out)}) s`;
}

function fail(e: MediaError): never {
  throw e;
}
