// What a media file is, from ffprobe's JSON. ffprobe (2023 build) reads more than the bundled ffmpeg (2018)
// decodes, so a file is only accepted when the ffmpeg that will decode it lists a decoder for its codec.

import { stat } from 'node:fs/promises';
import { ffmpegPath, ffprobePath } from './binaries';
import { MediaError } from './errors';
import { LOCAL_INPUT, refuseManifest, refusedDemuxer } from './local-input';
import { lastLines, run } from './process';
import { Rational, parseRational, rational, rationalValue } from './rational';

export type { Rational } from './rational';

/** The YUV<->RGB matrix of a stream: what its colour tags say, else what Premiere assumes (HD 709, SD 601). */
export type ColorMatrix = 'bt709' | 'bt601' | 'bt2020';

export interface VideoInfo {
  /** Stream index in the file (for -map). */
  index: number;
  codec: string;
  /** Codec profile as ffprobe names it ("High", "HQ"), when it has one. */
  profile?: string;
  /** Coded size. */
  width: number;
  height: number;
  /** Size after rotation, i.e. what the editor sees; sample aspect is not applied (see sampleAspect). */
  displayWidth: number;
  displayHeight: number;
  /** Clockwise rotation applied for display, as in the classic `rotate` tag (phone portrait clips: 90). */
  rotation: 0 | 90 | 180 | 270;
  /** Exact, e.g. 30000/1001. */
  fps: Rational;
  /** nb_frames when the container states it and it agrees with duration × fps, else round(duration × fps). */
  frameCount: number;
  pixFmt: string;
  bitDepth: number;
  sampleAspect: Rational;
  colorMatrix: ColorMatrix;
  /** SMPTE start timecode (e.g. "01:00:00:00") from the stream, the container or a tmcd track. */
  timecode?: string;
  /** The stream's first presentation time on the container's clock (edit lists applied; B-frame delay, stream offsets and TS clocks included). */
  startTimeSec: number;
  /**
   * startTimeSec relative to the container's start, which is what ffmpeg's input -ss counts from. Frame k of the
   * clip (k/fps after the stream's first frame) sits at originSec + k/fps on that clock; audio that leads the
   * video (an MKV remux, an MP4 without edit list) makes this positive.
   */
  originSec: number;
  /** The stream's time base (1/30000, 1/90000, 1/1000, …): packet timestamps are integers in it. */
  timeBase: Rational;
  /** MPEG-TS / MPEG-PS: the container seeks by byte position, and a seek can land after its target. */
  byteSeeking: boolean;
}

export interface AudioInfo {
  index: number;
  codec: string;
  channels: number;
  sampleRate: number;
  /** Stream duration when the container states one. */
  durationSec?: number;
  /** First sample's time on the container's clock. */
  startTimeSec: number;
}

export interface MediaInfo {
  path: string;
  /** ffprobe's demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2". */
  container: string;
  /** Duration of the video stream (the container's when the stream has none). */
  durationSec: number;
  sizeBytes: number;
  video: VideoInfo;
  audio: AudioInfo[];
}

interface ProbeStream {
  index?: number;
  codec_type?: string;
  codec_name?: string;
  codec_tag_string?: string;
  profile?: string;
  width?: number;
  height?: number;
  pix_fmt?: string;
  bits_per_raw_sample?: string;
  r_frame_rate?: string;
  avg_frame_rate?: string;
  duration?: string;
  nb_frames?: string;
  start_time?: string;
  time_base?: string;
  sample_aspect_ratio?: string;
  color_space?: string;
  sample_rate?: string;
  channels?: number;
  disposition?: Record<string, number>;
  tags?: Record<string, string>;
  side_data_list?: { side_data_type?: string; rotation?: number | string }[];
}

interface ProbeJson {
  streams?: ProbeStream[];
  format?: { format_name?: string; duration?: string; start_time?: string; tags?: Record<string, string> };
}

/** Demuxers that mean "one picture", not a clip. */
function isStillContainer(formatName: string): boolean {
  return formatName.split(',').some((f) => f === 'image2' || f.endsWith('_pipe'));
}

function tag(tags: Record<string, string> | undefined, key: string): string | undefined {
  if (!tags) return undefined;
  const k = Object.keys(tags).find((t) => t.toLowerCase() === key);
  return k === undefined ? undefined : tags[k];
}

function positive(text: unknown): number | null {
  const v = typeof text === 'number' ? text : typeof text === 'string' ? Number(text) : NaN;
  return Number.isFinite(v) && v > 0 ? v : null;
}

function finite(text: unknown): number | null {
  const v = typeof text === 'string' && text.trim() !== '' ? Number(text) : NaN;
  return Number.isFinite(v) ? v : null;
}

const STANDARD_RATES: Rational[] = [
  [24000, 1001],
  [24, 1],
  [25, 1],
  [30000, 1001],
  [30, 1],
  [48, 1],
  [50, 1],
  [60000, 1001],
  [60, 1],
  [100, 1],
  [120, 1],
].map(([n, d]) => ({ num: n, den: d }));

/**
 * r_frame_rate is the exact base rate for constant-rate files; avg_frame_rate is frames/duration. They agree
 * for ordinary clips. Where they do not (interlaced streams report the field rate in r_frame_rate; phones
 * record variable rate), the average is what plays, snapped to a standard rate when it is within 0.5% of one.
 */
function chooseFps(s: ProbeStream): Rational | null {
  const r = parseRational(s.r_frame_rate);
  const avg = parseRational(s.avg_frame_rate);
  if (r && (!avg || Math.abs(rationalValue(avg) / rationalValue(r) - 1) < 0.01)) return r;
  if (!avg) return null;
  const v = rationalValue(avg);
  const snap = STANDARD_RATES.find((std) => Math.abs(v / rationalValue(std) - 1) < 0.005);
  return snap ?? avg;
}

/** A pixel format with an alpha channel (ProRes 4444, PNG/QuickTime Animation with transparency…). */
export function hasAlpha(pixFmt: string): boolean {
  return /^(yuva|gbrap|ya\d|rgba|bgra|argb|abgr)/.test(pixFmt);
}

function bitDepthOf(s: ProbeStream): number {
  const raw = Number(s.bits_per_raw_sample);
  if (Number.isInteger(raw) && raw >= 8 && raw <= 16) return raw;
  const fmt = s.pix_fmt ?? '';
  if (/^(rgb|bgr)(48|a64)|^(rgba|bgra)64|^(ya|gray)16|^p016/.test(fmt)) return 16;
  if (/^p010/.test(fmt)) return 10;
  const m = /p(\d+)(le|be)$/.exec(fmt) ?? /^gray(\d+)(le|be)$/.exec(fmt);
  return m ? Number(m[1]) : 8;
}

function rotationOf(s: ProbeStream): 0 | 90 | 180 | 270 {
  let clockwise = 0;
  const t = tag(s.tags, 'rotate');
  if (t !== undefined && Number.isFinite(Number(t))) clockwise = Number(t);
  for (const sd of s.side_data_list ?? []) {
    // ffprobe reports the display matrix as a counter-clockwise angle (a portrait phone clip reads -90).
    if (sd.side_data_type === 'Display Matrix' && Number.isFinite(Number(sd.rotation)))
      clockwise = -Number(sd.rotation);
  }
  const quarter = ((Math.round(clockwise / 90) % 4) + 4) % 4;
  return ([0, 90, 180, 270] as const)[quarter];
}

function colorMatrixOf(s: ProbeStream, height: number): ColorMatrix {
  const cs = s.color_space ?? '';
  if (cs === 'bt709') return 'bt709';
  if (cs === 'smpte170m' || cs === 'bt470bg' || cs === 'fcc') return 'bt601';
  if (cs.startsWith('bt2020')) return 'bt2020';
  return height >= 720 ? 'bt709' : 'bt601';
}

const decodable = new Map<string, Promise<Set<string>>>();

/** Video codec names the given ffmpeg can decode, from `ffmpeg -codecs` (cached per binary). */
export function decodableVideoCodecs(ffmpeg = ffmpegPath()): Promise<Set<string>> {
  let cached = decodable.get(ffmpeg);
  if (!cached) {
    cached = run(ffmpeg, ['-hide_banner', '-codecs']).then((r) => {
      const set = new Set<string>();
      for (const line of r.stdout.toString('utf8').split('\n')) {
        const m = /^\s([D.])[E.]V\S*\s+(\S+)/.exec(line);
        if (m && m[1] === 'D') set.add(m[2]);
      }
      if (set.size === 0)
        throw new MediaError(
          'ffmpeg-failed',
          `${ffmpeg} -codecs listed no video decoders (${lastLines(r.stderr)}); check that FFMPEG_PATH points to ffmpeg.`,
        );
      return set;
    });
    cached.catch(() => decodable.delete(ffmpeg));
    decodable.set(ffmpeg, cached);
  }
  return cached;
}

/** Fails with not-found / not-a-file / not-media before ffprobe is asked, so the message can be precise. */
export async function checkInputFile(file: string): Promise<number> {
  let st;
  try {
    st = await stat(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EACCES') {
      throw new MediaError(
        'not-found',
        `${file} cannot be opened: permission denied. Give this user read access to it.`,
        { file },
      );
    }
    throw new MediaError(
      'not-found',
      `${file} does not exist. Check the path; if the media was moved or sits on a drive that is not mounted, reconnect it or relink the clip in Premiere.`,
      { file },
    );
  }
  if (st.isDirectory())
    throw new MediaError('not-a-file', `${file} is a folder, not a media file. Choose a video file inside it.`, {
      file,
    });
  if (!st.isFile()) throw new MediaError('not-a-file', `${file} is not a regular file. Choose a video file.`, { file });
  if (st.size === 0) {
    throw new MediaError('not-media', `${file} is empty (0 bytes), so it holds no video. Re-export or re-copy it.`, {
      file,
    });
  }
  await refuseManifest(file);
  return st.size;
}

/** Raw ffprobe JSON for a file, or 'not-media' with ffprobe's reason. */
export async function ffprobeJson(file: string): Promise<ProbeJson> {
  const r = await run(
    ffprobePath(),
    ['-v', 'error', ...LOCAL_INPUT, '-print_format', 'json', '-show_format', '-show_streams', '--', file],
    file,
  );
  let json: ProbeJson;
  try {
    json = JSON.parse(r.stdout.toString('utf8')) as ProbeJson;
  } catch {
    json = {};
  }
  if (r.signal) {
    // A crash says nothing about the file: the bundled ffprobe build segfaults on every MPEG-TS file, for one.
    throw new MediaError(
      'ffmpeg-failed',
      `ffprobe crashed (${r.signal}) while reading ${file}, so its streams could not be read; the file is probably fine. ` +
        `Install ffmpeg 6 or later (with ffprobe) and put it on PATH or set FFMPEG_PATH and FFPROBE_PATH; \`reshoot doctor\` shows which ffprobe is used and why.`,
      { file },
    );
  }
  if (r.code !== 0 || !json.format || !json.streams || json.streams.length === 0) {
    const refused = refusedDemuxer(r.stderr, file);
    if (refused) throw refused;
    const why = lastLines(r.stderr, 2).split(`${file}: `).join('') || 'no streams found';
    throw new MediaError(
      'not-media',
      `${file} is not a media file ffmpeg can read (${why}). It may be damaged or incompletely copied; re-export or re-copy it.`,
      { file },
    );
  }
  return json;
}

export async function probeMedia(file: string): Promise<MediaInfo> {
  const sizeBytes = await checkInputFile(file);
  const json = await ffprobeJson(file);
  const streams = json.streams ?? [];
  const format = json.format ?? {};
  const container = format.format_name ?? 'unknown';

  const audio: AudioInfo[] = streams
    .filter((s) => s.codec_type === 'audio')
    .map((s) => {
      const d = positive(s.duration);
      return {
        index: s.index ?? 0,
        codec: s.codec_name ?? 'unknown',
        channels: s.channels ?? 0,
        sampleRate: Number(s.sample_rate) || 0,
        ...(d ? { durationSec: d } : {}),
        startTimeSec: finite(s.start_time) ?? 0,
      };
    });

  const v = streams.find((s) => s.codec_type === 'video' && !s.disposition?.attached_pic);
  if (isStillContainer(container) && streams.some((s) => s.codec_type === 'video')) {
    throw new MediaError(
      'still-image',
      `${file} is a still image; Reshoot edits video clips. Select a video clip, or use the image as a matte instead.`,
      { file },
    );
  }
  if (!v) {
    const what = audio.length ? `only audio (${audio.map((a) => a.codec).join(', ')})` : 'no audio or video';
    throw new MediaError(
      'no-video',
      `${file} has no video stream (it holds ${what}). Reshoot edits video clips; select a video clip.`,
      { file },
    );
  }

  const codec = v.codec_name ?? 'unknown';
  const ffmpeg = ffmpegPath();
  const decoders = await decodableVideoCodecs(ffmpeg);
  if (!decoders.has(codec)) {
    const named =
      codec === 'unknown'
        ? `an unrecognised video codec (tag "${v.codec_tag_string ?? '?'}")`
        : `the ${codec} video codec`;
    throw new MediaError(
      'unsupported-codec',
      `${file} uses ${named}, which the ffmpeg at ${ffmpeg} cannot decode. Transcode the clip to ProRes or H.264, ` +
        `or set FFMPEG_PATH to a newer ffmpeg build that decodes it.`,
      { file },
    );
  }

  const width = v.width ?? 0;
  const height = v.height ?? 0;
  const fps = chooseFps(v);
  if (!fps || width <= 0 || height <= 0) {
    throw new MediaError(
      'not-media',
      `${file} has a video stream without a usable frame size or frame rate; re-export it.`,
      { file },
    );
  }

  const streamDuration = positive(v.duration);
  const formatDuration = positive(format.duration);
  const nbFrames = positive(v.nb_frames);
  let durationSec = streamDuration ?? formatDuration ?? (nbFrames ? (nbFrames * fps.den) / fps.num : 0);
  const estimate = Math.round((durationSec * fps.num) / fps.den);
  // nb_frames is the container's sample count: exact when present, but some muxers count pre-roll or leave
  // it stale, so it is trusted only when it agrees with duration × fps to within 2 frames or 2%.
  const frameCount =
    nbFrames &&
    Number.isInteger(nbFrames) &&
    (estimate === 0 || Math.abs(nbFrames - estimate) <= Math.max(2, 0.02 * estimate))
      ? nbFrames
      : estimate;
  if (frameCount <= 0) {
    throw new MediaError(
      'not-media',
      `${file} reports no video frames (duration ${durationSec || 0} s). It may be damaged; re-export or re-copy it.`,
      { file },
    );
  }
  if (!durationSec) durationSec = (frameCount * fps.den) / fps.num;

  const rotation = rotationOf(v);
  const swap = rotation === 90 || rotation === 270;
  const timecode =
    tag(v.tags, 'timecode') ??
    tag(format.tags, 'timecode') ??
    streams.map((s) => tag(s.tags, 'timecode')).find((t): t is string => t !== undefined);
  const sar = parseRational(v.sample_aspect_ratio) ?? rational(1, 1);
  const startTimeSec = finite(v.start_time) ?? 0;

  return {
    path: file,
    container,
    durationSec,
    sizeBytes,
    video: {
      index: v.index ?? 0,
      codec,
      ...(v.profile ? { profile: v.profile } : {}),
      width,
      height,
      displayWidth: swap ? height : width,
      displayHeight: swap ? width : height,
      rotation,
      fps,
      frameCount,
      pixFmt: v.pix_fmt ?? 'unknown',
      bitDepth: bitDepthOf(v),
      sampleAspect: sar,
      colorMatrix: colorMatrixOf(v, height),
      ...(timecode !== undefined ? { timecode } : {}),
      startTimeSec,
      originSec:
        startTimeSec - (finite(format.start_time) ?? Math.min(startTimeSec, ...audio.map((a) => a.startTimeSec))),
      timeBase: parseRational(v.time_base) ?? rational(1, 90000),
      byteSeeking: container.split(',').some((f) => f === 'mpegts' || f === 'mpeg' || f === 'mpegvideo'),
    },
    audio,
  };
}
