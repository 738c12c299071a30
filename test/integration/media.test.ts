// engine/src/media against the real bundled ffmpeg/ffprobe. Clips are generated with frame-index-coded pixels,
// so every decode can be checked for exactly which frame came back.

import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageBatch, imageBatch } from '../../engine/src/diffusion/images';
import { decodePng, encodePng } from '../../engine/src/media/png';
import { decodeAll } from '../support/container-corpus';
import {
  MediaError,
  MediaInfo,
  Rational,
  createEncoder,
  decodeFrames,
  extractStill,
  ffmpegPath,
  ffprobePath,
  loadMask,
  makeTestClip,
  probeMedia,
  rampIndex,
  rampLevel,
  resolveRange,
  sampleRgb,
  workingSize,
} from '../../engine/src/media';

const FPS24: Rational = { num: 24, den: 1 };
const FPS25: Rational = { num: 25, den: 1 };
const FPS2997: Rational = { num: 30000, den: 1001 };

let dir: string;
const clip = {
  c24: '',
  c25: '',
  c2997: '',
  hd720: '',
  hd1080: '',
  rot: '',
  prores: '',
  matte: '',
};

async function expectMediaError(
  p: Promise<unknown> | (() => unknown),
  code: string,
  ...mentions: (string | RegExp)[]
): Promise<MediaError> {
  let err: unknown;
  try {
    if (typeof p === 'function') await p();
    else await p;
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(MediaError);
  const me = err as MediaError;
  expect(me.code).toBe(code);
  for (const m of mentions) {
    if (typeof m === 'string') expect(me.message).toContain(m);
    else expect(me.message).toMatch(m);
  }
  return me;
}

async function collect(gen: AsyncGenerator<ImageBatch>): Promise<ImageBatch[]> {
  const out: ImageBatch[] = [];
  for await (const b of gen) out.push(b);
  return out;
}

/** Ramp indices of every frame of a list of batches, in order. */
function indices(batches: ImageBatch[]): number[] {
  return batches.flatMap((b) => Array.from({ length: b.n }, (_, f) => rampIndex(b, f)));
}

function solid(n: number, w: number, h: number, rgb: [number, number, number]): ImageBatch {
  const b = imageBatch(n, h, w);
  const hw = w * h;
  for (let f = 0; f < n; f++)
    for (let c = 0; c < 3; c++) b.data.fill(rgb[c] / 127.5 - 1, (f * 3 + c) * hw, (f * 3 + c + 1) * hw);
  return b;
}

/** ffmpeg children of this Jest worker, zombies included. */
function ffmpegChildren(): string[] {
  let out: string;
  try {
    out = execFileSync('ps', ['-o', 'pid=,stat=,comm=', '--ppid', String(process.pid)], { encoding: 'utf8' });
  } catch {
    out = ''; // ps exits 1 when there are no children
  }
  return out.split('\n').filter((l) => /ffmpeg/.test(l));
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'reshoot-media-'));
  for (const k of Object.keys(clip) as (keyof typeof clip)[])
    clip[k] = join(dir, `${k}.${k === 'prores' ? 'mov' : 'mp4'}`);
  await Promise.all([
    makeTestClip({ file: clip.c24, width: 64, height: 48, fps: FPS24, frames: 40 }),
    makeTestClip({ file: clip.c25, width: 64, height: 48, fps: FPS25, frames: 40 }),
    makeTestClip({ file: clip.c2997, width: 64, height: 48, fps: FPS2997, frames: 45, audio: true }),
    makeTestClip({ file: clip.prores, width: 64, height: 48, fps: FPS24, frames: 10, codec: 'prores', audio: true }),
    makeTestClip({ file: clip.matte, width: 64, height: 48, fps: FPS24, frames: 40 }),
  ]);
  await makeTestClip({ file: clip.hd720, width: 1280, height: 720, fps: FPS25, frames: 3 });
  await makeTestClip({ file: clip.hd1080, width: 1920, height: 1080, fps: FPS24, frames: 2 });
  // Stored landscape, displayed portrait: how phones record.
  await makeTestClip({ file: clip.rot, width: 1280, height: 720, fps: FPS25, frames: 4, rotation: 90 });
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('probeMedia', () => {
  it.each([
    ['c24', FPS24, 40],
    ['c25', FPS25, 40],
    ['c2997', FPS2997, 45],
  ] as const)('%s: exact frame rate, frame count and duration', async (name, fps, frames) => {
    const info = await probeMedia(clip[name]);
    expect(info.video.fps).toEqual(fps);
    expect(info.video.frameCount).toBe(frames);
    expect(info.durationSec).toBeCloseTo((frames * fps.den) / fps.num, 4);
    expect(info.video).toMatchObject({
      codec: 'h264',
      width: 64,
      height: 48,
      displayWidth: 64,
      displayHeight: 48,
      rotation: 0,
      pixFmt: 'yuv420p',
      bitDepth: 8,
    });
    expect(info.video.sampleAspect).toEqual({ num: 1, den: 1 });
    expect(info.container).toContain('mp4');
    expect(info.sizeBytes).toBe((await stat(clip[name])).size);
  });

  it('reads HD sizes', async () => {
    const a = await probeMedia(clip.hd720);
    expect(a.video).toMatchObject({
      width: 1280,
      height: 720,
      displayWidth: 1280,
      displayHeight: 720,
      frameCount: 3,
      colorMatrix: 'bt709',
    });
    const b = await probeMedia(clip.hd1080);
    expect(b.video).toMatchObject({ width: 1920, height: 1080, frameCount: 2 });
    expect(b.video.fps).toEqual(FPS24);
  });

  it('reports rotation and swaps the display size', async () => {
    const info = await probeMedia(clip.rot);
    expect(info.video).toMatchObject({
      width: 1280,
      height: 720,
      rotation: 90,
      displayWidth: 720,
      displayHeight: 1280,
      frameCount: 4,
    });
  });

  it('reads 10-bit ProRes and its audio', async () => {
    const info = await probeMedia(clip.prores);
    expect(info.video).toMatchObject({
      codec: 'prores',
      profile: 'HQ',
      pixFmt: 'yuv422p10le',
      bitDepth: 10,
      frameCount: 10,
    });
    expect(info.audio).toEqual([expect.objectContaining({ codec: 'pcm_s16le', channels: 2, sampleRate: 48000 })]);
  });

  it('counts frames from duration × fps where the container has no frame count (Matroska)', async () => {
    const file = join(dir, 'lossless.mkv');
    await makeTestClip({ file, width: 64, height: 48, fps: FPS25, frames: 20, codec: 'ffv1' });
    const info = await probeMedia(file);
    expect(info.video).toMatchObject({ codec: 'ffv1', frameCount: 20 });
    expect(info.video.fps).toEqual(FPS25);
    const batches = await collect(
      decodeFrames(file, { startFrame: 19, frameCount: 1, fps: FPS25, width: 64, height: 48, chunkFrames: 1 }),
    );
    expect(indices(batches)).toEqual([19]);
  });

  it('reads the start timecode', async () => {
    const file = join(dir, 'timecode.mov');
    execFileSync(ffmpegPath(), ['-v', 'error', '-y', '-i', clip.c25, '-c', 'copy', '-timecode', '01:02:03:04', file]);
    expect((await probeMedia(file)).video.timecode).toBe('01:02:03:04');
    expect((await probeMedia(clip.c25)).video.timecode).toBeUndefined();
  });

  it('lists audio streams only when there are some', async () => {
    expect((await probeMedia(clip.c2997)).audio).toEqual([
      expect.objectContaining({ index: 1, codec: 'aac', channels: 2, sampleRate: 48000 }),
    ]);
    expect((await probeMedia(clip.c24)).audio).toEqual([]);
  });
});

describe('resolveRange', () => {
  const src = { path: 'clip.mp4', video: { fps: FPS2997, frameCount: 300 } };
  const T = 1001 / 30000;

  it('maps seconds computed from 29.97 frame numbers back to those frames', () => {
    expect(resolveRange(src, { in: T * 10, out: T * 20 })).toEqual({
      startFrame: 10,
      frameCount: 10,
      inSec: (10 * 1001) / 30000,
      outSec: (20 * 1001) / 30000,
    });
    for (let k = 0; k < 300; k += 7)
      expect(resolveRange(src, { in: (k * 1001) / 30000, out: ((k + 1) * 1001) / 30000 })).toMatchObject({
        startFrame: k,
        frameCount: 1,
      });
  });

  it('snaps an in point between frames forward and excludes a frame starting exactly at out', () => {
    expect(resolveRange(src, { in: T * 10 + 1e-4, out: T * 20 })).toMatchObject({ startFrame: 11, frameCount: 9 });
    expect(resolveRange(src, { in: 0, out: T * 20 - 1e-4 })).toMatchObject({ startFrame: 0, frameCount: 20 });
  });

  it('accepts an out point up to one frame past the end', () => {
    expect(resolveRange(src, { in: T * 290, out: T * 300.9 })).toMatchObject({ startFrame: 290, frameCount: 10 });
  });

  it.each([
    ['NaN', { in: NaN, out: 1 }, 'must be times from the start'],
    ['negative in', { in: -0.5, out: 1 }, 'In is before the start of clip.mp4'],
    ['out before in', { in: 2, out: 1 }, 'must come after In'],
    ['out equal to in', { in: 1, out: 1 }, 'must come after In'],
    ['in at the end', { in: T * 300, out: T * 301 }, 'past the end'],
    ['out beyond the end', { in: 1, out: T * 302 }, 'Out is past the end of clip.mp4'],
    ['no frame inside', { in: T * 10.2, out: T * 10.8 }, 'no frame of clip.mp4 starts between'],
  ])('rejects %s', async (_name, range, why) => {
    await expectMediaError(() => resolveRange(src, range), 'bad-range', 'clip.mp4', why);
  });
});

describe('workingSize', () => {
  it('puts the short side at the native size, keeps the aspect, rounds to the multiple', () => {
    expect(workingSize(1920, 1080)).toEqual({ width: 912, height: 512 });
    expect(workingSize(1280, 720)).toEqual({ width: 912, height: 512 });
    expect(workingSize(720, 1280)).toEqual({ width: 512, height: 912 });
    expect(workingSize(320, 240)).toEqual({ width: 680, height: 512 });
    expect(workingSize(3840, 2160, 768, 64)).toEqual({ width: 1344, height: 768 });
    expect(workingSize(10, 1000, 4, 8)).toEqual({ width: 8, height: 400 });
  });
});

describe('decodeFrames', () => {
  it.each([
    ['c24', 17, FPS24],
    ['c25', 23, FPS25],
    ['c2997', 31, FPS2997],
  ] as const)('%s: starts exactly at frame %i', async (name, start, fps) => {
    const batches = await collect(
      decodeFrames(clip[name], { startFrame: start, frameCount: 8, fps, width: 64, height: 48, chunkFrames: 3 }),
    );
    expect(batches.map((b) => b.n)).toEqual([3, 3, 2]);
    expect(indices(batches)).toEqual(Array.from({ length: 8 }, (_, i) => (start + i) % 28));
  });

  it('decodes the frames of a range given in seconds at 29.97', async () => {
    const info = await probeMedia(clip.c2997);
    const r = resolveRange(info, { in: (13 * 1001) / 30000, out: (19 * 1001) / 30000 });
    expect(r).toMatchObject({ startFrame: 13, frameCount: 6 });
    const batches = await collect(
      decodeFrames(clip.c2997, { ...r, fps: info.video.fps, width: 64, height: 48, chunkFrames: 16 }),
    );
    expect(indices(batches)).toEqual([13, 14, 15, 16, 17, 18]);
  });

  it('splits 10 frames into chunks of 4, 4 and 2, and reads the last frame of the clip', async () => {
    const batches = await collect(
      decodeFrames(clip.c24, { startFrame: 30, frameCount: 10, fps: FPS24, width: 32, height: 24, chunkFrames: 4 }),
    );
    expect(batches.map((b) => [b.n, b.width, b.height, b.data.length])).toEqual([
      [4, 32, 24, 4 * 3 * 32 * 24],
      [4, 32, 24, 4 * 3 * 32 * 24],
      [2, 32, 24, 2 * 3 * 32 * 24],
    ]);
    expect(indices(batches)).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  });

  it('scales to the working size', async () => {
    const info = await probeMedia(clip.hd720);
    const size = workingSize(info.video.displayWidth, info.video.displayHeight);
    const [b] = await collect(
      decodeFrames(clip.hd720, { startFrame: 1, frameCount: 2, fps: info.video.fps, ...size, chunkFrames: 2 }),
    );
    expect([b.n, b.width, b.height]).toEqual([2, 912, 512]);
    expect([rampIndex(b, 0), rampIndex(b, 1)]).toEqual([1, 2]);
    // The red marker stays in the top-left corner, nothing else is red.
    expect(sampleRgb(b, 0, 0.1, 0.1)[0]).toBeGreaterThan(230);
    expect(sampleRgb(b, 0, 0.9, 0.9)[0]).toBeLessThan(30);
  });

  it('applies the rotation: a phone clip decodes as portrait, turned clockwise', async () => {
    const info = await probeMedia(clip.rot);
    const [b] = await collect(
      decodeFrames(clip.rot, {
        startFrame: 2,
        frameCount: 2,
        fps: info.video.fps,
        width: 360,
        height: 640,
        chunkFrames: 8,
      }),
    );
    expect([b.width, b.height]).toEqual([360, 640]);
    expect([rampIndex(b, 0), rampIndex(b, 1)]).toEqual([2, 3]);
    // The stored top-left marker is shown at the top right after a 90° clockwise turn.
    const [tr, tl, br] = [sampleRgb(b, 0, 0.9, 0.1), sampleRgb(b, 0, 0.1, 0.1), sampleRgb(b, 0, 0.9, 0.9)];
    expect(tr[0]).toBeGreaterThan(230);
    expect(tr[1]).toBeLessThan(30);
    expect(Math.abs(tl[0] - tl[1])).toBeLessThan(4);
    expect(Math.abs(br[0] - br[1])).toBeLessThan(4);
  });

  it('decodes 10-bit sources with 16-bit precision when asked', async () => {
    const [b] = await collect(
      decodeFrames(clip.prores, {
        startFrame: 3,
        frameCount: 4,
        fps: FPS24,
        width: 64,
        height: 48,
        chunkFrames: 4,
        bitDepth: 16,
      }),
    );
    expect(indices([b])).toEqual([3, 4, 5, 6]);
    // rgb24 would put every sample on a multiple of 1/255; the 10-bit path does not.
    let offGrid = 0;
    for (let i = 0; i < b.data.length; i++)
      if (Math.abs((b.data[i] + 1) * 127.5 - Math.round((b.data[i] + 1) * 127.5)) > 0.05) offGrid++;
    expect(offGrid).toBeGreaterThan(b.data.length / 10);
  });

  it('kills ffmpeg when the consumer stops early', async () => {
    const gen = decodeFrames(clip.c24, {
      startFrame: 0,
      frameCount: 40,
      fps: FPS24,
      width: 640,
      height: 480,
      chunkFrames: 1,
    });
    let end: IteratorResult<ImageBatch> | undefined;
    try {
      const first = await gen.next();
      expect(first.done).toBe(false);
      expect(rampIndex(first.value as ImageBatch, 0)).toBe(0);
      // 39 frames of 900 KB cannot fit in the pipe: ffmpeg is blocked, still running.
      expect(ffmpegChildren()).toEqual([expect.stringMatching(/^\s*\d+ [^Z]/)]);
    } finally {
      end = await gen.return(undefined);
    }
    expect(end.done).toBe(true);
    expect(ffmpegChildren()).toEqual([]);
    expect((await gen.next()).done).toBe(true);
  });

  it('says how many frames were readable from a truncated file', async () => {
    const file = join(dir, 'truncated-faststart.mp4');
    const enc = await createEncoder({ output: file, width: 64, height: 48, fps: FPS25, codec: 'h264' });
    const noise = imageBatch(30, 48, 64);
    let seed = 1;
    for (let i = 0; i < noise.data.length; i++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      noise.data[i] = (seed / 2 ** 32) * 2 - 1;
    }
    await enc.write(noise);
    await enc.finish();
    // faststart puts the index first, so the file still probes as 30 frames but the samples run out early.
    await truncate(file, Math.floor((await stat(file)).size * 0.5));
    expect((await probeMedia(file)).video.frameCount).toBe(30);
    const me = await expectMediaError(
      collect(decodeFrames(file, { startFrame: 0, frameCount: 30, fps: FPS25, width: 64, height: 48, chunkFrames: 8 })),
      'not-media',
      file,
      'truncated',
    );
    const readable = Number(/only (\d+) of the 30 requested frames/.exec(me.message)?.[1]);
    expect(readable).toBeGreaterThan(0);
    expect(readable).toBeLessThan(30);
  });
});

describe('createEncoder', () => {
  it('writes exactly the frames given, at the same rational rate, scaled to the output size', async () => {
    const out = join(dir, 'enc-h264.mp4');
    const enc = await createEncoder({
      output: out,
      width: 64,
      height: 48,
      outWidth: 128,
      outHeight: 96,
      fps: FPS2997,
      codec: 'h264',
    });
    for (const n of [5, 5, 2]) await enc.write(solid(n, 64, 48, [200, 60, 40]));
    const res = await enc.finish();
    expect(res).toMatchObject({ frames: 12, path: out, width: 128, height: 96 });
    expect(res.note).toBeUndefined();
    const info = await probeMedia(out);
    expect(info.video).toMatchObject({
      codec: 'h264',
      width: 128,
      height: 96,
      frameCount: 12,
      pixFmt: 'yuv420p',
      colorMatrix: 'bt709',
    });
    expect(info.video.fps).toEqual(FPS2997);
    expect(Math.abs(info.durationSec - (12 * 1001) / 30000)).toBeLessThan(1001 / 30000);
    expect(info.audio).toEqual([]);
    // The colour survives RGB -> YUV (bt709) -> RGB.
    const [b] = await collect(
      decodeFrames(out, {
        startFrame: 0,
        frameCount: 1,
        fps: FPS2997,
        width: 128,
        height: 96,
        chunkFrames: 1,
        colorMatrix: info.video.colorMatrix,
      }),
    );
    const rgb = sampleRgb(b, 0, 0.5, 0.5);
    [200, 60, 40].forEach((v, c) => expect(Math.abs(rgb[c] - v)).toBeLessThan(3));
  });

  it('writes ProRes 422 HQ 10-bit', async () => {
    const out = join(dir, 'enc-prores.mov');
    const enc = await createEncoder({ output: out, width: 64, height: 48, fps: FPS25, codec: 'prores' });
    await enc.write(solid(7, 64, 48, [30, 140, 220]));
    expect(await enc.finish()).toMatchObject({ frames: 7, width: 64, height: 48 });
    const info = await probeMedia(out);
    expect(info.video).toMatchObject({
      codec: 'prores',
      profile: 'HQ',
      pixFmt: 'yuv422p10le',
      bitDepth: 10,
      frameCount: 7,
    });
    expect(info.video.fps).toEqual(FPS25);
    expect(info.durationSec).toBeCloseTo(7 / 25, 3);
  });

  it('keeps odd sizes exactly: H.264 in 4:4:4 (and says so), ProRes 4:2:2 as it is', async () => {
    const out = join(dir, 'enc-odd.mp4');
    const enc = await createEncoder({
      output: out,
      width: 32,
      height: 32,
      outWidth: 65,
      outHeight: 37,
      fps: FPS24,
      codec: 'h264',
    });
    await enc.write(solid(2, 32, 32, [128, 128, 128]));
    const res = await enc.finish();
    expect(res).toMatchObject({ width: 65, height: 37 });
    expect(res.note).toContain('65x37');
    expect((await probeMedia(out)).video).toMatchObject({
      width: 65,
      height: 37,
      pixFmt: 'yuv444p',
      profile: 'High 4:4:4 Predictive',
    });
    const mov = join(dir, 'enc-odd.mov');
    const pro = await createEncoder({
      output: mov,
      width: 32,
      height: 32,
      outWidth: 65,
      outHeight: 37,
      fps: FPS24,
      codec: 'prores',
    });
    await pro.write(solid(2, 32, 32, [128, 128, 128]));
    expect(await pro.finish()).toMatchObject({ width: 65, height: 37 });
    expect((await probeMedia(mov)).video).toMatchObject({ width: 65, height: 37, codec: 'prores' });
  });

  it('stamps frames with their own times (variable frame rate), the last one included', async () => {
    const out = join(dir, 'enc-vfr.mp4');
    const times = [0, 1 / 30, 2 / 30, 4 / 30, 6 / 30, 7 / 30];
    const enc = await createEncoder({
      output: out,
      width: 32,
      height: 32,
      fps: { num: 25, den: 1 },
      codec: 'h264',
      frameTimes: times,
      endSec: 8 / 30,
      timeBase: { num: 1, den: 90000 },
    });
    await enc.write(solid(6, 32, 32, [90, 120, 200]));
    expect(await enc.finish()).toMatchObject({ frames: 6, durationSec: 8 / 30 });
    // Every frame decodes at its own time, the last one included.
    const decoded = decodeAll(out, 8, 8);
    expect(decoded.times.length).toBe(6);
    decoded.times.forEach((t, i) => expect(Math.abs(t - times[i])).toBeLessThan(1e-4));
    // The last frame lasts until endSec: the file's video ends there, not at the last frame's start.
    expect((await probeMedia(out)).durationSec).toBeCloseTo(8 / 30, 3);
  });

  it('carries the range of the source audio, trimmed to the video', async () => {
    const src = await probeMedia(clip.c2997);
    const range = resolveRange(src, { in: (10 * 1001) / 30000, out: (40 * 1001) / 30000 });
    const durationSec = range.outSec - range.inSec;
    for (const [codec, ext, audioCodec] of [
      ['h264', 'mp4', 'aac'],
      ['prores', 'mov', 'pcm_s24le'],
    ] as const) {
      const out = join(dir, `enc-audio.${ext}`);
      const enc = await createEncoder({
        output: out,
        width: 64,
        height: 48,
        fps: FPS2997,
        codec,
        audio: { file: clip.c2997, startSec: range.inSec, durationSec },
      });
      await enc.write(solid(range.frameCount, 64, 48, [90, 90, 90]));
      await enc.finish();
      const info = await probeMedia(out);
      expect(info.video.frameCount).toBe(30);
      expect(info.audio).toHaveLength(1);
      expect(info.audio[0]).toMatchObject({ codec: audioCodec, channels: 2, sampleRate: 48000 });
      expect(Math.abs((info.audio[0].durationSec ?? 0) - durationSec)).toBeLessThan(0.05);
    }
  });

  it('carries every audio stream, and 24-bit samples exactly into ProRes', async () => {
    // As a camera or MXF file has them: two mono streams of 24-bit PCM, different on each.
    const src = join(dir, 'two-mono-24bit.mov');
    execFileSync(ffmpegPath(), [
      ...['-nostdin', '-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=s=64x48:r=25:d=1'],
      ...['-f', 'lavfi', '-i', 'aevalsrc=0.5*sin(2*PI*440*t):s=48000:d=1'],
      ...['-f', 'lavfi', '-i', 'aevalsrc=0.3*sin(2*PI*1000*t+0.3):s=48000:d=1'],
      ...['-map', '0:v', '-map', '1:a', '-map', '2:a', '-c:v', 'prores_ks', '-c:a', 'pcm_s24le', src],
    ]);
    const startSec = 0.2;
    const durationSec = 0.4;
    /** One audio stream of a file from startSec on, as 32-bit integers: the low bits a 16-bit path would drop. */
    const samples = (file: string, stream: number, from: number) =>
      execFileSync(ffmpegPath(), [
        ...['-nostdin', '-v', 'error', '-ss', String(from), '-t', String(durationSec), '-i', file],
        ...['-map', `0:a:${stream}`, '-f', 's32le', '-c:a', 'pcm_s32le', 'pipe:1'],
      ]);
    for (const codec of ['prores', 'h264'] as const) {
      const out = join(dir, `two-streams.${codec === 'prores' ? 'mov' : 'mp4'}`);
      const enc = await createEncoder({
        output: out,
        width: 64,
        height: 48,
        fps: FPS25,
        codec,
        audio: { file: src, startSec, durationSec },
      });
      await enc.write(solid(10, 64, 48, [90, 90, 90]));
      await enc.finish();
      const info = await probeMedia(out);
      expect(info.audio.map((a) => [a.codec, a.channels, a.sampleRate])).toEqual(
        codec === 'prores'
          ? [
              ['pcm_s24le', 1, 48000],
              ['pcm_s24le', 1, 48000],
            ]
          : [
              ['aac', 1, 48000],
              ['aac', 1, 48000],
            ],
      );
      if (codec === 'prores')
        for (const stream of [0, 1]) {
          const kept = samples(out, stream, 0);
          expect(kept.length).toBe(Math.round(durationSec * 48000) * 4);
          expect(kept.equals(samples(src, stream, startSec))).toBe(true);
        }
    }
  });

  it('writes to a hidden temp file and renames it on finish', async () => {
    const out = join(dir, 'atomic.mp4');
    const enc = await createEncoder({ output: out, width: 32, height: 32, fps: FPS24, codec: 'h264' });
    expect(enc.tempPath.startsWith(join(dir, '.atomic.partial-'))).toBe(true);
    expect(enc.tempPath).toMatch(new RegExp(`\\.atomic\\.partial-${process.pid}-[0-9a-f]+\\.mp4$`));
    await enc.write(solid(3, 32, 32, [10, 200, 10]));
    await expect(stat(out)).rejects.toThrow();
    expect((await stat(enc.tempPath)).isFile()).toBe(true);
    await enc.finish();
    expect((await stat(out)).size).toBeGreaterThan(0);
    await expect(stat(enc.tempPath)).rejects.toThrow();
    expect((await probeMedia(out)).video.frameCount).toBe(3);
  });

  it('abort() leaves nothing behind', async () => {
    const sub = join(dir, 'abort');
    await mkdir(sub);
    const out = join(sub, 'aborted.mov');
    const enc = await createEncoder({ output: out, width: 32, height: 32, fps: FPS24, codec: 'prores' });
    await enc.write(solid(4, 32, 32, [10, 200, 10]));
    await enc.abort();
    await enc.abort();
    expect(await readdir(sub)).toEqual([]);
    expect(ffmpegChildren()).toEqual([]);
  });

  it('refuses to replace an existing file unless told to, and an unwritable folder up front', async () => {
    const out = join(dir, 'exists.mp4');
    await writeFile(out, 'keep me');
    await expectMediaError(
      createEncoder({ output: out, width: 32, height: 32, fps: FPS24, codec: 'h264' }),
      'output-exists',
      out,
    );
    expect(await readFile(out, 'utf8')).toBe('keep me');
    const enc = await createEncoder({ output: out, width: 32, height: 32, fps: FPS24, codec: 'h264', overwrite: true });
    await enc.write(solid(2, 32, 32, [0, 0, 0]));
    await enc.finish();
    expect((await probeMedia(out)).video.frameCount).toBe(2);
    const missing = join(dir, 'no-such-folder', 'x.mp4');
    await expectMediaError(
      createEncoder({ output: missing, width: 32, height: 32, fps: FPS24, codec: 'h264' }),
      'output-not-writable',
      'no-such-folder',
    );
  });
});

describe('round trip: decode a range, encode at source size', () => {
  it.each([
    ['c24', 5, 6],
    ['c25', 12, 5],
    ['c2997', 20, 7],
    ['hd720', 1, 2],
    ['rot', 1, 3],
  ] as const)('%s frames from %i', async (name, start, count) => {
    const info: MediaInfo = await probeMedia(clip[name]);
    const { fps, displayWidth, displayHeight } = info.video;
    const range = resolveRange(info, { in: (start * fps.den) / fps.num, out: ((start + count) * fps.den) / fps.num });
    expect(range).toMatchObject({ startFrame: start, frameCount: count });
    const size =
      displayWidth > 512 ? workingSize(displayWidth, displayHeight) : { width: displayWidth, height: displayHeight };
    const out = join(dir, `rt-${name}.mp4`);
    const enc = await createEncoder({
      output: out,
      ...size,
      outWidth: displayWidth,
      outHeight: displayHeight,
      fps,
      codec: 'h264',
      colorMatrix: info.video.colorMatrix,
    });
    for await (const batch of decodeFrames(clip[name], {
      ...range,
      fps,
      ...size,
      chunkFrames: 2,
      colorMatrix: info.video.colorMatrix,
    }))
      await enc.write(batch);
    const res = await enc.finish();
    expect(res.frames).toBe(count);
    const back = await probeMedia(out);
    expect(back.video).toMatchObject({ frameCount: count, width: displayWidth, height: displayHeight, rotation: 0 });
    expect(back.video.fps).toEqual(fps);
    expect(Math.abs(back.durationSec - (range.outSec - range.inSec))).toBeLessThan(fps.den / fps.num / 2);
    const [first] = await collect(
      decodeFrames(out, { startFrame: 0, frameCount: 1, fps, width: 64, height: 64, chunkFrames: 1 }),
    );
    expect(rampIndex(first, 0)).toBe(start % 28);
  });
});

describe('extractStill', () => {
  it('returns the frame at a time as PNG, in display orientation', async () => {
    const png = decodePng(await extractStill(clip.c24, 17 / 24 + 0.01));
    expect([png.width, png.height, png.channels]).toEqual([64, 48, 3]);
    const centre = (24 * 64 + 32) * 3;
    expect(Math.abs(png.data[centre] - rampLevel(17))).toBeLessThanOrEqual(3);
    const small = decodePng(await extractStill(clip.rot, 0, 90));
    expect([small.width, small.height]).toEqual([90, 160]);
    await expectMediaError(extractStill(clip.c24, 40 / 24), 'bad-range', clip.c24);
  });
});

describe('loadMask', () => {
  const target = (frames: number, width: number, height: number, startFrame = 0) => ({
    frames,
    width,
    height,
    startFrame,
    fps: FPS24,
  });
  const at = (m: { width: number; height: number; data: Float32Array }, f: number, x: number, y: number) =>
    m.data[f * m.width * m.height + y * m.width + x];

  it('box: 1 inside, 0 outside, on every frame', async () => {
    const m = await loadMask({ kind: 'box', x: 0.25, y: 0.5, w: 0.5, h: 0.25 }, target(3, 16, 8));
    expect([m.n, m.width, m.height]).toEqual([3, 16, 8]);
    for (let f = 0; f < 3; f++) {
      let sum = 0;
      for (let y = 0; y < 8; y++)
        for (let x = 0; x < 16; x++) {
          const inside = x >= 4 && x < 12 && y >= 4 && y < 6;
          expect(at(m, f, x, y)).toBe(inside ? 1 : 0);
          sum += at(m, f, x, y);
        }
      expect(sum).toBe(16);
    }
    await expectMediaError(
      loadMask({ kind: 'box', x: 0.8, y: 0, w: 0.5, h: 0.5 }, target(1, 16, 8)),
      'bad-mask',
      'inside the frame',
    );
  });

  async function writePng(
    name: string,
    w: number,
    h: number,
    channels: 3 | 4,
    px: (x: number, y: number) => number[],
  ): Promise<string> {
    const data = new Uint8Array(w * h * channels);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data.set(px(x, y), (y * w + x) * channels);
    const file = join(dir, name);
    await writeFile(file, encodePng(data, w, h, channels));
    return file;
  }

  it('PNG still: luma, resized, applied to every frame', async () => {
    const file = await writePng('luma.png', 64, 32, 3, (x) => (x < 32 ? [255, 255, 255] : [0, 0, 0]));
    const m = await loadMask({ kind: 'file', path: file }, target(4, 32, 16, 10));
    expect([m.n, m.width, m.height]).toEqual([4, 32, 16]);
    for (let f = 0; f < 4; f++) {
      expect(at(m, f, 4, 8)).toBeCloseTo(1, 2);
      expect(at(m, f, 28, 8)).toBeCloseTo(0, 2);
    }
  });

  it('PNG still: alpha when the alpha channel is used, luma when it is all opaque', async () => {
    const alpha = await writePng('alpha.png', 64, 32, 4, (_x, y) => [255, 255, 255, y < 16 ? 255 : 0]);
    const a = await loadMask({ kind: 'file', path: alpha }, target(2, 32, 16));
    expect(at(a, 1, 16, 2)).toBeCloseTo(1, 2);
    expect(at(a, 1, 16, 13)).toBeCloseTo(0, 2);
    const opaque = await writePng('opaque.png', 64, 32, 4, (x) => (x < 32 ? [255, 255, 255, 255] : [0, 0, 0, 255]));
    const o = await loadMask({ kind: 'file', path: opaque }, target(1, 32, 16));
    expect(at(o, 0, 4, 8)).toBeCloseTo(1, 2);
    expect(at(o, 0, 28, 8)).toBeCloseTo(0, 2);
  });

  it('matte clip: the same frame numbers as the range', async () => {
    const m = await loadMask({ kind: 'file', path: clip.matte }, target(3, 32, 24, 5));
    expect([m.n, m.width, m.height]).toEqual([3, 32, 24]);
    for (let f = 0; f < 3; f++) expect(Math.abs(at(m, f, 16, 12) * 255 - rampLevel(5 + f))).toBeLessThanOrEqual(3);
    await expectMediaError(
      loadMask({ kind: 'file', path: clip.matte }, target(5, 32, 24, 38)),
      'bad-mask',
      clip.matte,
      '40 frames',
      '38..42',
    );
  });

  it('PNG sequence: aligned to the range, first image = clip frame 0', async () => {
    const seqDir = join(dir, 'seq');
    await mkdir(seqDir);
    for (let i = 1; i <= 6; i++) {
      const data = new Uint8Array(32 * 24 * 3).fill(40 * i);
      await writeFile(join(seqDir, `matte_${String(i).padStart(4, '0')}.png`), encodePng(data, 32, 24, 3));
    }
    const pattern = join(seqDir, 'matte_%04d.png');
    const m = await loadMask({ kind: 'file', path: pattern }, target(3, 16, 12, 2));
    expect(m.n).toBe(3);
    for (let f = 0; f < 3; f++) expect(Math.abs(at(m, f, 8, 6) * 255 - 40 * (3 + f))).toBeLessThanOrEqual(1);
    await expectMediaError(
      loadMask({ kind: 'file', path: pattern }, target(3, 16, 12, 4)),
      'bad-mask',
      'matte_0007.png',
    );
  });

  it('rejects a matte of the wrong aspect ratio, naming both sizes', async () => {
    const square = await writePng('square.png', 64, 64, 3, () => [255, 255, 255]);
    await expectMediaError(
      loadMask({ kind: 'file', path: square }, target(1, 32, 16)),
      'bad-mask',
      '64x64',
      '32x16',
      square,
    );
  });

  it('rejects a file that is not an image', async () => {
    const file = join(dir, 'not-an-image.png');
    await writeFile(file, 'this is a text file, not a matte\n'.repeat(20));
    await expectMediaError(loadMask({ kind: 'file', path: file }, target(1, 32, 16)), 'bad-mask', file);
    await expectMediaError(loadMask({ kind: 'file', path: join(dir, 'nope.png') }, target(1, 32, 16)), 'not-found');
  });
});

describe('errors name the file and say what is wrong', () => {
  it('missing file', async () => {
    const f = join(dir, 'missing.mp4');
    await expectMediaError(probeMedia(f), 'not-found', f, 'does not exist');
    await expectMediaError(
      collect(decodeFrames(f, { startFrame: 0, frameCount: 1, fps: FPS24, width: 8, height: 8, chunkFrames: 1 })),
      'not-found',
      f,
    );
  });

  it('directory', async () => {
    await expectMediaError(probeMedia(dir), 'not-a-file', dir, 'folder');
  });

  it('0-byte file', async () => {
    const f = join(dir, 'empty.mp4');
    await writeFile(f, '');
    await expectMediaError(probeMedia(f), 'not-media', f, '0 bytes');
  });

  it('garbage bytes', async () => {
    const f = join(dir, 'garbage.mov');
    const bytes = Buffer.alloc(8192);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919 + (i >> 3) * 104729) & 0xff;
    await writeFile(f, bytes);
    await expectMediaError(probeMedia(f), 'not-media', f, 're-export');
  });

  it('truncated MP4 (index at the end, cut off)', async () => {
    const f = join(dir, 'cut.mp4');
    const full = await readFile(clip.c24);
    await writeFile(f, full.subarray(0, Math.floor(full.length / 2)));
    await expectMediaError(probeMedia(f), 'not-media', f, /moov atom not found/);
  });

  it('audio-only file', async () => {
    const f = join(dir, 'tone.m4a');
    execFileSync(ffmpegPath(), ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'sine=duration=0.5', '-c:a', 'aac', f]);
    await expectMediaError(probeMedia(f), 'no-video', f, 'aac');
  });

  it('PNG still', async () => {
    const f = join(dir, 'still.png');
    await writeFile(f, encodePng(new Uint8Array(16 * 16 * 3), 16, 16, 3));
    await expectMediaError(probeMedia(f), 'still-image', f, 'is a still image; Reshoot edits video clips');
  });

  it('a video codec the bundled ffmpeg cannot decode', async () => {
    // Rename the H.264 sample entry to a fourcc no ffmpeg knows: ffprobe still parses the file.
    const bytes = await readFile(clip.c24);
    const entry = bytes.lastIndexOf('avc1', bytes.indexOf('avcC'));
    bytes.write('zzz9', entry, 'latin1');
    const f = join(dir, 'unknown-codec.mp4');
    await writeFile(f, bytes);
    await expectMediaError(probeMedia(f), 'unsupported-codec', f, 'zzz9', 'FFMPEG_PATH');
  });

  it('FFMPEG_PATH / FFPROBE_PATH pointing nowhere', async () => {
    const saved = { ff: process.env.FFMPEG_PATH, fp: process.env.FFPROBE_PATH };
    const nowhere = join(dir, 'no-ffmpeg-here');
    try {
      process.env.FFMPEG_PATH = nowhere;
      await expectMediaError(() => ffmpegPath(), 'ffmpeg-missing', nowhere, 'FFMPEG_PATH', 'does not exist');
      await expectMediaError(probeMedia(clip.c24), 'ffmpeg-missing', nowhere);
      await expectMediaError(
        createEncoder({ output: join(dir, 'never.mp4'), width: 8, height: 8, fps: FPS24, codec: 'h264' }),
        'ffmpeg-missing',
        nowhere,
      );
      expect((await readdir(dir)).filter((n) => n.includes('never'))).toEqual([]);
      process.env.FFMPEG_PATH = dir;
      await expectMediaError(() => ffmpegPath(), 'ffmpeg-missing', 'is not a file');
      delete process.env.FFMPEG_PATH;
      process.env.FFPROBE_PATH = nowhere;
      await expectMediaError(probeMedia(clip.c24), 'ffmpeg-missing', nowhere, 'FFPROBE_PATH');
    } finally {
      for (const [k, v] of [
        ['FFMPEG_PATH', saved.ff],
        ['FFPROBE_PATH', saved.fp],
      ] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
    expect(ffprobePath()).toContain('ffprobe');
  });
});
