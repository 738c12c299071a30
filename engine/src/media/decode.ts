// Frames out of a media file as planar float batches, a chunk at a time. ffmpeg writes raw frames to a pipe;
// the generator pulls from that pipe only when its consumer asks for the next chunk, so a paused consumer
// stops ffmpeg through pipe backpressure and memory stays at one chunk whatever the clip length.

import { ImageBatch, fromRgb24, imageBatch } from '../diffusion/images';
import { ffmpegPath } from './binaries';
import { MediaError } from './errors';
import { LOCAL_INPUT } from './local-input';
import { mediaFaults, pause } from './faults';
import { checkInputFile, ColorMatrix } from './probe';
import { lastLines, spawnFailure, start } from './process';
import { Rational, frameTime } from './rational';

export interface DecodeOptions {
  /** First frame to decode (frame k is at k·den/num s from the media start). */
  startFrame: number;
  frameCount: number;
  /** The media's frame rate, as probed; used to turn frame numbers into seek times. */
  fps: Rational;
  /** Where the video stream's first frame sits on the container's clock (`video.originSec`); default 0. */
  originSec?: number;
  /**
   * Variable frame rate: the first frame's time after the stream's first frame and how far before it to seek
   * (less than the gap to the frame before); replaces startFrame/fps for the seek.
   */
  seek?: { timeSec: number; leadSec: number };
  /** The container seeks by byte position (MPEG-TS, MPEG-PS: `video.byteSeeking`); needs streamStartSec. */
  byteSeeking?: boolean;
  /** The video stream's first presentation time on the container's clock (`video.startTimeSec`). */
  streamStartSec?: number;
  /** Output size, in display orientation (after the file's rotation is applied). */
  width: number;
  height: number;
  /** At most this many frames per yielded batch. */
  chunkFrames: number;
  /** 16 decodes through rgb48le, keeping 10/12-bit sources' precision; default 8 (rgb24). */
  bitDepth?: 8 | 16;
  /** YUV->RGB matrix; pass the probed `video.colorMatrix` (default bt709) so the encoder can invert it exactly. */
  colorMatrix?: ColorMatrix;
  /** Aborting it stops the decode at once (a canceled job), even while ffmpeg is stalled. */
  signal?: AbortSignal;
}

export interface RawDecodeOptions {
  /** Names the source in error messages. */
  file: string;
  /** Everything up to and including `-i input`. */
  inputArgs: string[];
  frames: number;
  chunkFrames: number;
  /** The -vf chain (scaling to the output size). */
  filters: string;
  pixFmt: string;
  frameBytes: number;
  /** E.g. "frames 10..19", for error messages. */
  what: string;
  /** Stops ffmpeg at once (a cancel), whatever it is waiting on; the generator then throws. */
  signal?: AbortSignal;
}

export interface RawChunk {
  data: Buffer;
  frames: number;
}

function positiveInt(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
    throw new RangeError(`decode: ${name} must be a positive integer, got ${String(v)}`);
  return v;
}

/** How long a decode may wait for ffmpeg's next bytes before it is taken for stalled: RESHOOT_MEDIA_STALL_MS, or 60 s. */
function stallMs(): number {
  const v = Number(process.env.RESHOOT_MEDIA_STALL_MS);
  return Number.isFinite(v) && v > 0 ? v : 60_000;
}

async function untilStalledOrAborted<T>(
  p: Promise<T>,
  ms: number,
  signal?: AbortSignal,
): Promise<T | 'stalled' | 'aborted'> {
  // Left pending when the decode stops; its later failure (the pipe destroyed) must not count as unhandled.
  p.catch(() => undefined);
  if (signal?.aborted) return 'aborted';
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<'stalled'>((resolve) => (timer = setTimeout(() => resolve('stalled'), ms))),
      new Promise<'aborted'>((resolve) => {
        onAbort = () => resolve('aborted');
        signal?.addEventListener('abort', onAbort, { once: true });
      }),
    ]);
  } finally {
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener('abort', onAbort);
  }
}

/**
 * Exactly `frames` raw frames from an ffmpeg input, `chunkFrames` at a time. Throws 'not-media' with the number
 * of frames that could be read when the input ends early (truncated or damaged file); ffmpeg is killed
 * whenever the consumer stops early.
 */
export async function* decodeRaw(opts: RawDecodeOptions): AsyncGenerator<RawChunk, void, undefined> {
  const ffmpeg = ffmpegPath();
  const args = [
    '-nostdin',
    '-hide_banner',
    '-v',
    'error',
    ...LOCAL_INPUT,
    ...opts.inputArgs,
    '-map',
    '0:v:0',
    '-an',
    '-sn',
    '-dn',
    // Passthrough: each decoded frame exactly once. The default (cfr for rawvideo) duplicates or drops frames
    // whenever timestamps sit off the nominal grid, which breaks the frame count the caller relies on.
    '-vsync',
    'passthrough',
    '-frames:v',
    String(opts.frames),
    '-vf',
    opts.filters,
    '-f',
    'rawvideo',
    '-pix_fmt',
    opts.pixFmt,
    'pipe:1',
  ];
  const ff = start(ffmpeg, args);
  ff.proc.stdin.end();
  let delivered = 0;
  let chunk: Buffer | null = null;
  let filled = 0;
  let need = 0;
  try {
    const pieces = (ff.proc.stdout as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    for (;;) {
      // Only while waiting for ffmpeg: a consumer that is slow to ask for the next chunk pauses ffmpeg, not this.
      const next = await untilStalledOrAborted(pieces.next(), stallMs(), opts.signal);
      if (next === 'aborted' || next === 'stalled') {
        await ff.kill();
        if (next === 'aborted')
          throw new MediaError('ffmpeg-failed', `Decoding ${opts.what} of ${opts.file} was stopped.`, {
            file: opts.file,
          });
        throw new MediaError(
          'ffmpeg-failed',
          `${opts.file} stopped delivering frames: nothing for ${stallMs() / 1000} s while decoding ${opts.what}. The file may sit on a drive that is not answering (a network share, a stalled sync); copy it to a local drive and try again.`,
          { file: opts.file },
        );
      }
      if (next.done) break;
      const piece = next.value;
      let off = 0;
      while (off < piece.length && delivered < opts.frames) {
        if (!chunk) {
          const n = Math.min(opts.chunkFrames, opts.frames - delivered);
          need = n * opts.frameBytes;
          chunk = Buffer.allocUnsafe(need);
          filled = 0;
        }
        const take = Math.min(need - filled, piece.length - off);
        piece.copy(chunk, filled, off, off + take);
        filled += take;
        off += take;
        if (filled === need) {
          const frames = need / opts.frameBytes;
          const data = chunk;
          chunk = null;
          delivered += frames;
          yield { data, frames };
        }
      }
    }
    const exit = await ff.exited;
    if (exit.spawnError) throw spawnFailure(ffmpeg, exit.spawnError);
    if (delivered < opts.frames) {
      const readable = delivered + Math.floor(filled / opts.frameBytes);
      const why = lastLines(ff.stderrTail());
      if (readable === 0 && exit.code !== 0) {
        throw new MediaError(
          'ffmpeg-failed',
          `ffmpeg could not decode ${opts.what} of ${opts.file}${why ? ` (${why})` : ''}. The file may be damaged; re-export it or try another ffmpeg via FFMPEG_PATH.`,
          { file: opts.file },
        );
      }
      throw new MediaError(
        'not-media',
        `${opts.file} ended early: only ${readable} of the ${opts.frames} requested frames (${opts.what}) could be read. ` +
          `The file is probably truncated or damaged (an interrupted copy or export); re-copy or re-export it.`,
        { file: opts.file },
      );
    }
  } finally {
    if (!ff.done) await ff.kill();
  }
}

/** -ss for the frame at `timeSec` after the stream's first frame, `leadSec` early (less than the gap to the frame before). */
function seekToArgs(timeSec: number, originSec: number, leadSec: number): string[] {
  const t = originSec + timeSec - leadSec;
  if (timeSec <= 0 || t <= 0) return [];
  return ['-ss', t.toFixed(6)];
}

/** Scale filter producing exactly width×height RGB with an explicit YUV matrix. */
export function scaleFilter(width: number, height: number, colorMatrix: ColorMatrix = 'bt709'): string {
  return `scale=${width}:${height}:flags=bicubic+accurate_rnd+full_chroma_int:in_color_matrix=${colorMatrix}`;
}

function fromRgb48(bytes: Buffer, n: number, height: number, width: number): ImageBatch {
  const hw = height * width;
  const out = imageBatch(n, height, width);
  const scale = 2 / 65535;
  for (let f = 0; f < n; f++) {
    const src = f * hw * 6;
    const dst = f * 3 * hw;
    for (let p = 0; p < hw; p++) {
      const o = src + 6 * p;
      out.data[dst + p] = bytes.readUInt16LE(o) * scale - 1;
      out.data[dst + hw + p] = bytes.readUInt16LE(o + 2) * scale - 1;
      out.data[dst + 2 * hw + p] = bytes.readUInt16LE(o + 4) * scale - 1;
    }
  }
  return out;
}

/**
 * Frames [startFrame, startFrame + frameCount) of `file`, scaled to width×height in display orientation,
 * as batches of at most chunkFrames frames. Seeks with -ss before -i (ffmpeg then decodes from the previous
 * keyframe and discards up to the target, which is frame-accurate for constant-rate files).
 */
export async function* decodeFrames(file: string, opts: DecodeOptions): AsyncGenerator<ImageBatch, void, undefined> {
  const { width, height } = opts;
  const deep = opts.bitDepth === 16;
  for await (const c of decodeFrameBytes(file, opts)) {
    yield deep ? fromRgb48(c.data, c.frames, height, width) : fromRgb24(c.data, c.frames, height, width);
  }
}

/**
 * The frames decodeFrames selects, as packed bytes instead of floats: rgb24, or rgb48le (`bitDepth` 16). The
 * full-size decode the job streams beside the working-size one (jobs/full-res.ts) composites in these bytes.
 */
export async function* decodeFrameBytes(file: string, opts: DecodeOptions): AsyncGenerator<RawChunk, void, undefined> {
  if (!Number.isInteger(opts.startFrame) || opts.startFrame < 0)
    throw new RangeError(`decode: startFrame must be an integer ≥ 0, got ${opts.startFrame}`);
  const frames = positiveInt('frameCount', opts.frameCount);
  const width = positiveInt('width', opts.width);
  const height = positiveInt('height', opts.height);
  const chunkFrames = positiveInt('chunkFrames', opts.chunkFrames);
  if (!(opts.fps?.num > 0 && opts.fps?.den > 0))
    throw new RangeError(`decode: fps must be a positive rational, got ${JSON.stringify(opts.fps)}`);
  const deep = opts.bitDepth === 16;
  await checkInputFile(file);
  const { inputArgs, select } = rangeInput(file, opts);
  const slowMs = mediaFaults().slowDecodeMs;
  for await (const c of decodeRaw({
    file,
    inputArgs,
    frames,
    chunkFrames,
    filters: select + scaleFilter(width, height, opts.colorMatrix),
    pixFmt: deep ? 'rgb48le' : 'rgb24',
    frameBytes: width * height * (deep ? 6 : 3),
    what: `frames ${opts.startFrame}..${opts.startFrame + frames - 1}`,
    ...(opts.signal ? { signal: opts.signal } : {}),
  })) {
    await pause(slowMs);
    yield c;
  }
}

type SeekOptions = Pick<DecodeOptions, 'startFrame' | 'fps' | 'originSec' | 'seek' | 'byteSeeking' | 'streamStartSec'>;

/**
 * ffmpeg's input arguments and select filter (put it before the scaling) that start at frame `startFrame` of a
 * constant-rate video stream as probed: the same seek as decodeFrames', for single frames and mattes.
 */
export function frameSeek(
  file: string,
  video: { fps: Rational; originSec: number; startTimeSec: number; byteSeeking: boolean },
  startFrame: number,
): { inputArgs: string[]; select: string } {
  return rangeInput(file, {
    startFrame,
    fps: video.fps,
    originSec: video.originSec,
    streamStartSec: video.startTimeSec,
    byteSeeking: video.byteSeeking,
  });
}

/** Seconds decoded before the target where the demuxer's seek may land late. Longer than broadcast GOPs. */
const PREROLL_SEC = 10;

/**
 * ffmpeg's input arguments for the frames DecodeOptions select, and a select filter where needed. MPEG-TS and
 * MPEG-PS seek by byte position and can land after the target (a whole GOP late), and ffmpeg then starts there:
 * those seek PREROLL_SEC early, keep the file's own timestamps (-copyts) and select frames from the target's time.
 */
function rangeInput(file: string, opts: SeekOptions): { inputArgs: string[]; select: string } {
  const timeSec = opts.seek?.timeSec ?? frameTime(opts.startFrame, opts.fps);
  // Half a frame early, so that rounding the time to ffmpeg's microseconds can never skip the target frame; ffmpeg
  // drops every frame before the seek point.
  const leadSec = opts.seek?.leadSec ?? frameTime(0.5, opts.fps);
  const origin = opts.originSec ?? 0;
  if (opts.byteSeeking && timeSec > 0) {
    const from = (opts.streamStartSec ?? 0) + timeSec - leadSec;
    return {
      inputArgs: ['-copyts', ...seekToArgs(timeSec - PREROLL_SEC, origin, 0), '-i', file],
      select: `select='gte(t,${from.toFixed(6)})',`,
    };
  }
  return { inputArgs: [...seekToArgs(timeSec, origin, leadSec), '-i', file], select: '' };
}
