// Media the suites feed the engine: one good clip and every kind of bad file an editor's drive holds.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { encodePng } from '../../../engine/src/media/png';
import { ffmpegPath, makeTestClip } from '../../../engine/src/media';

export interface Fixtures {
  dir: string;
  /** 64x36 H.264, 24 fps, 12 frames (0.5 s), with its moov atom at the end (not faststart). */
  clip: string;
  /** The clip's first half: the index never arrives. */
  truncated: string;
  audioOnly: string;
  still: string;
  empty: string;
  text: string;
  folder: string;
  /** ffprobe parses it, no decoder knows its fourcc. */
  unknownCodec: string;
  /** 16:9 matte at the clip's aspect, all white. */
  matte: string;
  /** Square matte for a 16:9 clip. */
  matteSquare: string;
  /** A text file named .png. */
  matteText: string;
}

export const CLIP_FPS = { num: 24, den: 1 };
export const CLIP_FRAMES = 12;

export async function makeFixtures(dir: string): Promise<Fixtures> {
  fs.mkdirSync(dir, { recursive: true });
  const f: Fixtures = {
    dir,
    clip: path.join(dir, 'clip.mp4'),
    truncated: path.join(dir, 'truncated.mp4'),
    audioOnly: path.join(dir, 'tone.m4a'),
    still: path.join(dir, 'still.png'),
    empty: path.join(dir, 'empty.mp4'),
    text: path.join(dir, 'notes.mp4'),
    folder: path.join(dir, 'a-folder.mov'),
    unknownCodec: path.join(dir, 'unknown-codec.mp4'),
    matte: path.join(dir, 'matte.png'),
    matteSquare: path.join(dir, 'matte-square.png'),
    matteText: path.join(dir, 'matte-text.png'),
  };
  await makeTestClip({
    file: f.clip,
    width: 64,
    height: 36,
    fps: CLIP_FPS,
    frames: CLIP_FRAMES,
    content: 'moving-square',
  });
  const bytes = fs.readFileSync(f.clip);
  fs.writeFileSync(f.truncated, bytes.subarray(0, Math.floor(bytes.length / 2)));
  // Renaming the H.264 sample entry leaves a file ffprobe still parses but no ffmpeg can decode.
  const renamed = Buffer.from(bytes);
  renamed.write('zzz9', renamed.lastIndexOf('avc1', renamed.indexOf('avcC')), 'latin1');
  fs.writeFileSync(f.unknownCodec, renamed);
  execFileSync(ffmpegPath(), [
    '-v',
    'error',
    '-y',
    '-f',
    'lavfi',
    '-i',
    'sine=duration=0.5',
    '-c:a',
    'aac',
    f.audioOnly,
  ]);
  fs.writeFileSync(f.still, encodePng(new Uint8Array(64 * 36 * 3).fill(90), 64, 36, 3));
  fs.writeFileSync(f.empty, '');
  fs.writeFileSync(f.text, 'INT. STUDIO - DAY\nThis is a screenplay, not a video.\n'.repeat(40));
  fs.mkdirSync(f.folder, { recursive: true });
  fs.writeFileSync(f.matte, encodePng(new Uint8Array(64 * 36 * 3).fill(255), 64, 36, 3));
  fs.writeFileSync(f.matteSquare, encodePng(new Uint8Array(64 * 64 * 3).fill(255), 64, 64, 3));
  fs.writeFileSync(f.matteText, 'not an image\n'.repeat(50));
  return f;
}

let serial = 0;

/** A job that finishes in about a second on the oracle model: 3 frames, 2 steps, no guidance branch. */
export function smallJob(clip: string, outDir: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    source: { path: clip, in: 0, out: 0.125 },
    prompt: 'a blue car on a gray road',
    sourcePrompt: 'a red car on a gray road',
    steps: 2,
    guidance: 1,
    output: { path: path.join(outDir, `small-${process.pid}-${++serial}.mp4`) },
    ...over,
  };
}
