// Same-prompt edits of a mid-clip range on every container and timing in the corpus (support/container-corpus.ts):
// output frame i must be the source frame shown at in + i (its best match among the source's neighbours), with the
// range's frame count, the frames' own timestamps, the source's display size, and the audio cut at the same
// instants (chirp cross-correlation, under 1 ms).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { JobRequest } from '../../engine/src/api/schemas';
import { planJob, rangeDecodeOptions, runJob, type JobPlan } from '../../engine/src/jobs/runner';
import { decodePng } from '../../engine/src/media/png';
import { extractStill, probeMedia } from '../../engine/src/media';
import { decodeFrameBytes } from '../../engine/src/media/decode';
import { createEncoder } from '../../engine/src/media/encode';
import { ffmpegSelection } from '../../engine/src/media/binaries';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import { PipelineWorker } from '../../engine/src/worker/pipeline-worker';
import { bestLag, decodeAll, decodeAudio, makeCorpus, psnr, type CorpusClip } from '../support/container-corpus';

let root: string;
let worker: PipelineWorker;
let corpus: CorpusClip[];
const rows: string[] = [];

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'corpus-'));
  generateOracle(path.join(root, 'oracle'));
  corpus = makeCorpus(root);
  worker = await PipelineWorker.start(path.join(root, 'oracle'), { threads: 1 });
}, 300_000);

afterAll(async () => {
  await worker?.terminate();
  fs.rmSync(root, { recursive: true, force: true });
  if (rows.length)
    console.log(
      ['clip | frames | worst frame PSNR dB at 64x48 (codec bound) | max |Δt| ms | audio offset ms', ...rows].join(
        '\n',
      ),
    );
});

const SMALL: [number, number] = [64, 48];

/**
 * The output codec's own bound: the range's source pixels (as the engine decodes them, RGB at display size) encoded
 * with the result's settings and nothing else. Saturated colours that lie outside RGB clip in any RGB pipeline.
 */
async function codecBound(plan: JobPlan, file: string, out: string): Promise<string> {
  const v = plan.info.video;
  const deep = v.bitDepth > 8;
  const enc = await createEncoder({
    output: out,
    width: plan.outWidth,
    height: plan.outHeight,
    fps: v.fps,
    codec: 'h264',
    colorMatrix: v.colorMatrix,
    sampleAspect: v.sampleAspect,
    inputBitDepth: deep ? 16 : 8,
    ...(plan.variable ? { frameTimes: plan.variable.times, endSec: plan.durationSec, timeBase: v.timeBase } : {}),
  });
  for await (const c of decodeFrameBytes(file, rangeDecodeOptions(plan, plan.outWidth, plan.outHeight)))
    await enc.writeRaw(c.data, c.frames);
  await enc.finish();
  return out;
}
const PROMPT = 'a red car on a gray road';

it('covers every container of the corpus', () => {
  expect(corpus.map((c) => c.name)).toHaveLength(19);
});

describe.each(Array.from({ length: 19 }, (_, i) => i))('corpus clip %i', (i) => {
  it('comes back frame-exact with its audio in sync', async () => {
    const clip = corpus[i];
    const out = path.join(root, `out-${i}.mp4`);
    const req = JobRequest.parse({
      source: { path: clip.file, in: clip.range[0], out: clip.range[1] },
      prompt: PROMPT,
      sourcePrompt: PROMPT,
      steps: 2,
      guidance: 1,
      mask: { type: 'none' },
      output: { path: out, codec: 'h264', audio: clip.hasAudio },
    });
    const source = decodeAll(clip.file, ...SMALL);
    const tol = 1e-4;
    const expected = source.times
      .map((t, k) => ({ t, k }))
      .filter(({ t }) => t >= clip.range[0] - tol && t < clip.range[1] - tol);
    expect(expected.length).toBeGreaterThan(0);

    if (clip.transportStream && /^N-66595-/.test(ffmpegSelection().ffprobe.parsed?.raw ?? '')) {
      // The bundled linux ffprobe segfaults on every MPEG-TS file: the refusal says so and what to install.
      const err = await planJob(req, worker.info, out).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(err?.message).toMatch(
        /ffprobe crashed \(SIGSEGV\) while reading .*probably fine.*ffmpeg 6 or later.*FFPROBE_PATH.*reshoot doctor/,
      );
      expect(fs.existsSync(out)).toBe(false);
      rows.push(`${clip.name} | refused: the bundled ffprobe crashes on MPEG-TS | – | – | –`);
      return;
    }
    const plan = await planJob(req, worker.info, out);
    expect(plan.frameCount).toBe(expected.length);
    const result = await runJob(req, plan, { worker, seed: 1, onProgress: () => undefined });
    expect(result.frames).toBe(expected.length);

    const info = await probeMedia(out);
    expect([info.video.displayWidth, info.video.displayHeight]).toEqual(clip.display);
    expect([result.width, result.height]).toEqual(clip.display);
    if (clip.sampleAspect)
      expect([info.video.sampleAspect.num, info.video.sampleAspect.den]).toEqual(clip.sampleAspect);

    const output = decodeAll(out, ...SMALL);
    expect(output.frames.length).toBe(expected.length);
    // Each output frame's own time, relative to the first: the source's spacing, kept (variable rate included).
    let maxDt = 0;
    output.times.forEach((t, j) => (maxDt = Math.max(maxDt, Math.abs(t - (expected[j].t - expected[0].t)))));
    expect(maxDt).toBeLessThan(clip.timeToleranceSec ?? 0.001);
    // The best-matching source frame (of the expected one and its three neighbours each side) is the expected one.
    let worst = Infinity;
    const bound = decodeAll(await codecBound(plan, clip.file, path.join(root, `bound-${i}.mp4`)), ...SMALL);
    let boundWorst = Infinity;
    output.frames.forEach((frame, j) => {
      const e = expected[j].k;
      let best = e;
      let bestDb = -Infinity;
      for (let k = Math.max(0, e - 3); k <= Math.min(source.frames.length - 1, e + 3); k++) {
        const db = psnr(frame, source.frames[k]);
        if (db > bestDb) [best, bestDb] = [k, db];
      }
      expect({ frame: j, best }).toEqual({ frame: j, best: e });
      worst = Math.min(worst, psnr(frame, source.frames[e]));
      boundWorst = Math.min(boundWorst, psnr(bound.frames[j], source.frames[e]));
    });
    // A same-prompt edit is the identity and is composited from the source's own pixels: only the codec is left.
    expect(worst).toBeGreaterThan(boundWorst - 0.5);

    // The panel's poster frame at the in point seeks the same way: the frame shown at that time (on the constant-rate
    // grid; a still of a clip whose frames sit off it is taken from the grid, not from its packets).
    if (!plan.variable && clip.display[0] * 3 === clip.display[1] * 4) {
      const still = decodePng(await extractStill(clip.file, clip.range[0], SMALL[0]));
      expect([still.width, still.height, still.channels]).toEqual([...SMALL, 3]);
      const shown = source.times.filter((t) => t <= clip.range[0] + 1e-6).length - 1;
      let best = -1;
      let bestDb = -Infinity;
      source.frames.forEach((f, k) => {
        const db = Math.abs(k - shown) <= 3 ? psnr(still.data, f) : -Infinity;
        if (db > bestDb) [best, bestDb] = [k, db];
      });
      expect(best).toBe(shown);
    }

    let offsetMs = NaN;
    if (clip.hasAudio) {
      const src = await probeMedia(clip.file);
      const sr = 48000;
      const whole = decodeAudio(clip.file);
      const part = decodeAudio(out).subarray(
        Math.round((info.video.startTimeSec + 0.1) * sr),
        Math.round((info.video.startTimeSec + 0.3) * sr),
      );
      const expectedLag = Math.round((src.video.startTimeSec + expected[0].t + 0.1) * sr);
      const lag = bestLag(whole, part, expectedLag, sr / 20);
      offsetMs = ((lag - expectedLag) / sr) * 1000;
      // Under 1 ms; Matroska's millisecond clock allows its own rounding on top (one sample of slack).
      expect(Math.abs(offsetMs)).toBeLessThan(clip.millisecondClock ? 1 + 1000 / sr : 1);
    }
    rows.push(
      `${clip.name} | ${expected.length} | ${worst.toFixed(1)} (bound ${boundWorst.toFixed(1)}) | ${(maxDt * 1000).toFixed(2)} | ${clip.hasAudio ? offsetMs.toFixed(3) : '–'}`,
    );
  });
});
