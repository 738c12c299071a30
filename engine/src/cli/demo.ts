// `reshoot demo`: a generated clip of a red object moving over a gray road, edited to blue with the embedded
// oracle model, written as a before/after contact sheet with the measured quality beside it. Runs on a fresh
// machine with nothing downloaded.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ImageBatch } from '../diffusion/images';
import { contactSheetPng } from '../eval/contact-sheet';
import { colourError, maskedPsnr, maskIoU, meanColour } from '../eval/metrics';
import { makeMovingObjectClip } from '../eval/synthetic-clip';
import { createEncoder } from '../media/encode';
import { ORACLE } from '../models/generate/oracle-spec';
import { resolveModel } from '../models/default-model';
import { parseProviders } from '../models/providers';
import { PipelineWorker } from '../worker/pipeline-worker';
import { intOption, parse } from './args';
import { ProgressLine } from './progress-line';

type Rgb = [number, number, number];

export async function runDemo(argv: string[]): Promise<number> {
  const { values } = parse(argv, { out: { type: 'string' }, frames: { type: 'string' }, provider: { type: 'string' } });
  const out = path.resolve(values.out ?? 'reshoot-demo');
  const frames = intOption(values.frames, 'frames', 24, 2, 600);
  const red = ORACLE.colours.red as Rgb;
  const blue = ORACLE.colours.blue as Rgb;
  const gray = ORACLE.colours.gray as Rgb;
  const source = 'a red car on a gray road';
  const target = 'a blue car on a gray road';

  const modelDir = resolveModel();
  console.log(`model: ${modelDir} (embedded oracle; see docs/ORACLE.md)`);
  const clip = makeMovingObjectClip({
    frames,
    width: 128,
    height: 96,
    objectColour: red,
    backgroundColour: gray,
    size: 0.35,
    seed: 1,
  });
  const worker = await PipelineWorker.start(modelDir, {
    providers: values.provider ? parseProviders(values.provider) : [],
  });
  const bar = new ProgressLine();
  try {
    console.log(
      `editing ${frames} frames of 128x96: "${source}" → "${target}" (inversion edit, 50 steps, guidance 1, direct inversion, automatic mask)`,
    );
    const t0 = performance.now();
    const result = await worker.run(
      {
        kind: 'inversion-edit',
        frames: clip.frames,
        params: {
          sourcePrompt: source,
          prompt: target,
          steps: 50,
          strength: 1,
          guidance: 1,
          directInversion: true,
          autoMask: { threshold: 0.5 },
          batchSize: 8,
        },
      },
      { onProgress: (p) => bar.update(p) },
    ).result;
    bar.done();
    const seconds = (performance.now() - t0) / 1000;
    const inside = meanColour(result.frames, clip.objectMask, 'inside');
    const figures = {
      frames,
      seconds: +seconds.toFixed(2),
      unetEvaluationsPerFrame: result.stats.unetEvals / frames,
      objectMeanColour: inside.map((v) => +v.toFixed(3)),
      targetColour: blue,
      objectColourError: +colourError(result.frames, clip.objectMask, blue, 'inside').toFixed(4),
      objectColourErrorBefore: +colourError(clip.frames, clip.objectMask, blue, 'inside').toFixed(4),
      // JSON has no Infinity: an untouched background (identical pixels) is reported as a word.
      backgroundPsnrDb: dbOrIdentical(maskedPsnr(result.frames, clip.frames, clip.objectMask, 'outside')),
      autoMaskIoU: result.latentMask
        ? +maskIoU({ ...clip.objectMask, data: result.latentMask }, clip.objectMask).toFixed(4)
        : null,
    };
    fs.mkdirSync(out, { recursive: true });
    const sheet = path.join(out, 'before-after.png');
    const rows = [
      { label: 'SOURCE: RED', frames: clip.frames },
      { label: 'EDIT: BLUE', frames: result.frames },
    ];
    if (result.latentMask)
      rows.push({
        label: 'AUTO MASK',
        frames: maskAsImages(result.latentMask, frames, clip.frames.height, clip.frames.width),
      });
    fs.writeFileSync(sheet, contactSheetPng(rows, { maxColumns: 8 }));
    fs.writeFileSync(path.join(out, 'figures.json'), JSON.stringify(figures, null, 2) + '\n');
    // The clips themselves, as an editor would look at them (24 fps H.264).
    for (const [name, batch] of [
      ['source.mp4', clip.frames],
      ['edited.mp4', result.frames],
    ] as const) {
      const enc = await createEncoder({
        output: path.join(out, name),
        width: batch.width,
        height: batch.height,
        fps: { num: 24, den: 1 },
        codec: 'h264',
        overwrite: true,
      });
      await enc.write(batch);
      await enc.finish();
    }
    console.log(
      `object colour ${figures.objectMeanColour.join(', ')} (target ${blue.join(', ')}), colour error ${figures.objectColourError} (was ${figures.objectColourErrorBefore})`,
    );
    console.log(`automatic mask IoU ${figures.autoMaskIoU} against the true object mask`);
    console.log(
      `background PSNR ${figures.backgroundPsnrDb}${figures.backgroundPsnrDb === 'identical' ? ' (no pixel changed)' : ' dB'}, ${figures.unetEvaluationsPerFrame} UNet evaluations per frame, ${figures.seconds} s`,
    );
    console.log(`wrote ${sheet}, ${path.join(out, 'source.mp4')}, ${path.join(out, 'edited.mp4')}`);
    return 0;
  } finally {
    await worker.terminate();
  }
}

/** A [n, h, w] matte as gray frames, for the contact sheet. */
function maskAsImages(mask: Float32Array, n: number, height: number, width: number): ImageBatch {
  const hw = height * width;
  const data = new Float32Array(n * 3 * hw);
  for (let f = 0; f < n; f++)
    for (let c = 0; c < 3; c++) for (let p = 0; p < hw; p++) data[(f * 3 + c) * hw + p] = mask[f * hw + p] * 2 - 1;
  return { n, height, width, data };
}

function dbOrIdentical(db: number): number | 'identical' {
  return Number.isFinite(db) ? +db.toFixed(2) : 'identical';
}
