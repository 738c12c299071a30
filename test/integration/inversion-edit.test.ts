// The inversion edit and SDEdit on the oracle model, whose right answers are known in closed form.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  inversionEdit,
  editFromInversion,
  type InversionEditParams,
} from '../../engine/src/editing/pipelines/inversion-edit';
import { sdedit } from '../../engine/src/editing/pipelines/sdedit';
import { CanceledError, type Progress } from '../../engine/src/editing/types';
import { makeMovingObjectClip } from '../../engine/src/eval/synthetic-clip';
import { colourError, maskedPsnr, maskIoU, meanColour, psnr } from '../../engine/src/eval/metrics';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import { ORACLE, oracleEditPrediction, oracleLatent } from '../../engine/src/models/generate/oracle-spec';
import { loadDiffusionModel, type DiffusionModel } from '../../engine/src/models/sd-model';
import { ddimLevels, ddimSchedule, strengthSteps } from '../../engine/src/diffusion/scheduler';

const RED = ORACLE.colours.red as [number, number, number];
const BLUE = ORACLE.colours.blue as [number, number, number];
const GRAY = ORACLE.colours.gray as [number, number, number];
const SRC = 'a red car on a gray road';
const TGT = 'a blue car on a gray road';

let dir: string;
let model: DiffusionModel;
const clip = makeMovingObjectClip({
  frames: 6,
  width: 32,
  height: 24,
  objectColour: RED,
  backgroundColour: GRAY,
  size: 0.4,
  seed: 7,
});

const base: InversionEditParams = {
  sourcePrompt: SRC,
  prompt: SRC,
  steps: 50,
  strength: 1,
  guidance: 1,
  directInversion: true,
  batchSize: 4,
};

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'oracle-'));
  generateOracle(dir);
  model = await loadDiffusionModel(dir);
});

afterAll(async () => {
  await model?.release();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('inversion edit on the oracle model', () => {
  it('gives the input back exactly when the target prompt is the source prompt (direct inversion)', async () => {
    const r = await inversionEdit(model, clip.frames, { ...base, guidance: 7.5 });
    expect(r.frames.n).toBe(6);
    expect(r.frames.height).toBe(24);
    expect(r.frames.width).toBe(32);
    const db = psnr(r.frames, clip.frames);
    console.log(`round trip, direct inversion, guidance 7.5: PSNR ${db.toFixed(1)} dB`);
    expect(db).toBeGreaterThanOrEqual(35);
  });

  it('plain DDIM inversion (no direct inversion, guidance 1) reconstructs at s = 0.5 as the closed form predicts', async () => {
    const r = await inversionEdit(model, clip.frames, { ...base, directInversion: false });
    const db = psnr(r.frames, clip.frames);
    console.log(`round trip, plain DDIM inversion: PSNR ${db.toFixed(1)} dB`);
    expect(db).toBeGreaterThanOrEqual(35);
  });

  it('red→blue with the true object mask turns the object blue and leaves the background as it was', async () => {
    const r = await inversionEdit(model, clip.frames, { ...base, prompt: TGT, guidance: 1, mask: clip.objectMask });
    const inside = meanColour(r.frames, clip.objectMask, 'inside');
    const err = colourError(r.frames, clip.objectMask, BLUE, 'inside');
    const errBefore = colourError(clip.frames, clip.objectMask, BLUE, 'inside');
    const bg = maskedPsnr(r.frames, clip.frames, clip.objectMask, 'outside');
    console.log(
      `red→blue, mask, strength 1: object mean ${inside.map((v) => v.toFixed(2)).join(',')}, colour error ${err.toFixed(3)} (before ${errBefore.toFixed(3)}), background PSNR ${bg.toFixed(1)} dB`,
    );
    expect(err).toBeLessThan(0.25 * errBefore);
    expect(inside[2]).toBeGreaterThan(0.5);
    expect(inside[0]).toBeLessThan(-0.5);
    expect(bg).toBeGreaterThanOrEqual(45);
  });

  it('the automatic mask finds the object and keeps the background without a user matte', async () => {
    const r = await inversionEdit(model, clip.frames, { ...base, prompt: TGT, autoMask: { threshold: 0.5 } });
    const auto = { n: clip.frames.n, height: 24, width: 32, data: r.latentMask! };
    const iou = maskIoU(auto, clip.objectMask);
    const bg = maskedPsnr(r.frames, clip.frames, clip.objectMask, 'outside');
    const err = colourError(r.frames, clip.objectMask, BLUE, 'inside');
    const free = await inversionEdit(model, clip.frames, { ...base, prompt: TGT });
    const bgFree = maskedPsnr(free.frames, clip.frames, clip.objectMask, 'outside');
    console.log(
      `auto mask: IoU ${iou.toFixed(3)}, background PSNR ${bg.toFixed(1)} dB (no mask: ${bgFree.toFixed(1)} dB), colour error ${err.toFixed(3)}`,
    );
    expect(iou).toBeGreaterThan(0.9);
    expect(bg).toBeGreaterThan(bgFree + 10);
    expect(err).toBeLessThan(0.3);
  });

  it('at strength 0.3 the edit is partial by the amount the single-component flow predicts', async () => {
    const steps = 50;
    const strength = 0.3;
    const r = await inversionEdit(model, clip.frames, { ...base, prompt: TGT, strength, steps, mask: clip.objectMask });
    const K = strengthSteps(steps, strength);
    const aT0 = ddimLevels(ddimSchedule(model.scheduler, steps)).alpha[K];
    const muSrc = oracleLatent(RED);
    const muTgt = oracleLatent(BLUE);
    // Object pixels are red + texture δ; the predicted colour is the mean of μ_tgt + δ + residual.
    const predicted = oracleEditPrediction(muSrc, muSrc, muTgt, aT0);
    const inside = meanColour(r.frames, clip.objectMask, 'inside');
    console.log(
      `strength 0.3: object mean ${inside.map((v) => v.toFixed(3)).join(',')}, closed form ${Array.from(predicted.slice(0, 3), (v) => v.toFixed(3)).join(',')}`,
    );
    for (let c = 0; c < 3; c++) expect(inside[c]).toBeCloseTo(predicted[c], 1);
  });

  it('re-edits from the returned trajectory without inverting again, and without the source branch when its steps are known', async () => {
    const first = await inversionEdit(model, clip.frames, { ...base, prompt: TGT, steps: 20, mask: clip.objectMask });
    expect(first.trajectory.sourceSteps?.guidance).toBe(1);
    expect(first.trajectory.sourceSteps?.levels).toHaveLength(20);
    const evalsOf = async (run: () => Promise<unknown>) => {
      const before = model.stats.unetEvals;
      await run();
      return model.stats.unetEvals - before;
    };
    let again: Awaited<ReturnType<typeof editFromInversion>> | undefined;
    let cold: Awaited<ReturnType<typeof editFromInversion>> | undefined;
    // 20 steps × 6 frames × the target branch only: no inversion, no source branch.
    expect(
      await evalsOf(
        async () =>
          (again = await editFromInversion(model, first.trajectory, { ...base, prompt: TGT, mask: clip.objectMask })),
      ),
    ).toBe(20 * 6);
    expect(again!.sourceSteps).toBeUndefined();
    const { sourceSteps: _known, ...bare } = first.trajectory;
    // Without them the source branch runs beside the target (and its steps come back for the cache).
    expect(
      await evalsOf(
        async () => (cold = await editFromInversion(model, bare, { ...base, prompt: TGT, mask: clip.objectMask })),
      ),
    ).toBe(20 * 6 * 2);
    expect(cold!.sourceSteps?.levels).toHaveLength(20);
    expect(psnr(again!.frames, first.frames)).toBeGreaterThan(60);
    expect(psnr(again!.frames, cold!.frames)).toBeGreaterThan(60);
    // A source prompt with guidance: the steps depend on the scale, so another scale runs the source branch again.
    expect(
      await evalsOf(() =>
        editFromInversion(model, first.trajectory, { ...base, prompt: TGT, guidance: 3, mask: clip.objectMask }),
      ),
    ).toBe(20 * 6 * 4);
  });

  it('reports progress through every stage and stops between UNet calls when canceled', async () => {
    const seen: Progress[] = [];
    await inversionEdit(model, clip.frames, { ...base, steps: 5, batchSize: 3 }, { onProgress: (p) => seen.push(p) });
    expect(seen.map((p) => p.stage)).toEqual([
      ...Array<string[]>(2)
        .fill(['encoding latents', ...Array<string>(5).fill('inverting')])
        .flat(),
      ...Array<string[]>(2).fill(Array<string>(5).fill('editing')).flat(),
      'decoding latents',
      'decoding latents',
    ]);
    expect(seen.map((p) => p.done)).toEqual(seen.map((_, i) => i + 1));
    expect(seen[seen.length - 1].done).toBe(seen[0].total);
    const withPreview = seen.find((p) => p.preview);
    expect(withPreview?.preview?.latent.length).toBe(4 * 24 * 32);

    // With a mask, even the first, noisiest step's preview shows the footage itself wherever the edit does not reach.
    const masked: Progress[] = [];
    const r = await inversionEdit(
      model,
      clip.frames,
      { ...base, prompt: TGT, steps: 5, batchSize: 3, mask: clip.objectMask },
      { onProgress: (p) => masked.push(p) },
    );
    const first = masked.find((p) => p.stage === 'editing' && p.preview)!.preview!.latent;
    const footage = r.trajectory.latents[0].subarray(0, first.length);
    const same = first.filter((v, i) => v === footage[i]).length / first.length;
    expect(same).toBeGreaterThan(0.5);
    expect(same).toBeLessThan(1);

    let calls = 0;
    const run = inversionEdit(model, clip.frames, { ...base, steps: 10 }, { shouldStop: () => ++calls > 4 });
    await expect(run).rejects.toBeInstanceOf(CanceledError);
  });
});

describe('SDEdit baseline on the oracle model', () => {
  it('moves the object towards blue but flips pixels between components; the mask keeps the background', async () => {
    const free = await sdedit(model, clip.frames, {
      prompt: TGT,
      steps: 50,
      strength: 0.8,
      guidance: 1,
      seed: 3,
      batchSize: 6,
    });
    const masked = await sdedit(model, clip.frames, {
      prompt: TGT,
      steps: 50,
      strength: 0.8,
      guidance: 1,
      seed: 3,
      batchSize: 6,
      mask: clip.objectMask,
    });
    const errFree = colourError(free.frames, clip.objectMask, BLUE, 'inside');
    const bgFree = maskedPsnr(free.frames, clip.frames, clip.objectMask, 'outside');
    const bgMasked = maskedPsnr(masked.frames, clip.frames, clip.objectMask, 'outside');
    const errMasked = colourError(masked.frames, clip.objectMask, BLUE, 'inside');
    const errBefore = colourError(clip.frames, clip.objectMask, BLUE, 'inside');
    console.log(
      `SDEdit strength 0.8: colour error ${errFree.toFixed(3)} unmasked, ${errMasked.toFixed(3)} masked (before ${errBefore.toFixed(3)}), background PSNR ${bgFree.toFixed(1)} dB unmasked, ${bgMasked.toFixed(1)} dB masked`,
    );
    // Fresh noise decides each pixel's mixture component anew, so SDEdit moves the object towards blue only partly and
    // repaints background pixels as object ones: the failure the inversion edit exists to avoid.
    expect(errFree).toBeLessThan(0.6 * errBefore);
    expect(errMasked).toBeLessThan(0.6 * errBefore);
    expect(bgFree).toBeLessThan(30);
    expect(bgMasked).toBeGreaterThanOrEqual(45);
    // Same seed: same noise for every frame and a repeatable result.
    const again = await sdedit(model, clip.frames, {
      prompt: TGT,
      steps: 50,
      strength: 0.8,
      guidance: 1,
      seed: 3,
      batchSize: 2,
    });
    expect(psnr(again.frames, free.frames)).toBeGreaterThan(60);
  });
});
