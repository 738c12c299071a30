// Seconds from Premiere -> frame numbers. Premiere computes in/out from frame numbers at 30000/1001, so an in
// point of exactly 10·1001/30000 s must mean frame 10, not 11: the comparison carries a tolerance of a
// millionth of a frame, far below any real timing difference and far above float rounding.

import { secondsToTimecode } from '../api/timecode';
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
  // In the editor's words: In and Out, times as Premiere shows them, the clip by its name. The field the message is
  // about (source.in / source.out) travels beside it in the problem document, for pinning it to the form.
  const bad = (why: string) => new MediaError('bad-range', why, { file });
  const name = basename(file);
  const tc = (t: number) => secondsToTimecode(t, fps);
  if (
    typeof range?.in !== 'number' ||
    typeof range?.out !== 'number' ||
    !Number.isFinite(range.in) ||
    !Number.isFinite(range.out)
  ) {
    return fail(bad(`In and Out of ${name} must be times from the start of the clip, in seconds.`));
  }
  const frameDur = frameTime(1, fps);
  const duration = frameTime(total, fps);
  const length = `${tc(duration)}, ${total} frames`;
  if (range.in < 0)
    return fail(bad(`In is before the start of ${name}; In and Out count from its first frame (${tc(0)}).`));
  if (range.out <= range.in)
    return fail(bad(`Out (${tc(range.out)}) must come after In (${tc(range.in)}) on ${name}.`));
  if (range.in >= duration - frameDur * EPS_FRAMES) {
    return fail(
      bad(`In (${tc(range.in)}) is at or past the end of ${name} (${length}); choose an In before ${tc(duration)}.`),
    );
  }
  if (range.out > duration + frameDur * (1 + EPS_FRAMES)) {
    return fail(
      bad(
        `Out is past the end of ${name} (${length}); choose an Out at or before ${tc(duration)}, or leave it blank for the end.`,
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
        `Out must be at least a frame after In: no frame of ${name} starts between ${tc(range.in)} and ${tc(range.out)} (frames are ${sec(frameDur)} apart at ${formatFps(fps)}). Widen the range to at least one frame.`,
      ),
    );
  }
  return { startFrame, frameCount, inSec: frameTime(startFrame, fps), outSec: frameTime(endFrame, fps) };
}

/** The last part of a path, whichever separator the engine's platform or the client used. */
function basename(p: string): string {
  return p.split(/[\\/]/).filter(Boolean).pop() ?? p;
}

function fail(e: MediaError): never {
  throw e;
}
