// SDEdit baseline: noise the encoded frames to the strength's level and denoise under the target prompt. Every
// frame gets the same noise tensor (same seed), the simplest way to keep unrelated frames from drifting apart.
// The fast preset (fast-edit.ts) is the same loop with a few-step schedule and a single branch.
import type { ImageBatch, MaskBatch } from '../../diffusion/images';
import { seededNoise } from '../../diffusion/random';
import {
  addNoise,
  ddimLevels,
  ddimMove,
  ddimSchedule,
  guidance,
  strengthSteps,
  toX0Eps,
} from '../../diffusion/scheduler';
import type { DiffusionModel } from '../../models/sd-model';
import { batches } from '../../diffusion/images';
import { decodeAll, repeatEmbeddings } from '../loop/batching';
import { ProgressTracker } from '../loop/progress';
import { blendOutsideMask, latentMask } from '../masks/latent-mask';
import type { EditOutput, RunHooks } from '../types';

export interface SdeditParams {
  prompt: string;
  steps: number;
  strength: number;
  guidance: number;
  seed: number;
  batchSize: number;
  mask?: MaskBatch | null;
  /** Also return the VAE decode of the source's clean latents (EditParams.reconstruct). */
  reconstruct?: boolean;
}

export async function sdedit(
  model: DiffusionModel,
  frames: ImageBatch,
  p: SdeditParams,
  hooks: RunHooks = {},
): Promise<EditOutput> {
  const levels = ddimLevels(ddimSchedule(model.scheduler, p.steps));
  return noiseAndDenoise(
    model,
    frames,
    { ...p, levels, K: strengthSteps(p.steps, p.strength), cfg: p.guidance !== 1 },
    hooks,
  );
}

export interface NoisedEditParams {
  prompt: string;
  /** DDIM levels (ddimLevels): level 0 is the clean end. */
  levels: { alpha: number[]; timestep: number[] };
  /** Start level: the frames are noised to levels[K] and denoised in K UNet steps. */
  K: number;
  /** Classifier-free guidance as a second (unconditional) branch; without it the UNet batch is one branch. */
  cfg: boolean;
  /** The CFG scale; guidance − 1 also goes to LCM-style guidance embeddings when the UNet takes one. */
  guidance: number;
  seed: number;
  batchSize: number;
  mask?: MaskBatch | null;
  /** Also return the VAE decode of the source's clean latents (EditParams.reconstruct). */
  reconstruct?: boolean;
}

/** Noise the encoded frames to level K with one shared noise tensor, then DDIM-denoise K steps under the prompt. */
export async function noiseAndDenoise(
  model: DiffusionModel,
  frames: ImageBatch,
  p: NoisedEditParams,
  hooks: RunHooks = {},
): Promise<EditOutput> {
  const s = model.info.vaeScale;
  if (frames.height % s || frames.width % s)
    throw new Error(`frame size ${frames.width}x${frames.height} must be a multiple of ${s}`);
  const { levels, K, cfg } = p;
  const C = model.info.latentChannels;
  const h = frames.height / s;
  const w = frames.width / s;
  const hw = h * w;
  const per = C * hw;
  const type = model.scheduler.predictionType;
  const parts = batches(frames.n, p.batchSize);
  const track = new ProgressTracker(parts.length * (2 + K + (p.reconstruct ? 1 : 0)), frames.n, hooks);
  const prompts = cfg ? ['', p.prompt] : [p.prompt];
  const emb = await model.encodePrompts(prompts);
  const rowLen = emb.data.length / prompts.length;
  const rows = prompts.map((_, i) => emb.data.slice(i * rowLen, (i + 1) * rowLen));
  const noise = seededNoise(p.seed, per);
  const mask = p.mask ? latentMask(p.mask, frames.n, h, w) : undefined;
  const out = new Float32Array(frames.n * per);
  const clean = p.reconstruct ? new Float32Array(frames.n * per) : undefined;
  const pixelsPer = 3 * frames.height * frames.width;

  for (const { start, count } of parts) {
    track.checkStop();
    const sz = count * per;
    const x0 = await model.encodeImages({
      n: count,
      height: frames.height,
      width: frames.width,
      data: frames.data.subarray(start * pixelsPer, (start + count) * pixelsPer),
    });
    clean?.set(x0, start * per);
    track.advance('encoding latents', start);
    const sharedNoise = new Float32Array(sz);
    for (let f = 0; f < count; f++) sharedNoise.set(noise, f * per);
    let z = addNoise(x0, sharedNoise, levels.alpha[K]);
    const e = repeatEmbeddings(rows, count);
    const input = new Float32Array(prompts.length * sz);
    const batchMask = mask?.subarray(start * hw, (start + count) * hw);
    for (let k = K; k >= 1; k--) {
      track.checkStop();
      for (let i = 0; i < prompts.length; i++) input.set(z, i * sz);
      const { eps: pred } = await model.predict(input, prompts.length * count, h, w, levels.timestep[k], e, {
        guidanceEmbedding: p.guidance - 1,
      });
      const eps = cfg ? guidance(pred.subarray(0, sz), pred.subarray(sz, 2 * sz), p.guidance) : pred;
      const next = ddimMove(eps, z, levels.alpha[k], levels.alpha[k - 1], type);
      // Outside the mask the source is kept, noised to the same level with the same noise (blended latent diffusion).
      // At the clean end the source itself is kept, not a lightly noised copy.
      if (batchMask)
        blendOutsideMask(next, k === 1 ? x0 : addNoise(x0, sharedNoise, levels.alpha[k - 1]), batchMask, C, hw);
      const preview = hooks.onProgress
        ? toX0Eps(eps.subarray(0, per), z.subarray(0, per), levels.alpha[k], type).x0
        : undefined;
      z = next;
      track.advance('editing', start, {
        step: K - k + 1,
        steps: K,
        preview: preview && { latent: preview, channels: C, height: h, width: w },
      });
    }
    out.set(z, start * per);
  }
  const edited = await decodeAll(model, out, frames.n, C, h, w, p.batchSize, track);
  // The VAE encode → decode of the source, in the same batches as the edit.
  const reconstruction = clean && (await decodeAll(model, clean, frames.n, C, h, w, p.batchSize, track));
  return { frames: edited, latentMask: mask, warnings: emb.warnings, ...(reconstruction ? { reconstruction } : {}) };
}
