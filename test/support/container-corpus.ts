// Clips in the containers and timings editors bring, made with the ffmpeg the engine uses (so a fresh machine can
// make them): moving content whose hue turns every frame (a one-frame shift costs 5–9 dB, so the best-matching
// source frame identifies each output frame) and a chirp on the audio (cross-correlation finds any offset).
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { ffmpegPath } from '../../engine/src/media/binaries';

export interface CorpusClip {
  name: string;
  file: string;
  /** The range to edit, seconds after the video stream's first frame. */
  range: [number, number];
  hasAudio: boolean;
  /** The source's display size and pixel aspect, which the result must keep. */
  display: [number, number];
  sampleAspect?: [number, number];
  /** Variable frame rate: the result keeps each frame's own timestamp. */
  variable?: boolean;
  /** How far an output frame's time may sit from the source's (default 1 ms). */
  timeToleranceSec?: number;
  /** Matroska/WebM: timestamps are whole milliseconds, so the container itself places audio to ±0.5 ms. */
  millisecondClock?: boolean;
  /** MPEG-TS family: the bundled ffprobe (a 2023 git build) crashes on these. */
  transportStream?: boolean;
}

const SECONDS = 4;
// Saturation well below 1: rotating a saturated colour's hue leaves the RGB gamut, and any RGB pipeline clips it.
const HUE = 'hue=H=2*PI*n/7:s=0.4';
const CHIRP = `aevalsrc=0.5*sin(2*PI*(100*t+150*t*t)):s=48000:d=${SECONDS}`;

function ffmpeg(args: string[]): void {
  const r = spawnSync(ffmpegPath(), ['-nostdin', '-hide_banner', '-v', 'error', '-y', ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ffmpeg ${args.join(' ')} failed: ${r.stderr}`);
}

function pattern(size: string, rate: string, extra = ''): string[] {
  return ['-f', 'lavfi', '-i', `testsrc2=s=${size}:r=${rate}:d=${SECONDS},${HUE}${extra}`];
}

const H264 = ['-c:v', 'libx264', '-preset', 'veryfast', '-crf', '12', '-g', '48', '-pix_fmt', 'yuv420p'];
const WITH_CHIRP = ['-f', 'lavfi', '-i', CHIRP];
const AV = ['-map', '0:v', '-map', '1:a', '-shortest'];

/** Makes every clip of the corpus in `dir`. */
export function makeCorpus(dir: string): CorpusClip[] {
  const at = (name: string) => path.join(dir, name);
  const clips: CorpusClip[] = [];
  const add = (c: Omit<CorpusClip, 'file'> & { file: string }) => clips.push(c);
  // Mid-clip, and across the VFR clip's switch from 30 to 15 fps at 1.3 s.
  const range: [number, number] = [1.1, 1.6];

  const ntsc = at('ntsc-2997-timecode.mp4');
  ffmpeg([
    ...pattern('320x240', '30000/1001'),
    ...WITH_CHIRP,
    ...AV,
    ...H264,
    '-bf',
    '3',
    '-c:a',
    'aac',
    '-timecode',
    '01:00:00;00',
    ntsc,
  ]);
  add({ name: '29.97 fps MP4 with timecode and B-frames', file: ntsc, range, hasAudio: true, display: [320, 240] });

  const film = at('film-23976-timecode.mov');
  ffmpeg([
    ...pattern('320x240', '24000/1001'),
    ...WITH_CHIRP,
    ...AV,
    ...H264,
    '-c:a',
    'pcm_s16le',
    '-timecode',
    '01:00:00:00',
    film,
  ]);
  add({ name: '23.976 fps MOV with timecode, PCM audio', file: film, range, hasAudio: true, display: [320, 240] });

  const fast = at('5994.mp4');
  ffmpeg([
    ...pattern('320x240', '60000/1001'),
    ...WITH_CHIRP,
    ...AV,
    ...H264,
    '-c:a',
    'aac',
    '-timecode',
    '00:59:59;00',
    fast,
  ]);
  add({ name: '59.94 fps MP4 with timecode', file: fast, range, hasAudio: true, display: [320, 240] });

  const noEditList = at('no-editlist.mp4');
  ffmpeg(['-i', ntsc, '-map', '0:v', '-map', '0:a', '-c', 'copy', '-use_editlist', '0', noEditList]);
  add({
    name: 'MP4 without an edit list (video starts after its B-frame delay)',
    file: noEditList,
    range,
    hasAudio: true,
    display: [320, 240],
  });

  const openGop = at('open-gop.mp4');
  ffmpeg([
    ...pattern('320x240', '25'),
    ...WITH_CHIRP,
    ...AV,
    '-c:v',
    'libx264',
    '-preset',
    'veryfast',
    '-crf',
    '12',
    '-pix_fmt',
    'yuv420p',
    '-bf',
    '3',
    '-x264-params',
    'open-gop=1:keyint=20:min-keyint=20',
    '-c:a',
    'aac',
    openGop,
  ]);
  add({ name: 'open GOP with B-frames, 25 fps', file: openGop, range, hasAudio: true, display: [320, 240] });

  const offset = at('ts-offset-leading-audio.mp4');
  ffmpeg([
    '-itsoffset',
    '0.3',
    ...pattern('320x240', '30000/1001'),
    ...WITH_CHIRP,
    ...AV,
    ...H264,
    '-c:a',
    'aac',
    '-output_ts_offset',
    '0.5',
    offset,
  ]);
  add({
    name: 'MP4 with -output_ts_offset and audio leading the video by 0.3 s',
    file: offset,
    range,
    hasAudio: true,
    display: [320, 240],
  });

  const mkv = at('remux.mkv');
  ffmpeg(['-i', ntsc, '-map', '0:v', '-map', '0:a', '-c', 'copy', mkv]);
  add({
    name: 'MKV remux (audio leads the video)',
    file: mkv,
    range,
    hasAudio: true,
    display: [320, 240],
    millisecondClock: true,
  });

  const webm = at('vp9.webm');
  ffmpeg([
    ...pattern('320x240', '30'),
    ...WITH_CHIRP,
    ...AV,
    '-c:v',
    'libvpx-vp9',
    '-deadline',
    'realtime',
    '-cpu-used',
    '8',
    '-b:v',
    '2M',
    '-c:a',
    'libopus',
    webm,
  ]);
  add({ name: 'WebM VP9 with Opus', file: webm, range, hasAudio: true, display: [320, 240], millisecondClock: true });

  const ts = at('broadcast.ts');
  ffmpeg([
    ...pattern('320x240', '30000/1001'),
    ...WITH_CHIRP,
    ...AV,
    ...H264,
    '-bf',
    '2',
    '-c:a',
    'aac',
    '-f',
    'mpegts',
    ts,
  ]);
  add({ name: 'MPEG-TS', file: ts, range, hasAudio: true, display: [320, 240], transportStream: true });

  const m2ts = at('avchd.m2ts');
  ffmpeg([
    ...pattern('320x240', '30000/1001'),
    ...WITH_CHIRP,
    ...AV,
    ...H264,
    '-bf',
    '2',
    '-c:a',
    'aac',
    '-f',
    'mpegts',
    '-mpegts_m2ts_mode',
    '1',
    m2ts,
  ]);
  add({ name: 'M2TS (AVCHD)', file: m2ts, range, hasAudio: true, display: [320, 240], transportStream: true });

  // Variable rate: 30 fps, then every other frame dropped between 1.3 s and 2.7 s (15 fps), then 30 fps again.
  const segments = at('vfr-segments.mp4');
  ffmpeg([
    ...pattern('320x240', '30', ",select='not(between(t\\,1.3\\,2.7)*mod(n\\,2))'"),
    ...WITH_CHIRP,
    ...AV,
    ...H264,
    '-vsync',
    'vfr',
    '-c:a',
    'aac',
    segments,
  ]);
  add({
    name: 'VFR: segments at 30/15/30 fps',
    file: segments,
    range,
    hasAudio: true,
    display: [320, 240],
    variable: true,
  });

  // Phone-like jitter: each frame up to ±12 ms off the 30 fps grid.
  const jitter = at('vfr-jitter.mp4');
  ffmpeg([
    ...pattern('320x240', '30', ",settb=1/90000,setpts='(N/30+0.012*sin(N*2.3))/TB'"),
    ...WITH_CHIRP,
    ...AV,
    ...H264,
    '-vsync',
    'passthrough',
    '-video_track_timescale',
    '90000',
    '-c:a',
    'aac',
    jitter,
  ]);
  add({ name: 'VFR: jittered timestamps', file: jitter, range, hasAudio: true, display: [320, 240], variable: true });

  // A careless muxer: jittered times rounded to the 1/30 s clock, so some frames share a timestamp (Matroska keeps them).
  const duplicated = at('vfr-duplicate-times.mkv');
  ffmpeg([
    ...pattern('320x240', '30', ",setpts='(N/30+0.01*sin(N*1.7))/TB'"),
    ...WITH_CHIRP,
    ...AV,
    ...H264,
    '-vsync',
    'passthrough',
    '-c:a',
    'aac',
    duplicated,
  ]);
  // Frames that share a time come back one tick (1 ms in Matroska) apart, as a muxer needs them.
  add({
    name: 'VFR: frames sharing a timestamp (Matroska)',
    file: duplicated,
    range,
    hasAudio: true,
    display: [320, 240],
    variable: true,
    millisecondClock: true,
    timeToleranceSec: 0.0011,
  });

  const hevc = at('hevc-10bit.mp4');
  ffmpeg([
    ...pattern('320x240', '24'),
    ...WITH_CHIRP,
    ...AV,
    '-c:v',
    'libx265',
    '-preset',
    'ultrafast',
    '-x265-params',
    'log-level=error:crf=12',
    '-pix_fmt',
    'yuv420p10le',
    '-tag:v',
    'hvc1',
    '-c:a',
    'aac',
    hevc,
  ]);
  add({ name: '10-bit HEVC', file: hevc, range, hasAudio: true, display: [320, 240] });

  const pal = at('anamorphic-pal.mp4');
  ffmpeg([...pattern('720x576', '25', ',setsar=64/45'), ...WITH_CHIRP, ...AV, ...H264, '-c:a', 'aac', pal]);
  add({
    name: 'anamorphic PAL 720x576, pixel aspect 64:45',
    file: pal,
    range,
    hasAudio: true,
    display: [720, 576],
    sampleAspect: [64, 45],
  });

  for (const rotation of [90, 270]) {
    const flat = at(`flat-${rotation}.mp4`);
    const rotated = at(`rotated-${rotation}.mp4`);
    ffmpeg([...pattern('320x240', '30'), ...WITH_CHIRP, ...AV, ...H264, '-c:a', 'aac', flat]);
    // This ffmpeg writes a copied stream's rotate tag with the opposite sense (media/README.md, quirks).
    ffmpeg(['-i', flat, '-map', '0', '-c', 'copy', '-metadata:s:v:0', `rotate=${(360 - rotation) % 360}`, rotated]);
    add({ name: `rotated ${rotation}°`, file: rotated, range, hasAudio: true, display: [240, 320] });
  }

  const odd = at('odd-721x405.mp4');
  // testsrc2 rounds its size down to even; the crop in 4:4:4 keeps the odd one.
  ffmpeg([
    ...pattern('722x406', '25', ',format=yuv444p,crop=721:405:0:0'),
    ...WITH_CHIRP,
    ...AV,
    '-c:v',
    'libx264',
    '-preset',
    'veryfast',
    '-crf',
    '12',
    '-pix_fmt',
    'yuv444p',
    '-c:a',
    'aac',
    odd,
  ]);
  add({ name: 'odd size 721x405', file: odd, range, hasAudio: true, display: [721, 405] });

  const single = at('one-frame.mp4');
  ffmpeg([...pattern('320x240', '24'), '-frames:v', '1', ...H264, single]);
  add({ name: 'one-frame clip', file: single, range: [0, 1 / 24], hasAudio: false, display: [320, 240] });

  return clips;
}

export interface DecodedFrames {
  /** Presentation time of each frame after the stream's first frame, in decode output order. */
  times: number[];
  frames: Uint8Array[];
}

/** Every frame of the file's first video stream, at w×h rgb24, with its own time (ffmpeg's showinfo, -copyts). */
export function decodeAll(file: string, w: number, h: number): DecodedFrames {
  const r = spawnSync(
    ffmpegPath(),
    [
      '-nostdin',
      '-hide_banner',
      '-copyts',
      '-i',
      file,
      '-map',
      '0:v:0',
      '-vsync',
      'passthrough',
      '-vf',
      `scale=${w}:${h}:flags=area,showinfo`,
      '-f',
      'rawvideo',
      '-pix_fmt',
      'rgb24',
      'pipe:1',
    ],
    { maxBuffer: 1 << 30 },
  );
  if (r.status !== 0) throw new Error(`decoding ${file} failed: ${r.stderr.toString()}`);
  const pts = [...r.stderr.toString().matchAll(/pts_time:\s*(-?[\d.]+)/g)].map((m) => Number(m[1]));
  const size = w * h * 3;
  const frames: Uint8Array[] = [];
  for (let off = 0; off + size <= r.stdout.length; off += size) frames.push(r.stdout.subarray(off, off + size));
  if (pts.length !== frames.length)
    throw new Error(`${file}: ${frames.length} frames but ${pts.length} showinfo times`);
  const t0 = pts[0];
  return { times: pts.map((t) => t - t0), frames };
}

/**
 * Mono float samples of the file's first audio stream at 48 kHz; sample j is at j/48000 s on the container's clock:
 * gaps between packets (an MP4 without edit list stretches its first sample) are filled, not closed up.
 */
export function decodeAudio(file: string): Float32Array {
  const r = spawnSync(
    ffmpegPath(),
    [
      '-nostdin',
      '-hide_banner',
      '-v',
      'error',
      '-copyts',
      '-i',
      file,
      '-map',
      '0:a:0',
      '-af',
      'aresample=async=1:min_hard_comp=0.0005:first_pts=0',
      '-ac',
      '1',
      '-ar',
      '48000',
      '-f',
      'f32le',
      'pipe:1',
    ],
    { maxBuffer: 1 << 30 },
  );
  if (r.status !== 0) throw new Error(`decoding the audio of ${file} failed: ${r.stderr.toString()}`);
  const buf = Buffer.from(r.stdout);
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

export function psnr(a: Uint8Array, b: Uint8Array): number {
  let se = 0;
  for (let i = 0; i < a.length; i++) se += (a[i] - b[i]) ** 2;
  const mse = se / a.length;
  return mse === 0 ? Infinity : 10 * Math.log10((255 * 255) / mse);
}

/**
 * Where `part` (output audio) sits in `whole` (source audio), in samples, searched within ±`radius` of `expected`:
 * the lag of the largest normalised cross-correlation.
 */
export function bestLag(whole: Float32Array, part: Float32Array, expected: number, radius: number): number {
  let best = -Infinity;
  let lag = expected;
  for (let d = expected - radius; d <= expected + radius; d++) {
    if (d < 0 || d + part.length > whole.length) continue;
    let dot = 0;
    let norm = 0;
    for (let i = 0; i < part.length; i++) {
      dot += part[i] * whole[d + i];
      norm += whole[d + i] * whole[d + i];
    }
    const score = dot / Math.sqrt(norm || 1);
    if (score > best) {
      best = score;
      lag = d;
    }
  }
  return lag;
}
