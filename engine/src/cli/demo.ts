// `reshoot demo`: a generated clip of a red object moving over a gray road, edited to blue with the embedded
// oracle model, written as a before/after contact sheet with the measured quality beside it. Runs on a fresh
// machine with nothing downloaded.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { contactSheetPng } from '../eval/contact-sheet';
import { colourError, maskedPsnr, meanColour } from '../eval/metrics';
import { makeMovingObjectClip } from '../eval/synthetic-clip';
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
  const clip = makeMovingObjectClip({ frames, width: 128, height: 96, objectColour: red, backgroundColour: gray, size: 0.35, seed: 1 });
  const worker = await PipelineWorker.start(modelDir, { providers: values.provider ? parseProviders(values.provider) : [] });
  const bar = new ProgressLine();
  try {
    console.log(`editing ${frames} frames of 128x96: "${source}" → "${target}" (inversion edit, 50 steps, guidance 1, direct inversion)`);
    const t0 = performance.now();
    const result = await worker.run(
      { kind: 'inversion-edit', frames: clip.frames, params: { sourcePrompt: source, prompt: target, steps: 50, strength: 1, guidance: 1, directInversion: true, batchSize: 8 } },
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
      backgroundPsnrDb: +maskedPsnr(result.frames, clip.frames, clip.objectMask, 'outside').toFixed(2),
    };
    fs.mkdirSync(out, { recursive: true });
    const sheet = path.join(out, 'before-after.png');
    fs.writeFileSync(sheet, contactSheetPng([{ label: 'SOURCE: RED', frames: clip.frames }, { label: 'EDIT: BLUE', frames: result.frames }], { maxColumns: 8 }));
    fs.writeFileSync(path.join(out, 'figures.json'), JSON.stringify(figures, null, 2) + '\n');
    console.log(`object colour ${figures.objectMeanColour.join(', ')} (target ${blue.join(', ')}), colour error ${figures.objectColourError} (was ${figures.objectColourErrorBefore})`);
    console.log(`background PSNR ${figures.backgroundPsnrDb} dB, ${figures.unetEvaluationsPerFrame} UNet evaluations per frame, ${figures.seconds} s`);
    console.log(`wrote ${sheet}`);
    return 0;
  } finally {
    await worker.terminate();
  }
}
