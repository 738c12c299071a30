// The edit a new user gets: every setting at the job contract's defaults (api/schemas.ts JobRequest and
// ConsistencySpec: 10 DDIM steps, guidance 7.5, direct inversion, strength 1, the consistency stages) on a clip the size
// of a small real one, 320×180 brought to the model's working size as the job runner brings it, showing a saturated red
// rectangle (ffmpeg's `red`, (1, −1, −1)) on a flat gray road with light sensor noise; "a red car on a gray road" →
// "a blue car on a gray road", with the automatic mask and without a mask.
//
// The method table (harness.ts) compares the stages at guidance 1 on the oracle's own red and 64×48 clips, which is why
// it never showed that the defaults turned such a rectangle gray-teal (docs/QUALITY.md, "The job defaults on a
// user-sized clip"). Outputs are clamped to [−1, 1] before they are measured, as the encoder clamps them: what is
// scored is what the user sees.
import { ConsistencySpec, JobRequest } from '../api/schemas';
import type { ImageBatch, MaskBatch } from '../diffusion/images';
import { editFromInversion, inversionEdit } from '../editing/pipelines/inversion-edit';
import type { ConsistencyParams, EditOutput } from '../editing/types';
import { workingSize } from '../media/working-size';
import { ORACLE } from '../models/generate/oracle-spec';
import type { DiffusionModel } from '../models/sd-model';
import { maskedPsnr, maskIoU, meanColour } from './metrics';
import { makeScene, type Rgb, type SyntheticScene } from './synthetic-scene';

/** The job contract's defaults for an inversion edit, read from the schema so the check follows any change to them. */
export interface JobDefaults {
  steps: number;
  guidance: number;
  directInversion: boolean;
  /** The inversion method's default strength (jobs/runner.ts defaultStrength). */
  strength: number;
  /** The automatic mask's default threshold (jobs/method-tasks.ts). */
  maskThreshold: number;
  consistency: ConsistencyParams;
}

export function jobDefaults(): JobDefaults {
  const shape = JobRequest.shape;
  return {
    steps: shape.steps.parse(undefined),
    guidance: shape.guidance.parse(undefined),
    directInversion: shape.directInversion.parse(undefined),
    strength: 1,
    maskThreshold: 0.5,
    consistency: ConsistencySpec.parse({}),
  };
}

/** The source size the check stands for: a small real clip. */
export const USER_CLIP = Object.freeze({ width: 320, height: 180 });
const SOURCE_PROMPT = 'a red car on a gray road';
const TARGET_PROMPT = 'a blue car on a gray road';
/** ffmpeg's `red` (255, 0, 0): more saturated than the oracle's red (0.8, −0.8, −0.8). */
const SATURATED_RED: Rgb = [1, -1, -1];
const GRAY: Rgb = [0, 0, 0];

/** The user clip at the model's working size: a red rectangle crossing a flat gray road, with sensor noise. */
export function userDefaultsClip(model: DiffusionModel, frames: number): SyntheticScene {
  const multiple = model.info.vaeScale === 1 ? 8 : model.info.vaeScale * 8;
  const { width: W, height: H } = workingSize(USER_CLIP.width, USER_CLIP.height, model.info.nativeSize, multiple);
  const w = Math.round(0.3 * W) & ~1;
  const h = Math.round(0.3 * H) & ~1;
  return makeScene({
    frames,
    width: W,
    height: H,
    background: GRAY,
    pattern: { amplitude: 0, period: 8 },
    noise: 0,
    frameNoise: 0.02,
    seed: 21,
    object: {
      shape: 'rect',
      colour: SATURATED_RED,
      size: [w, h],
      centre: [Math.round(0.1 * W) + w / 2, Math.round(0.5 * H)],
      velocity: [Math.max(1, Math.round((0.3 * W) / Math.max(1, frames - 1))), 0],
    },
  });
}

export interface UserDefaultsFigures {
  /** Mean colour of the object's pixels after the edit, clamped to [−1, 1]. */
  objectMean: Rgb;
  /**
   * Fraction of the object's pixels that ended nearer the target colour than both the source colour and the
   * background: 1 for a clean edit, 0 for the gray-teal failure.
   */
  objectEdited: number;
  /** Outside the true object; dB, 100 = identical. */
  backgroundPsnr: number;
  autoMaskIoU?: number;
  /** UNet batch items per frame this edit ran (inversion included on a first edit). */
  unetEvalsPerFrame: number;
  seconds: number;
}

export interface UserDefaultsReport {
  description: string;
  width: number;
  height: number;
  frames: number;
  settings: JobDefaults & { sourcePrompt: string; prompt: string };
  /** The contract's default mask (none) on a first edit: inversion, source branch and edit. */
  noMask: UserDefaultsFigures;
  /** The automatic mask, as a re-edit of the same trajectory (what switching the mask on costs). */
  autoMask: UserDefaultsFigures;
  /** A re-edit at the defaults: the stored trajectory and source steps, so only the target branch runs. */
  reEditUnetEvalsPerFrame: number;
}

function clamped(b: ImageBatch): ImageBatch {
  return { ...b, data: b.data.map((v) => Math.max(-1, Math.min(1, v))) };
}

const dist2 = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2 + (a[2] - b[2]) ** 2;

/** Fraction of the pixels inside `mask` whose colour is nearer `target` than every one of `others`. */
export function fractionNearest(batch: ImageBatch, mask: MaskBatch, target: Rgb, others: Rgb[]): number {
  const hw = batch.height * batch.width;
  let hit = 0;
  let all = 0;
  const px = [0, 0, 0];
  for (let f = 0; f < batch.n; f++) {
    for (let p = 0; p < hw; p++) {
      if (mask.data[f * hw + p] <= 0.5) continue;
      for (let c = 0; c < 3; c++) px[c] = batch.data[(f * 3 + c) * hw + p];
      all++;
      const d = dist2(px, target);
      if (others.every((o) => d < dist2(px, o))) hit++;
    }
  }
  return all ? hit / all : NaN;
}

/**
 * Runs the job defaults on the user clip: a first edit without a mask (the contract's default), then, from its
 * trajectory as the engine's store keeps it, a re-edit with the automatic mask and one without, and measures them.
 * `steps` overrides the default schedule (`reshoot eval --steps`: what the defaults would give at another count).
 */
export async function evaluateUserDefaults(
  model: DiffusionModel,
  o: { frames?: number; batchSize?: number; steps?: number } = {},
): Promise<UserDefaultsReport> {
  const d = { ...jobDefaults(), ...(o.steps === undefined ? {} : { steps: o.steps }) };
  const scene = userDefaultsClip(model, o.frames ?? 4);
  const { frames, objectMask } = scene;
  const target = [...(ORACLE.colours.blue as readonly number[])] as Rgb;
  const params = (auto: boolean) => ({
    sourcePrompt: SOURCE_PROMPT,
    prompt: TARGET_PROMPT,
    steps: d.steps,
    strength: d.strength,
    guidance: d.guidance,
    directInversion: d.directInversion,
    batchSize: o.batchSize ?? 4,
    autoMask: auto ? { threshold: d.maskThreshold } : null,
    consistency: d.consistency,
  });
  const measure = async <T extends EditOutput>(edit: () => Promise<T>) => {
    const t0 = performance.now();
    const evals0 = model.stats.unetEvals;
    const r = await edit();
    const unetEvalsPerFrame = (model.stats.unetEvals - evals0) / frames.n;
    const seconds = (performance.now() - t0) / 1000;
    const out = clamped(r.frames);
    const { n, height, width } = frames;
    const mask = r.latentMask?.length === n * height * width ? r.latentMask : undefined;
    const psnr = maskedPsnr(out, frames, objectMask, 'outside');
    const figures: UserDefaultsFigures = {
      objectMean: meanColour(out, objectMask, 'inside'),
      objectEdited: fractionNearest(out, objectMask, target, [SATURATED_RED, GRAY]),
      // Identical, or as good as (the report's ∞): stored as 100 dB like every other PSNR of the report.
      backgroundPsnr: Math.min(psnr, 100),
      ...(mask ? { autoMaskIoU: maskIoU({ n, height, width, data: mask }, objectMask) } : {}),
      unetEvalsPerFrame,
      seconds,
    };
    return { r, figures };
  };
  const first = await measure(() => inversionEdit(model, frames, params(false)));
  const trajectory = first.r.trajectory;
  const auto = await measure(() => editFromInversion(model, trajectory, params(true)));
  const again = await measure(() => editFromInversion(model, trajectory, params(false)));
  return {
    description:
      `a ${USER_CLIP.width}×${USER_CLIP.height} clip edited at the working size: a saturated red rectangle (1, −1, −1) ` +
      'crossing a flat gray road with σ 0.02 sensor noise, every setting at the job defaults',
    width: frames.width,
    height: frames.height,
    frames: frames.n,
    settings: { ...d, sourcePrompt: SOURCE_PROMPT, prompt: TARGET_PROMPT },
    noMask: first.figures,
    autoMask: auto.figures,
    reEditUnetEvalsPerFrame: again.figures.unetEvalsPerFrame,
  };
}
