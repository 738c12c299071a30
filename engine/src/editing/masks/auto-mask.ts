// Automatic edit mask (InvEdit, GenVideo §3.2, after DiffEdit): where the source and target prompts disagree about
// the noise along the inverted trajectory is where the edit belongs. Per frame: |ε(z*_k, target) − ε(z*_k, source)|
// averaged over sampled levels and channels, normalised by the frame's maximum, thresholded.
import type { DiffusionModel } from '../../models/sd-model';
import { batches } from '../../diffusion/images';
import { repeatEmbeddings } from '../loop/batching';
import type { InvertedTrajectory } from '../types';

export interface AutoMaskOptions {
  /** Fraction of the frame's strongest difference above which a latent pixel is edited (DiffEdit uses 0.5). */
  threshold: number;
  /** Trajectory levels sampled, spread evenly over the inversion. */
  levels: number;
  batchSize: number;
}

export interface AutoMask {
  /** Binary mask [n, h, w] at latent resolution. */
  mask: Float32Array;
  /** The normalised difference map before thresholding, [n, h, w] in [0, 1]. */
  score: Float32Array;
  unetEvals: number;
}

/** Levels 1..K sampled evenly, at most `count` of them (level 0 is the clean latent, where ε says nothing). */
export function sampledLevels(K: number, count: number): number[] {
  if (K < 1) return [];
  const m = Math.min(K, Math.max(1, count));
  return Array.from({ length: m }, (_, i) => Math.max(1, Math.round(((i + 1) * K) / m)));
}

export async function autoMask(
  model: DiffusionModel,
  traj: InvertedTrajectory,
  src: Float32Array,
  tgt: Float32Array,
  o: AutoMaskOptions,
  shouldStop?: () => void,
): Promise<AutoMask> {
  const { n, channels: C, height: h, width: w } = traj;
  const hw = h * w;
  const per = C * hw;
  const score = new Float32Array(n * hw);
  const levels = sampledLevels(traj.latents.length - 1, o.levels);
  let unetEvals = 0;
  for (const { start, count } of batches(n, o.batchSize)) {
    const sz = count * per;
    const emb = repeatEmbeddings([src, tgt], count);
    const input = new Float32Array(2 * sz);
    for (const k of levels) {
      shouldStop?.();
      const z = traj.latents[k].subarray(start * per, start * per + sz);
      input.set(z, 0);
      input.set(z, sz);
      const { eps } = await model.predict(input, 2 * count, h, w, traj.timesteps[k], emb);
      unetEvals += 2 * count;
      for (let f = 0; f < count; f++) {
        const dst = (start + f) * hw;
        for (let c = 0; c < C; c++) {
          const o1 = f * per + c * hw;
          for (let p = 0; p < hw; p++) score[dst + p] += Math.abs(eps[sz + o1 + p] - eps[o1 + p]);
        }
      }
    }
  }
  const mask = new Float32Array(n * hw);
  for (let f = 0; f < n; f++) {
    const plane = score.subarray(f * hw, (f + 1) * hw);
    let max = 0;
    for (let p = 0; p < hw; p++) max = Math.max(max, plane[p]);
    // Identical prompts give no difference anywhere: nothing to edit, not everything.
    const scale = max > 1e-12 ? 1 / max : 0;
    for (let p = 0; p < hw; p++) {
      plane[p] *= scale;
      mask[f * hw + p] = plane[p] > o.threshold ? 1 : 0;
    }
  }
  return { mask, score, unetEvals };
}
