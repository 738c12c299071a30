// Test media made by ffmpeg's lavfi sources and read back frame by frame at display size, for tests that judge an
// output by its pixels.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ffmpegPath, probeMedia } from '../../engine/src/media';
import { decodeFrameBytes } from '../../engine/src/media/decode';

const run = promisify(execFile);

/** Encodes `frames` frames of a lavfi source (e.g. `color=c=gray:s=320x180:r=24,drawbox=…`) as yuv420p H.264. */
export async function lavfiClip(file: string, source: string, frames: number, x264: string[] = []): Promise<void> {
  await run(ffmpegPath(), [
    '-v',
    'error',
    '-f',
    'lavfi',
    '-i',
    source,
    '-frames:v',
    String(frames),
    '-c:v',
    'libx264',
    ...x264,
    '-pix_fmt',
    'yuv420p',
    '-y',
    file,
  ]);
}

/** The first `frames` frames of a file as display-size rgb24, one buffer per frame. */
export async function displayFrames(file: string, frames: number): Promise<Buffer[]> {
  const info = await probeMedia(file);
  const out: Buffer[] = [];
  for await (const c of decodeFrameBytes(file, {
    startFrame: 0,
    frameCount: frames,
    fps: info.video.fps,
    width: info.video.displayWidth,
    height: info.video.displayHeight,
    chunkFrames: 1,
    colorMatrix: info.video.colorMatrix,
  }))
    out.push(c.data);
  return out;
}
