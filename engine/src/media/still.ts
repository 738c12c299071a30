// A poster frame for the panel and the web UI: one frame as PNG, in the orientation the editor sees.

import { encodePng } from './png';
import { decodeRaw, frameSeek, scaleFilter } from './decode';
import { MediaError } from './errors';
import { probeMedia } from './probe';
import { frameTime } from './rational';

/**
 * PNG bytes of the frame shown at `timeSec` (seconds from the media start): the last frame that starts at or
 * before that time. Scaled down, keeping the aspect ratio, when the display width exceeds maxWidth.
 */
export async function extractStill(file: string, timeSec: number, maxWidth?: number): Promise<Buffer> {
  const info = await probeMedia(file);
  const v = info.video;
  const end = frameTime(v.frameCount, v.fps);
  if (!Number.isFinite(timeSec) || timeSec < 0 || timeSec >= end) {
    throw new MediaError(
      'bad-range',
      `Cannot take a still of ${file} at ${timeSec} s: the time must lie in [0, ${Number(end.toFixed(3))}) s, the length of the clip.`,
      { file },
    );
  }
  if (maxWidth !== undefined && !(Number.isInteger(maxWidth) && maxWidth >= 1)) {
    throw new RangeError(`extractStill: maxWidth must be a positive integer, got ${maxWidth}`);
  }
  const frame = Math.min(v.frameCount - 1, Math.floor((timeSec * v.fps.num) / v.fps.den + 1e-6));
  let width = v.displayWidth;
  let height = v.displayHeight;
  if (maxWidth !== undefined && width > maxWidth) {
    height = Math.max(1, Math.round((height * maxWidth) / width));
    width = maxWidth;
  }
  const { inputArgs, select } = frameSeek(file, v, frame);
  const chunks = decodeRaw({
    file,
    inputArgs,
    frames: 1,
    chunkFrames: 1,
    filters: select + scaleFilter(width, height, v.colorMatrix),
    pixFmt: 'rgb24',
    frameBytes: width * height * 3,
    what: `frame ${frame}`,
  });
  for await (const c of chunks) return encodePng(c.data, width, height, 3);
  throw new MediaError('not-media', `No frame could be read from ${file} at ${timeSec} s; the file may be damaged.`, {
    file,
  });
}
