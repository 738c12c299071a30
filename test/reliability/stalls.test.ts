// A media file that stops answering (a network share gone quiet, a stalled sync) cannot stall the engine (issue
// "Hardening", finding 2): ffprobe runs have a deadline, a decode that gets no bytes for a while fails, and a cancel
// stops a job waiting on its decoder at once. The stall is real: ffmpeg/ffprobe stand-ins that answer `-version` and
// `-codecs` like the bundled binaries and otherwise hang.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { JobRequest } from '../../engine/src/api/schemas';
import { CanceledError } from '../../engine/src/editing/types';
import { planJob, runJob } from '../../engine/src/jobs/runner';
import { decodeFrames, makeTestClip, probeMedia } from '../../engine/src/media';
import { ffmpegPath, ffprobePath, resetFfmpegSelection } from '../../engine/src/media/binaries';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import { PipelineWorker } from '../../engine/src/worker/pipeline-worker';

let root: string;
let clip: string;
let realFfmpeg: string;
let realFfprobe: string;
const saved = { ...process.env };

function hanging(name: string, real: string): string {
  const file = path.join(root, 'bin', name);
  fs.writeFileSync(file, `#!/bin/sh\ncase "$*" in *-version*|*-codecs*) exec "${real}" "$@";; esac\nexec sleep 120\n`, {
    mode: 0o755,
  });
  return file;
}

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'stalls-'));
  fs.mkdirSync(path.join(root, 'bin'));
  realFfmpeg = ffmpegPath();
  realFfprobe = ffprobePath();
  clip = path.join(root, 'clip.mp4');
  await makeTestClip({
    file: clip,
    width: 128,
    height: 96,
    fps: { num: 24, den: 1 },
    frames: 12,
    codec: 'h264',
    content: 'moving-square',
  });
});

afterEach(() => {
  for (const k of ['FFMPEG_PATH', 'FFPROBE_PATH', 'RESHOOT_PROBE_TIMEOUT_MS', 'RESHOOT_MEDIA_STALL_MS']) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
  resetFfmpegSelection();
});

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

it('fails a probe that gets no answer within its deadline, naming the file and what to do', async () => {
  process.env.FFMPEG_PATH = realFfmpeg;
  process.env.FFPROBE_PATH = hanging('ffprobe', realFfprobe);
  process.env.RESHOOT_PROBE_TIMEOUT_MS = '1000';
  const t0 = Date.now();
  const err = await probeMedia(clip).then(
    () => undefined,
    (e: Error) => e,
  );
  expect(err?.message).toMatch(
    new RegExp(
      `${clip.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} could not be read: ffprobe got no answer within 1 s.*copy it to a local drive`,
    ),
  );
  expect(Date.now() - t0).toBeLessThan(10_000);
});

it('fails a decode that gets no frame for the stall time', async () => {
  const info = await probeMedia(clip);
  process.env.FFMPEG_PATH = hanging('ffmpeg', realFfmpeg);
  process.env.FFPROBE_PATH = realFfprobe;
  process.env.RESHOOT_MEDIA_STALL_MS = '1000';
  const t0 = Date.now();
  const frames = decodeFrames(clip, {
    startFrame: 2,
    frameCount: 4,
    fps: info.video.fps,
    width: 64,
    height: 48,
    chunkFrames: 4,
  });
  const err = await frames.next().then(
    () => undefined,
    (e: Error) => e,
  );
  expect(err?.message).toMatch(
    /stopped delivering frames: nothing for 1 s while decoding frames 2\.\.5.*copy it to a local drive/,
  );
  expect(Date.now() - t0).toBeLessThan(10_000);
});

it('cancels a job waiting on a stalled decoder within a second, and the next job runs', async () => {
  generateOracle(path.join(root, 'oracle'));
  const worker = await PipelineWorker.start(path.join(root, 'oracle'), { threads: 1 });
  try {
    const request = (out: string) =>
      JobRequest.parse({
        source: { path: clip, in: 0, out: 0.25 },
        prompt: 'a blue car on a gray road',
        sourcePrompt: 'a red car on a gray road',
        steps: 2,
        guidance: 1,
        mask: { type: 'none' },
        output: { path: out },
      });
    const stalledOut = path.join(root, 'stalled.mp4');
    const plan = await planJob(request(stalledOut), worker.info, stalledOut);
    process.env.FFMPEG_PATH = hanging('ffmpeg', realFfmpeg);
    process.env.FFPROBE_PATH = realFfprobe;
    const ctx = { worker, seed: 1, onProgress: () => undefined } as Parameters<typeof runJob>[2];
    const job = runJob(request(stalledOut), plan, ctx).then(
      () => undefined,
      (e: Error) => e,
    );
    await new Promise((r) => setTimeout(r, 1500));
    const t0 = Date.now();
    ctx.cancelHook!.cancel();
    const err = await job;
    expect(err).toBeInstanceOf(CanceledError);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(fs.readdirSync(root).filter((n) => n.includes('stalled'))).toEqual([]);

    process.env.FFMPEG_PATH = realFfmpeg;
    resetFfmpegSelection();
    const nextOut = path.join(root, 'next.mp4');
    const r = await runJob(request(nextOut), await planJob(request(nextOut), worker.info, nextOut), {
      worker,
      seed: 1,
      onProgress: () => undefined,
    });
    expect(r.frames).toBe(6);
  } finally {
    await worker.terminate();
  }
}, 60000);
