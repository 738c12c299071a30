// User mattes: where the edit may change the picture. Editors bring them as a drawn box, a PNG still, a matte
// clip rendered from their compositor, or a PNG sequence. Every file form goes through ffmpeg as gray+alpha
// (ya8), so 16-bit, palette, JPEG or ProRes 4444 mattes need no extra decoder. Alpha is the matte when the
// file carries a non-trivial alpha channel (compositors export mattes as alpha); otherwise luma is.

import { readdir, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { MaskBatch } from '../diffusion/images';
import { decodeRaw, frameSeek } from './decode';
import { MediaError, isMediaError } from './errors';
import { checkInputFile, ffprobeJson, probeMedia, MediaInfo } from './probe';
import { Rational, formatFps, rationalArg, rationalEquals } from './rational';

export type MaskSpec =
  | {
      kind: 'box';
      /** Normalised 0..1, top-left origin, in display orientation. */ x: number;
      y: number;
      w: number;
      h: number;
    }
  | { kind: 'file'; path: string };

export interface MaskTarget {
  frames: number;
  width: number;
  height: number;
  /** First frame of the range in the clip; matte videos and sequences are read from the same frame number. */
  startFrame: number;
  fps: Rational;
  /**
   * The clip's display size (what the editor sees, what a compositor exports mattes at). A matte is checked against
   * this aspect, not the working size's: the working size rounds to the model's multiple (640x360 is edited at
   * 224x128), and the matte is resampled to it exactly as the frames are. Without it, width×height is used.
   */
  sourceWidth?: number;
  sourceHeight?: number;
}

const ASPECT_TOLERANCE = 0.01;

function emptyMask(t: MaskTarget): MaskBatch {
  return { n: t.frames, height: t.height, width: t.width, data: new Float32Array(t.frames * t.height * t.width) };
}

function boxMask(spec: { x: number; y: number; w: number; h: number }, t: MaskTarget): MaskBatch {
  const { x, y, w, h } = spec;
  const tol = 1e-6;
  if (![x, y, w, h].every((v) => typeof v === 'number' && Number.isFinite(v))) {
    throw new MediaError(
      'bad-mask',
      `Box matte ${JSON.stringify(spec)}: x, y, w and h must be numbers (fractions 0..1 of the frame).`,
    );
  }
  if (x < -tol || y < -tol || w <= 0 || h <= 0 || x + w > 1 + tol || y + h > 1 + tol) {
    throw new MediaError(
      'bad-mask',
      `Box matte x=${x} y=${y} w=${w} h=${h} does not lie inside the frame: use fractions with x, y ≥ 0, w, h > 0, x + w ≤ 1 and y + h ≤ 1.`,
    );
  }
  const mask = emptyMask(t);
  const hw = t.width * t.height;
  const plane = mask.data.subarray(0, hw);
  let covered = 0;
  // A pixel is inside when its centre is: a box drawn on the full-size frame then covers the same area at
  // any working size.
  for (let r = 0; r < t.height; r++) {
    const cy = (r + 0.5) / t.height;
    if (cy < y || cy >= y + h) continue;
    for (let c = 0; c < t.width; c++) {
      const cx = (c + 0.5) / t.width;
      if (cx >= x && cx < x + w) {
        plane[r * t.width + c] = 1;
        covered++;
      }
    }
  }
  if (covered === 0) {
    throw new MediaError(
      'bad-mask',
      `Box matte x=${x} y=${y} w=${w} h=${h} covers no pixel at ${t.width}x${t.height}; draw a larger box.`,
    );
  }
  for (let f = 1; f < t.frames; f++) mask.data.set(plane, f * hw);
  return mask;
}

function checkAspect(file: string, mw: number, mh: number, t: MaskTarget): void {
  const ma = mw / mh;
  const source = t.sourceWidth !== undefined && t.sourceHeight !== undefined && t.sourceWidth > 0 && t.sourceHeight > 0;
  const [tw, th] = source ? [t.sourceWidth!, t.sourceHeight!] : [t.width, t.height];
  const ta = tw / th;
  if (Math.abs(ma / ta - 1) > ASPECT_TOLERANCE) {
    throw new MediaError(
      'bad-mask',
      `The matte ${file} is ${mw}x${mh} (aspect ${ma.toFixed(3)}) but the clip ${source ? 'is' : 'is processed at'} ${tw}x${th} ` +
        `(aspect ${ta.toFixed(3)}). Export the matte at the clip's frame size${source ? ` (${tw}x${th}) or at the same aspect ratio` : ''}.`,
      { file },
    );
  }
}

function scaleFlags(mw: number, mh: number, t: MaskTarget): string {
  // Area averaging when shrinking keeps thin matte edges as partial coverage instead of aliasing them away.
  return mw * mh > t.width * t.height ? 'area' : 'bilinear';
}

/** ya8 frames -> [0, 1] mattes, from alpha if any alpha sample is below 255, else from luma. */
function toMask(raw: Buffer, frames: number, t: MaskTarget): MaskBatch {
  const hw = t.width * t.height;
  let useAlpha = false;
  for (let i = 1; i < raw.length; i += 2) {
    if (raw[i] !== 255) {
      useAlpha = true;
      break;
    }
  }
  const mask = emptyMask({ ...t, frames });
  const off = useAlpha ? 1 : 0;
  for (let p = 0; p < frames * hw; p++) mask.data[p] = raw[2 * p + off] / 255;
  return mask;
}

async function readYa8(
  file: string,
  input: { inputArgs: string[]; select?: string },
  frames: number,
  mw: number,
  mh: number,
  t: MaskTarget,
  what: string,
): Promise<Buffer> {
  const frameBytes = t.width * t.height * 2;
  const parts: Buffer[] = [];
  for await (const c of decodeRaw({
    file,
    inputArgs: input.inputArgs,
    frames,
    chunkFrames: 16,
    filters: `${input.select ?? ''}scale=${t.width}:${t.height}:flags=${scaleFlags(mw, mh, t)}`,
    pixFmt: 'ya8',
    frameBytes,
    what,
  })) {
    parts.push(c.data);
  }
  return Buffer.concat(parts);
}

function replicate(one: MaskBatch, frames: number): MaskBatch {
  const hw = one.width * one.height;
  const data = new Float32Array(frames * hw);
  for (let f = 0; f < frames; f++) data.set(one.data.subarray(0, hw), f * hw);
  return { n: frames, height: one.height, width: one.width, data };
}

const PATTERN = /%(0?\d*)d/;

const REASONS: Record<string, string> = {
  'not-media': 'ffmpeg does not recognise its contents',
  'no-video': 'it holds no picture',
  'unsupported-codec': 'this ffmpeg cannot decode its codec',
};

function notReadable(file: string, why: string): MediaError {
  return new MediaError(
    'bad-mask',
    `The matte ${file} is not an image or video ffmpeg can read (${why}). Export it as PNG (white or opaque = edit here) or as a matte clip.`,
    { file },
  );
}

async function stillMask(file: string, t: MaskTarget, checkOnly: boolean): Promise<MaskBatch | undefined> {
  const json = await ffprobeJson(file);
  const s = (json.streams ?? []).find((x) => x.codec_type === 'video');
  if (!s?.width || !s.height) throw notReadable(file, 'no picture in it');
  checkAspect(file, s.width, s.height, t);
  if (checkOnly) return undefined;
  const raw = await readYa8(file, { inputArgs: ['-i', file] }, 1, s.width, s.height, t, 'the image');
  return replicate(toMask(raw, 1, t), t.frames);
}

async function videoMask(
  file: string,
  info: MediaInfo,
  t: MaskTarget,
  checkOnly: boolean,
): Promise<MaskBatch | undefined> {
  const v = info.video;
  checkAspect(file, v.displayWidth, v.displayHeight, t);
  if (!rationalEquals(v.fps, t.fps)) {
    throw new MediaError(
      'bad-mask',
      `The matte clip ${file} runs at ${formatFps(v.fps)} but the clip at ${formatFps(t.fps)}, so its frames would not line up. Render the matte at the clip's frame rate.`,
      { file },
    );
  }
  const last = t.startFrame + t.frames - 1;
  if (v.frameCount <= last) {
    throw new MediaError(
      'bad-mask',
      `The matte clip ${file} has ${v.frameCount} frames but the range needs frames ${t.startFrame}..${last}. Render the matte for the whole clip (or at least up to frame ${last}).`,
      { file },
    );
  }
  if (checkOnly) return undefined;
  const raw = await readYa8(
    file,
    frameSeek(file, v, t.startFrame),
    t.frames,
    v.displayWidth,
    v.displayHeight,
    t,
    `frames ${t.startFrame}..${last}`,
  );
  return toMask(raw, t.frames, t);
}

function formatIndex(spec: string, n: number): string {
  const width = spec === '' ? 0 : Number(spec);
  return String(n).padStart(width, spec.startsWith('0') ? '0' : ' ');
}

async function sequenceMask(pattern: string, t: MaskTarget, checkOnly: boolean): Promise<MaskBatch | undefined> {
  const dir = dirname(pattern);
  const base = basename(pattern);
  const m = PATTERN.exec(base);
  if (!m) throw notReadable(pattern, 'no %d in the pattern');
  const [prefix, suffix] = [base.slice(0, m.index), base.slice(m.index + m[0].length)];
  let names: string[];
  try {
    if (!(await stat(dir)).isDirectory()) throw new Error('not a folder');
    names = await readdir(dir);
  } catch {
    throw new MediaError(
      'not-found',
      `The folder ${dir} of the matte sequence ${pattern} does not exist. Check the path.`,
      { file: pattern },
    );
  }
  const indices = new Set<number>();
  for (const name of names) {
    if (!name.startsWith(prefix) || !name.endsWith(suffix) || name.length <= prefix.length + suffix.length) continue;
    const digits = name.slice(prefix.length, name.length - suffix.length);
    if (!/^\d+$/.test(digits)) continue;
    const n = Number(digits);
    if (formatIndex(m[1], n) === digits) indices.add(n);
  }
  if (indices.size === 0) {
    throw new MediaError(
      'bad-mask',
      `No files in ${dir} match the matte sequence pattern ${base}. Check the name and the number of digits.`,
      { file: pattern },
    );
  }
  // The sequence's first image is the clip's first frame, whatever number the compositor started counting at.
  const first = Math.min(...indices);
  const from = first + t.startFrame;
  for (let i = 0; i < t.frames; i++) {
    if (!indices.has(from + i)) {
      const missing = join(dir, prefix + formatIndex(m[1], from + i) + suffix);
      throw new MediaError(
        'bad-mask',
        `The matte sequence ${pattern} has no image for clip frame ${t.startFrame + i} (${missing} is missing; the sequence starts at ${first} and has ${indices.size} images). Render the matte for the whole clip.`,
        { file: pattern },
      );
    }
  }
  const firstFile = join(dir, prefix + formatIndex(m[1], from) + suffix);
  let json;
  try {
    json = await ffprobeJson(firstFile);
  } catch (e) {
    throw isMediaError(e, 'not-media') ? notReadable(firstFile, e.message) : e;
  }
  const s = (json.streams ?? []).find((x) => x.codec_type === 'video');
  if (!s?.width || !s.height) throw notReadable(firstFile, 'no picture in it');
  checkAspect(firstFile, s.width, s.height, t);
  if (checkOnly) return undefined;
  const raw = await readYa8(
    pattern,
    { inputArgs: ['-f', 'image2', '-start_number', String(from), '-framerate', rationalArg(t.fps), '-i', pattern] },
    t.frames,
    s.width,
    s.height,
    t,
    `images ${from}..${from + t.frames - 1}`,
  );
  return toMask(raw, t.frames, t);
}

/**
 * The matte for `target.frames` frames starting at `target.startFrame`, at target.width×target.height, values
 * in [0, 1] (1 = edit here). A still applies to every frame; matte clips and sequences supply one matte per
 * frame, read from the same frame numbers as the clip (a sequence's first image is clip frame 0).
 */
export async function loadMask(spec: MaskSpec, target: MaskTarget): Promise<MaskBatch> {
  return (await inspectMask(spec, target, false))!;
}

/**
 * Everything loadMask would refuse (missing or unreadable file, wrong aspect, frame rate or length), found by probing
 * alone: cheap enough to run when a job is submitted, so a bad matte is a 422 then instead of a failed job later.
 */
export async function checkMask(spec: MaskSpec, target: MaskTarget): Promise<void> {
  await inspectMask(spec, target, true);
}

async function inspectMask(spec: MaskSpec, target: MaskTarget, checkOnly: boolean): Promise<MaskBatch | undefined> {
  for (const [k, v] of [
    ['frames', target.frames],
    ['width', target.width],
    ['height', target.height],
  ] as const) {
    if (!Number.isInteger(v) || v < 1)
      throw new RangeError(`loadMask: target.${k} must be a positive integer, got ${v}`);
  }
  if (!Number.isInteger(target.startFrame) || target.startFrame < 0)
    throw new RangeError(`loadMask: target.startFrame must be an integer ≥ 0, got ${target.startFrame}`);
  if (spec.kind === 'box') {
    // One frame proves the box; the full stack is frames × pixels of floats, only worth building to use it.
    if (checkOnly) return void boxMask(spec, { ...target, frames: 1 });
    return boxMask(spec, target);
  }
  if (spec.kind !== 'file' || typeof spec.path !== 'string' || spec.path === '') {
    throw new MediaError(
      'bad-mask',
      `Unknown matte ${JSON.stringify(spec)}: use { kind: 'box', x, y, w, h } or { kind: 'file', path }.`,
    );
  }
  const file = spec.path;
  if (PATTERN.test(basename(file))) return sequenceMask(file, target, checkOnly);
  try {
    await checkInputFile(file);
  } catch (e) {
    if (isMediaError(e, 'not-media')) throw notReadable(file, 'the file is empty');
    throw e;
  }
  let info: MediaInfo;
  try {
    info = await probeMedia(file);
  } catch (e) {
    if (isMediaError(e, 'still-image')) return stillMask(file, target, checkOnly);
    const passOn = ['ffmpeg-missing', 'not-found', 'not-a-file', 'not-local'];
    if (isMediaError(e) && passOn.includes(e.code)) throw e;
    throw notReadable(file, REASONS[isMediaError(e) ? e.code : ''] ?? String(e));
  }
  return videoMask(file, info, target, checkOnly);
}
