// Clips with known content for tests, the demo and benchmarks. Frames are drawn in JS and piped to ffmpeg
// rather than made by lavfi text sources: static ffmpeg builds often lack fonts, and pixels computed here can
// be checked exactly after decoding.

import { randomBytes } from 'node:crypto';
import { unlink } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import { ImageBatch } from '../diffusion/images';
import { ffmpegPath } from './binaries';
import { MediaError } from './errors';
import { probeMedia } from './probe';
import { lastLines, run, spawnFailure, start } from './process';
import { Rational, frameTime, rationalArg } from './rational';

export type TestClipContent = 'moving-square' | 'index-ramp';

export interface TestClipOptions {
  file: string;
  /** Coded (stored) size; a rotation of 90 or 270 makes the display size height×width. */
  width: number;
  height: number;
  fps: Rational;
  frames: number;
  /** Default h264 (use .mp4), prores (.mov, 422 HQ), ffv1 (.mkv, lossless). */
  codec?: 'h264' | 'prores' | 'ffv1';
  /** Default yuv420p for h264/ffv1, yuv422p10le for prores. */
  pixFmt?: string;
  /** Clockwise display rotation stored as metadata, as phones do. */
  rotation?: 0 | 90 | 180 | 270;
  /** A 440 Hz stereo tone for the clip's duration. */
  audio?: boolean;
  /** Default 'index-ramp'. */
  content?: TestClipContent;
}

/** index-ramp frames repeat their gray level every RAMP_PERIOD frames. */
export const RAMP_PERIOD = 28;

/** Gray level (0..255) of the flat area of index-ramp frame k: 16 + 8·(k mod 28), i.e. 16..232. */
export function rampLevel(k: number): number {
  return 16 + 8 * (((k % RAMP_PERIOD) + RAMP_PERIOD) % RAMP_PERIOD);
}

/** The red marker covering the top-left quarter (in each dimension) of every index-ramp frame, as stored. */
export const RAMP_MARKER = { widthFraction: 0.25, heightFraction: 0.25, rgb: [255, 0, 0] as const };

/** Mean of channel c over a small window at (fx, fy) (fractions of the frame), in 0..255. */
export function sampleRgb(batch: ImageBatch, frame: number, fx: number, fy: number): [number, number, number] {
  const { width: w, height: h } = batch;
  const hw = w * h;
  const cx = Math.min(w - 1, Math.floor(fx * w));
  const cy = Math.min(h - 1, Math.floor(fy * h));
  const r = Math.max(0, Math.min(2, Math.floor(Math.min(w, h) / 16)));
  const out: [number, number, number] = [0, 0, 0];
  for (let c = 0; c < 3; c++) {
    let sum = 0;
    let n = 0;
    for (let y = Math.max(0, cy - r); y <= Math.min(h - 1, cy + r); y++) {
      for (let x = Math.max(0, cx - r); x <= Math.min(w - 1, cx + r); x++) {
        sum += batch.data[frame * 3 * hw + c * hw + y * w + x];
        n++;
      }
    }
    out[c] = ((sum / n + 1) / 2) * 255;
  }
  return out;
}

/**
 * Which ramp index (mod 28) frame `frame` of a decoded index-ramp batch shows, read at the frame centre,
 * which the corner marker never reaches in any orientation. Throws if the level is not within ±3 of a ramp
 * level (then the frame is not an index-ramp frame, or the decode is wrong).
 */
export function rampIndex(batch: ImageBatch, frame: number): number {
  const [r, g, b] = sampleRgb(batch, frame, 0.5, 0.5);
  const level = (r + g + b) / 3;
  const k = Math.round((level - 16) / 8);
  if (k < 0 || k >= RAMP_PERIOD || Math.abs(level - rampLevel(k)) > 3) {
    throw new Error(
      `frame ${frame}: centre level ${level.toFixed(1)} (rgb ${r.toFixed(0)},${g.toFixed(0)},${b.toFixed(0)}) is not an index-ramp level`,
    );
  }
  return k || 0; // never -0
}

function drawFrame(k: number, frames: number, w: number, h: number, content: TestClipContent, out: Buffer): void {
  if (content === 'index-ramp') {
    out.fill(rampLevel(k));
    // Even-aligned so 4:2:0 chroma does not smear the marker into the flat area's chroma samples.
    const mw = Math.max(2, Math.floor((w * RAMP_MARKER.widthFraction) / 2) * 2);
    const mh = Math.max(2, Math.floor((h * RAMP_MARKER.heightFraction) / 2) * 2);
    for (let y = 0; y < mh; y++) {
      for (let x = 0; x < mw; x++) {
        const o = 3 * (y * w + x);
        out[o] = RAMP_MARKER.rgb[0];
        out[o + 1] = RAMP_MARKER.rgb[1];
        out[o + 2] = RAMP_MARKER.rgb[2];
      }
    }
    return;
  }
  const side = Math.max(2, Math.floor(Math.min(w, h) / 4));
  const travel = w - side;
  const x0 = frames > 1 ? Math.round((travel * k) / (frames - 1)) : 0;
  const y0 = Math.floor((h - side) / 2);
  for (let y = 0; y < h; y++) {
    const bg = 40 + Math.round((100 * y) / Math.max(1, h - 1));
    for (let x = 0; x < w; x++) {
      const o = 3 * (y * w + x);
      const inside = x >= x0 && x < x0 + side && y >= y0 && y < y0 + side;
      out[o] = inside ? 230 : 20;
      out[o + 1] = inside ? 120 : Math.round(bg / 2);
      out[o + 2] = inside ? 30 : bg;
    }
  }
}

const CODEC_ARGS: Record<NonNullable<TestClipOptions['codec']>, { args: string[]; pixFmt: string; audio: string[] }> = {
  h264: {
    args: ['-c:v', 'libx264', '-preset', 'veryfast', '-crf', '12', '-g', '12'],
    pixFmt: 'yuv420p',
    audio: ['-c:a', 'aac', '-b:a', '128k'],
  },
  prores: { args: ['-c:v', 'prores_ks', '-profile:v', '3'], pixFmt: 'yuv422p10le', audio: ['-c:a', 'pcm_s16le'] },
  ffv1: { args: ['-c:v', 'ffv1'], pixFmt: 'yuv420p', audio: ['-c:a', 'pcm_s16le'] },
};

async function setRotation(ffmpeg: string, src: string, dst: string, tagValue: number): Promise<void> {
  const r = await run(ffmpeg, [
    '-nostdin',
    '-hide_banner',
    '-v',
    'error',
    '-y',
    '-i',
    src,
    '-map',
    '0',
    '-c',
    'copy',
    '-metadata:s:v:0',
    `rotate=${tagValue}`,
    dst,
  ]);
  if (r.code !== 0)
    throw new MediaError('ffmpeg-failed', `ffmpeg could not set the rotation of ${dst} (${lastLines(r.stderr)}).`, {
      file: dst,
    });
}

/** Write a synthetic clip (see TestClipOptions). Overwrites `file`. */
export async function makeTestClip(opts: TestClipOptions): Promise<void> {
  const { width: w, height: h, frames, fps } = opts;
  for (const [k, v] of [
    ['width', w],
    ['height', h],
    ['frames', frames],
    ['fps.num', fps.num],
    ['fps.den', fps.den],
  ] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`makeTestClip: ${k} must be a positive integer, got ${v}`);
  }
  const codec = opts.codec ?? 'h264';
  const spec = CODEC_ARGS[codec];
  const content = opts.content ?? 'index-ramp';
  const rotation = opts.rotation ?? 0;
  const ffmpeg = ffmpegPath();
  const ext = extname(opts.file);
  const encoded = rotation
    ? join(dirname(opts.file), `.${basename(opts.file, ext)}.norot-${randomBytes(4).toString('hex')}${ext}`)
    : opts.file;

  const args = [
    '-nostdin',
    '-hide_banner',
    '-v',
    'error',
    '-y',
    '-f',
    'rawvideo',
    '-pix_fmt',
    'rgb24',
    '-s',
    `${w}x${h}`,
    '-r',
    rationalArg(fps),
    '-i',
    'pipe:0',
  ];
  if (opts.audio) {
    args.push(
      '-f',
      'lavfi',
      '-i',
      `sine=frequency=440:sample_rate=48000:duration=${frameTime(frames, fps).toFixed(6)}`,
    );
  }
  args.push('-map', '0:v:0');
  if (opts.audio) args.push('-map', '1:a:0', '-ac', '2', ...spec.audio);
  args.push(...spec.args, '-pix_fmt', opts.pixFmt ?? spec.pixFmt, encoded);

  const ff = start(ffmpeg, args);
  const frame = Buffer.alloc(w * h * 3);
  try {
    for (let k = 0; k < frames && !ff.done; k++) {
      drawFrame(k, frames, w, h, content, frame);
      if (!ff.proc.stdin.write(Buffer.from(frame))) {
        await Promise.race([new Promise((res) => ff.proc.stdin.once('drain', res)), ff.exited]);
      }
    }
    ff.proc.stdin.end();
    const exit = await ff.exited;
    if (exit.spawnError) throw spawnFailure(ffmpeg, exit.spawnError);
    if (exit.code !== 0)
      throw new MediaError(
        'ffmpeg-failed',
        `ffmpeg could not write the test clip ${encoded} (${lastLines(ff.stderrTail())}).`,
        { file: encoded },
      );
  } finally {
    await ff.kill();
  }
  if (!rotation) return;

  // ffmpeg 4.1's mov muxer drops the rotate tag when it encodes, and writes the display matrix turned the
  // other way when it stream-copies (its own demuxer and ffprobe read rotate=90 back as 270). So remux with
  // the compensated value, check with ffprobe, and fall back to the literal value for builds that do not
  // have that bug.
  try {
    for (const tagValue of [(360 - rotation) % 360, rotation]) {
      await setRotation(ffmpeg, encoded, opts.file, tagValue);
      if ((await probeMedia(opts.file)).video.rotation === rotation) return;
    }
    throw new MediaError(
      'ffmpeg-failed',
      `Could not store a ${rotation}° rotation in ${opts.file} with the ffmpeg at ${ffmpeg}.`,
      { file: opts.file },
    );
  } finally {
    await unlink(encoded).catch(() => undefined);
  }
}
