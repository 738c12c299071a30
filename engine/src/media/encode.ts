// Frames in, a finished media file out. The file appears at its final path only once ffmpeg has exited
// cleanly: ffmpeg writes a hidden temp file next to it (same folder, so the final rename is atomic on one
// volume), and Premiere, the job store or a user never see a half-written result.

import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, open, realpath, stat, unlink } from 'node:fs/promises';
import { endianness } from 'node:os';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { RenameRetryError, renameIntoPlace } from '../config/atomic-rename';
import { ImageBatch, toRgb24 } from '../diffusion/images';
import { ffmpegPath } from './binaries';
import { MediaError } from './errors';
import { LOCAL_INPUT } from './local-input';
import { mediaFaults, pause } from './faults';
import { setLastFrameDuration } from './mp4-last-frame';
import { ColorMatrix, checkInputFile } from './probe';
import { Exit, lastLines, spawnFailure, start } from './process';
import { Rational, frameTime, rationalArg } from './rational';

export type OutputCodec = 'h264' | 'prores';

export interface EncoderOptions {
  output: string;
  /** Size of the frames you will write. */
  width: number;
  height: number;
  /** Size to scale to, normally the source's display size; default: the written size. */
  outWidth?: number;
  outHeight?: number;
  fps: Rational;
  /** 'h264': H.264 High 4:2:0 8-bit MP4 (crf 16). 'prores': ProRes 422 HQ 10-bit MOV. */
  codec: OutputCodec;
  /**
   * Carry the source's audio for the range, every audio stream of it (camera and MXF files keep one mono stream per
   * channel), trimmed to durationSec: AAC in MP4, 24-bit PCM in MOV, which keeps 16- and 24-bit sources exact.
   */
  audio?: { file: string; startSec: number; durationSec: number };
  overwrite?: boolean;
  /** RGB->YUV matrix and the colour tags written; use the matrix the frames were decoded with (default bt709). */
  colorMatrix?: ColorMatrix;
  /** Pixel aspect to tag the output with (the source's sampleAspect); default square. */
  sampleAspect?: Rational;
  /**
   * Variable frame rate: each frame's time in seconds after the first (frameTimes[0] = 0), written as the frames'
   * timestamps in `timeBase` (the source's, so they come back exactly); `fps` then only labels the input.
   */
  frameTimes?: number[];
  /** Runs just before the finished file is renamed to the output; throwing discards it (the output rules, re-checked). */
  beforeRename?: () => void | Promise<void>;
  /** With frameTimes: when the last frame ends (the next source frame's time, or the range's out point). */
  endSec?: number;
  timeBase?: Rational;
  /**
   * Sample depth of the frames on ffmpeg's input pipe: 8 = rgb24, 16 = rgb48le. Default: 16 for ProRes, else 8.
   * writeRaw() takes frames in this format (a full-size composite written in the bytes the source was decoded to).
   */
  inputBitDepth?: 8 | 16;
}

export interface EncodeResult {
  frames: number;
  path: string;
  /** Frame size actually written (outWidth×outHeight unless it had to be made even). */
  width: number;
  height: number;
  /** frames·den/num. */
  durationSec: number;
  /** Set when the size differs from the one asked for, saying why. */
  note?: string;
}

export interface Encoder {
  write(batch: ImageBatch): Promise<void>;
  /** `frames` packed frames of width×height in the input format (rgb24, or rgb48le with inputBitDepth 16). */
  writeRaw(bytes: Uint8Array, frames: number): Promise<void>;
  finish(): Promise<EncodeResult>;
  /** Stop ffmpeg and delete the temp file; nothing is left at or next to the output path. Safe to call twice. */
  abort(): Promise<void>;
  /** Where ffmpeg is writing until finish() renames it (for diagnostics and tests). */
  readonly tempPath: string;
}

const COLOR_TAGS: Record<ColorMatrix, string[]> = {
  bt709: ['-colorspace', 'bt709', '-color_primaries', 'bt709', '-color_trc', 'bt709'],
  bt601: ['-colorspace', 'smpte170m', '-color_primaries', 'smpte170m', '-color_trc', 'smpte170m'],
  bt2020: ['-colorspace', 'bt2020nc', '-color_primaries', 'bt2020', '-color_trc', 'bt2020-10'],
};

function positiveInt(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
    throw new RangeError(`createEncoder: ${name} must be a positive integer, got ${String(v)}`);
  return v;
}

/** The hidden sibling ffmpeg writes to: `.name.partial-<pid>-<rand>.ext`. */
export function partialPath(output: string): string {
  const ext = extname(output);
  const name = basename(output, ext);
  return join(dirname(output), `.${name}.partial-${process.pid}-${randomBytes(4).toString('hex')}${ext}`);
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function checkOutput(output: string, overwrite: boolean): Promise<void> {
  const dir = dirname(output);
  let dirStat;
  try {
    dirStat = await stat(dir);
  } catch {
    throw new MediaError(
      'output-not-writable',
      `Cannot write ${output}: the folder ${dir} does not exist. Create it or choose another output folder.`,
      { file: output },
    );
  }
  if (!dirStat.isDirectory()) {
    throw new MediaError(
      'output-not-writable',
      `Cannot write ${output}: ${dir} is not a folder. Choose another output folder.`,
      { file: output },
    );
  }
  try {
    await access(dir, constants.W_OK);
  } catch {
    throw new MediaError(
      'output-not-writable',
      `Cannot write ${output}: no write permission in ${dir}. Choose another output folder or fix its permissions.`,
      { file: output },
    );
  }
  let outStat;
  try {
    outStat = await stat(output);
  } catch {
    return;
  }
  if (outStat.isDirectory()) {
    throw new MediaError(
      'output-exists',
      `Cannot write ${output}: a folder with that name exists. Choose another output name.`,
      { file: output },
    );
  }
  // rename() over a device or pipe would replace it (as root, /dev/null itself); only a file is ever replaced.
  if (!outStat.isFile()) {
    throw new MediaError(
      'output-not-allowed',
      `Cannot write ${output}: it is not a regular file (a device, pipe or socket). Choose another output name.`,
      { file: output },
    );
  }
  if (!overwrite) {
    throw new MediaError(
      'output-exists',
      `${output} already exists. Choose another output name, or allow overwriting it.`,
      { file: output },
    );
  }
}

function toRgb48(batch: ImageBatch): Buffer {
  const hw = batch.height * batch.width;
  const out = new Uint16Array(batch.n * hw * 3);
  const d = batch.data;
  for (let f = 0; f < batch.n; f++) {
    const src = f * 3 * hw;
    const dst = f * hw * 3;
    for (let c = 0; c < 3; c++) {
      for (let p = 0; p < hw; p++) {
        const v = Math.round((d[src + c * hw + p] + 1) * 32767.5);
        out[dst + 3 * p + c] = v < 0 ? 0 : v > 65535 ? 65535 : v;
      }
    }
  }
  const buf = Buffer.from(out.buffer, out.byteOffset, out.byteLength);
  // rgb48le on the pipe; typed arrays use the host's byte order.
  if (endianness() !== 'LE') buf.swap16();
  return buf;
}

export async function createEncoder(opts: EncoderOptions): Promise<Encoder> {
  const width = positiveInt('width', opts.width);
  const height = positiveInt('height', opts.height);
  const askedW = positiveInt('outWidth', opts.outWidth ?? width);
  const askedH = positiveInt('outHeight', opts.outHeight ?? height);
  if (!(opts.fps?.num > 0 && opts.fps?.den > 0 && Number.isInteger(opts.fps.num) && Number.isInteger(opts.fps.den))) {
    throw new RangeError(`createEncoder: fps must be a positive integer rational, got ${JSON.stringify(opts.fps)}`);
  }
  if (opts.codec !== 'h264' && opts.codec !== 'prores')
    throw new RangeError(`createEncoder: codec must be 'h264' or 'prores', got ${String(opts.codec)}`);
  const output = resolve(opts.output);
  const ffmpeg = ffmpegPath();
  const faults = mediaFaults();
  await checkOutput(output, opts.overwrite === true);
  if (opts.audio) {
    await checkInputFile(opts.audio.file);
    const { startSec, durationSec } = opts.audio;
    if (!(Number.isFinite(startSec) && startSec >= 0 && Number.isFinite(durationSec) && durationSec > 0)) {
      throw new MediaError(
        'bad-range',
        `Audio range start ${startSec} s, duration ${durationSec} s of ${opts.audio.file} is invalid: start must be ≥ 0 and duration > 0.`,
        { file: opts.audio.file },
      );
    }
  }

  const prores = opts.codec === 'prores';
  // The result has the source's exact size. 4:2:0 halves both dimensions of the chroma planes, so H.264 cannot
  // hold an odd size in it (the encoder would round down); an odd size is written in 4:4:4 (High 4:4:4
  // Predictive) instead. prores_ks writes odd sizes in 4:2:2 as they are.
  const outW = askedW;
  const outH = askedH;
  const odd444 = !prores && (outW % 2 === 1 || outH % 2 === 1);
  const note = odd444
    ? `${outW}x${outH} is odd, which H.264 4:2:0 cannot hold, so it was written as H.264 High 4:4:4; choose ProRes if the host cannot decode that.`
    : undefined;

  const ext = extname(output).toLowerCase();
  const container = ext === '.mov' || prores ? 'mov' : 'mp4';
  const matrix = opts.colorMatrix ?? 'bt709';
  const sar =
    opts.sampleAspect && opts.sampleAspect.num > 0 && opts.sampleAspect.den > 0
      ? opts.sampleAspect
      : { num: 1, den: 1 };
  const pixFmt = prores ? 'yuv422p10le' : odd444 ? 'yuv444p' : 'yuv420p';
  const deep = opts.inputBitDepth === undefined ? prores : opts.inputBitDepth === 16;

  let tempPath = partialPath(output);
  try {
    // Creating the temp file ourselves proves the folder is writable (read-only mounts pass access() checks
    // on some systems) before any frame is computed.
    await (await open(tempPath, 'wx')).close();
    // Resolved once: the links in its folder path as they are now, not as they may be when the job ends.
    tempPath = await realpath(tempPath);
  } catch (e) {
    throw new MediaError(
      'output-not-writable',
      `Cannot write into ${dirname(output)} (${(e as Error).message}). Choose another output folder or fix its permissions.`,
      { file: output, cause: e },
    );
  }

  const endSec = opts.frameTimes
    ? (opts.endSec ?? opts.frameTimes[opts.frameTimes.length - 1] + frameTime(1, opts.fps))
    : 0;
  const timing = opts.frameTimes ? variableTiming(opts.frameTimes, opts.timeBase) : undefined;
  // With own timestamps the input rate is the timestamps' clock: the encoder's time base is 1/rate, and a coarser
  // one would round every timestamp to the average rate's grid.
  const inputRate = timing ? String(timing.timescale) : rationalArg(opts.fps);
  const args: string[] = [
    '-nostdin',
    '-hide_banner',
    '-v',
    'error',
    '-y',
    '-f',
    'rawvideo',
    '-pix_fmt',
    deep ? 'rgb48le' : 'rgb24',
    '-s',
    `${width}x${height}`,
    '-r',
    inputRate,
    '-i',
    'pipe:0',
  ];
  if (opts.audio) {
    args.push(
      ...LOCAL_INPUT,
      '-ss',
      opts.audio.startSec.toFixed(6),
      '-t',
      opts.audio.durationSec.toFixed(6),
      '-i',
      opts.audio.file,
    );
  }
  args.push('-map', '0:v:0');
  if (opts.audio) args.push('-map', '1:a?');
  args.push(
    '-vf',
    `${timing ? `${timing.filter},` : ''}scale=${outW}:${outH}:flags=bicubic+accurate_rnd+full_chroma_int:out_color_matrix=${matrix}:out_range=tv,` +
      `setsar=${sar.num}/${sar.den},format=${pixFmt}`,
  );
  if (prores) {
    args.push('-c:v', 'prores_ks', '-profile:v', '3', '-vendor', 'apl0');
  } else {
    args.push('-c:v', 'libx264', '-preset', 'medium', '-crf', '16', '-profile:v', odd444 ? 'high444' : 'high');
  }
  args.push('-pix_fmt', pixFmt, '-color_range', 'tv', ...COLOR_TAGS[matrix]);
  // Passthrough keeps the timestamps setpts wrote (the default would resample them to a constant rate).
  // No B-frames with own timestamps: decode order is presentation order, and the last sample is the last frame,
  // whose duration finish() writes into the sample table (mp4-last-frame.ts).
  if (timing)
    args.push(
      '-vsync',
      'passthrough',
      '-video_track_timescale',
      String(timing.timescale),
      ...(prores ? [] : ['-bf', '0']),
    );
  if (opts.audio) args.push(...(container === 'mp4' ? ['-c:a', 'aac', '-b:a', '256k'] : ['-c:a', 'pcm_s24le']));
  args.push(
    '-movflags',
    container === 'mov' ? '+faststart+write_colr' : '+faststart',
    '-f',
    container,
    faults.diskFull ? '/dev/full' : tempPath,
  );

  const ff = start(ffmpeg, args);
  const stdin = ff.proc.stdin;
  let frames = 0;
  let state: 'open' | 'finishing' | 'done' | 'aborted' = 'open';
  let queue: Promise<void> = Promise.resolve();
  // A function, not a comparison: abort() changes state while finish() awaits, which narrowing cannot see.
  const aborted = () => state === 'aborted';

  const failure = (exit: Exit, doing: string): MediaError => {
    if (exit.spawnError) return spawnFailure(ffmpeg, exit.spawnError);
    if (/No space left on device/i.test(ff.stderrTail())) {
      return new MediaError(
        'disk-full',
        `The drive holding ${dirname(output)} is full, so ${output} could not be written (nothing was left behind). Free space on that drive or choose an output folder on another one, then submit again.`,
        { file: output },
      );
    }
    const why = lastLines(ff.stderrTail()) || (exit.signal ? `killed by ${exit.signal}` : `exit code ${exit.code}`);
    return new MediaError('ffmpeg-failed', `ffmpeg failed while ${doing} ${output} (${why}).`, { file: output });
  };

  const removeTemp = async () => {
    try {
      await unlink(tempPath);
    } catch {
      // already gone
    }
  };

  const writeOne = async (batch: ImageBatch | { raw: Uint8Array; n: number }) => {
    if ('raw' in batch) {
      if (batch.raw.byteLength !== batch.n * width * height * (deep ? 6 : 3)) {
        throw new RangeError(
          `encoder for ${output} expects ${batch.n} ${width}x${height} ${deep ? 'rgb48le' : 'rgb24'} frames, got ${batch.raw.byteLength} bytes`,
        );
      }
    } else if (batch.width !== width || batch.height !== height) {
      throw new RangeError(
        `encoder for ${output} expects ${width}x${height} frames, got ${batch.width}x${batch.height}`,
      );
    }
    if (batch.n === 0) return;
    await pause(faults.slowEncodeMs);
    if (ff.done) throw failure(await ff.exited, 'encoding');
    const bytes = 'raw' in batch ? batch.raw : deep ? toRgb48(batch) : toRgb24(batch);
    const ok = stdin.write(bytes);
    if (!ok) {
      // Wait for ffmpeg to take the data, or for it to die (then 'drain' never comes).
      const drained = new Promise<void>((res) => stdin.once('drain', res));
      const died = ff.exited.then(() => 'died' as const);
      if ((await Promise.race([drained, died])) === 'died') throw failure(await ff.exited, 'encoding');
    }
    frames += batch.n;
  };

  return {
    tempPath,
    write(batch: ImageBatch) {
      if (state !== 'open')
        return Promise.reject(new Error(`encoder for ${output} is ${state}; write() after finish() or abort()`));
      // Serialised so concurrent callers cannot interleave frames or miss a drain.
      const p = queue.then(() => writeOne(batch));
      queue = p.catch(() => undefined);
      return p;
    },
    writeRaw(bytes: Uint8Array, n: number) {
      if (state !== 'open')
        return Promise.reject(new Error(`encoder for ${output} is ${state}; write() after finish() or abort()`));
      const p = queue.then(() => writeOne({ raw: bytes, n }));
      queue = p.catch(() => undefined);
      return p;
    },
    async finish() {
      if (state !== 'open')
        throw new Error(`encoder for ${output} is ${state}; finish() called twice or after abort()`);
      state = 'finishing';
      await queue;
      stdin.end();
      const exit = await ff.exited;
      // abort() while finishing (a cancel during the final write) wins: nothing may appear at the output path.
      if (aborted()) {
        await removeTemp();
        throw new MediaError('ffmpeg-failed', `Writing ${output} was stopped; no file was written.`, { file: output });
      }
      if (exit.code !== 0 || frames === 0) {
        state = 'done';
        await removeTemp();
        if (frames === 0 && exit.code === 0)
          throw new MediaError('ffmpeg-failed', `No frames were written, so ${output} was not created.`, {
            file: output,
          });
        throw failure(exit, 'finishing');
      }
      if (opts.frameTimes && frames === opts.frameTimes.length && !faults.diskFull) {
        await setLastFrameDuration(tempPath, endSec - opts.frameTimes[frames - 1]);
      }
      if (opts.overwrite !== true && (await exists(output))) {
        state = 'done';
        await removeTemp();
        throw new MediaError(
          'output-exists',
          `${output} appeared while it was being encoded; the result was discarded. Choose another output name.`,
          { file: output },
        );
      }
      await pause(faults.slowEncodeMs);
      if (aborted()) {
        await removeTemp();
        throw new MediaError('ffmpeg-failed', `Writing ${output} was stopped; no file was written.`, { file: output });
      }
      try {
        await opts.beforeRename?.();
      } catch (e) {
        state = 'done';
        await removeTemp();
        throw e;
      }
      try {
        await renameIntoPlace(tempPath, output);
      } catch (e) {
        state = 'done';
        // On Windows a rename that another program kept failing (RenameRetryError, which says what holds the file)
        // leaves a finished result: it stays under its hidden temp name for the user to rename, not deleted.
        if (e instanceof RenameRetryError)
          throw new MediaError(
            'output-not-writable',
            `${e.message} The finished result is kept as ${tempPath}; rename it to ${basename(output)} once nothing holds the files.`,
            { file: output, cause: e },
          );
        await removeTemp();
        throw new MediaError(
          'output-not-writable',
          `Could not move the finished result to ${output} (${(e as Error).message}).`,
          { file: output, cause: e },
        );
      }
      state = 'done';
      const durationSec = opts.frameTimes && frames === opts.frameTimes.length ? endSec : frameTime(frames, opts.fps);
      return { frames, path: output, width: outW, height: outH, durationSec, ...(note ? { note } : {}) };
    },
    async abort() {
      if (state === 'aborted') return;
      const wasDone = state === 'done';
      state = 'aborted';
      await ff.kill();
      if (!wasDone) await removeTemp();
    },
  };
}

/**
 * setpts for frames with their own times: frame N gets times[N], as a balanced tree of if(lt(N,…)) so the
 * expression stays shallow for long ranges. Ticks of `timeBase` when it is a plain 1/D clock, else 1/90000.
 */
export function variableTiming(times: number[], timeBase?: Rational): { filter: string; timescale: number } {
  if (times.length === 0) throw new RangeError('variableTiming: no frame times');
  const timescale =
    timeBase && timeBase.num === 1 && timeBase.den >= 1000 && timeBase.den <= 1_000_000 ? timeBase.den : 90000;
  const ticks = times.map((t) => Math.round(t * timescale));
  // Strictly increasing: frames that share a timestamp in the source are one tick apart, as a muxer needs them.
  for (let i = 1; i < ticks.length; i++) ticks[i] = Math.max(ticks[i], ticks[i - 1] + 1);
  const tree = (lo: number, hi: number): string => {
    if (hi - lo === 1) return String(ticks[lo]);
    const mid = (lo + hi) >> 1;
    return `if(lt(N,${mid}),${tree(lo, mid)},${tree(mid, hi)})`;
  };
  return { filter: `settb=1/${timescale},setpts='${tree(0, ticks.length)}'`, timescale };
}
