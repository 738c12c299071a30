// Fast preset for distilled models (SD-Turbo, LCM): an SDEdit-style edit in 1–4 UNet evaluations per frame with no
// classifier-free guidance batch. SD-Turbo is trained for guidance 0 (one conditional branch); LCM takes the guidance
// scale as an embedding input instead of a second branch, and the shared loop feeds it guidance − 1 as diffusers does.
//
// The schedule follows diffusers' img2img: an N-step schedule of which the last K = floor(N · strength) steps run;
// here K is what the caller asks for and N = ceil(K / strength). With trailing spacing (SD-Turbo's config) the
// noisiest level is t = 999, so strength 1 is plain few-step generation. Deterministic DDIM steps are Euler steps in
// σ-space for the scaled sample, so for SD-Turbo's EulerDiscreteScheduler this is the same sampler; LCM's own sampler
// re-noises between steps with fresh noise, which this deterministic loop does not (same end point with one step).
import type { ImageBatch, MaskBatch } from '../../diffusion/images';
import { ddimLevels, ddimSchedule, type SchedulerConfig } from '../../diffusion/scheduler';
import type { DiffusionModel } from '../../models/sd-model';
import { noiseAndDenoise } from './sdedit';
import type { EditOutput, RunHooks } from '../types';

export const FAST_MAX_STEPS = 4;

export interface FastEditParams {
  prompt: string;
  /** UNet evaluations per frame, 1 to FAST_MAX_STEPS. */
  steps: number;
  /** In (0, 1]: how far towards noise the frames go before the few denoising steps. */
  strength: number;
  /** Fed only to a guidance-embedding input (LCM); never a second branch. */
  guidance: number;
  seed: number;
  batchSize: number;
  mask?: MaskBatch | null;
  /** Also return the VAE decode of the source's clean latents (EditParams.reconstruct). */
  reconstruct?: boolean;
}

/** The schedule the fast preset runs: K levels of an N-step schedule in the model's spacing. */
export function fastLevels(
  scheduler: SchedulerConfig,
  steps: number,
  strength: number,
): { levels: { alpha: number[]; timestep: number[] }; K: number; N: number } {
  if (!Number.isInteger(steps) || steps < 1 || steps > FAST_MAX_STEPS)
    throw new Error(`fast mode runs 1 to ${FAST_MAX_STEPS} steps, got ${steps}`);
  if (!(strength > 0 && strength <= 1)) throw new Error(`strength must be in (0, 1] (got ${strength})`);
  const N = Math.min(scheduler.numTrainTimesteps, Math.ceil(steps / strength - 1e-9));
  // LCMScheduler ignores timestep_spacing and steps down from t = 999 over its 50 original steps; trailing spacing is
  // the DDIM spacing that matches that (LCM folders usually carry SD's "leading").
  const cfg: SchedulerConfig =
    scheduler.className === 'LCMScheduler' ? { ...scheduler, timestepSpacing: 'trailing' } : scheduler;
  return { levels: ddimLevels(ddimSchedule(cfg, N)), K: Math.min(steps, N), N };
}

export async function fastEdit(
  model: DiffusionModel,
  frames: ImageBatch,
  p: FastEditParams,
  hooks: RunHooks = {},
): Promise<EditOutput> {
  const { levels, K } = fastLevels(model.scheduler, p.steps, p.strength);
  return noiseAndDenoise(
    model,
    frames,
    {
      prompt: p.prompt,
      levels,
      K,
      cfg: false,
      guidance: p.guidance,
      seed: p.seed,
      batchSize: p.batchSize,
      mask: p.mask,
      reconstruct: p.reconstruct,
    },
    hooks,
  );
}
