// Automatic edit mask (InvEdit, GenVideo §3.2, after DiffEdit): where the source and target prompts disagree about
// the noise along the inverted trajectory is where the edit belongs. Per frame: |ε(z*_k, target) − ε(z*_k, source)|
// averaged over sampled levels and channels, normalised by the frame's maximum, thresholded.
import type { DiffusionModel } from '../../models/sd-model';
import { batches } from '../../diffusion/images';
import { repeatEmbeddings } from '../loop/batching';
import type { InvertedTrajectory } from '../types';
import { addWordMaps, wordMapScore } from './word-mask';

export interface AutoMaskOptions {
  /** Fraction of the frame's strongest difference above which a latent pixel is edited (DiffEdit uses 0.5). */
  threshold: number;
  /** Trajectory levels sampled, spread evenly over the inversion. */
  levels: number;
  batchSize: number;
  /**
   * Also gather the changed words' cross-attention maps from the same UNet calls (word-mask.ts): the UNet variant
   * with the cross-attention-maps pass, its `maps` ports at one resolution, their grid, and the changed words' tokens.
   */
  words?: {
    variant: string;
    maps: string[];
    grid: { h: number; w: number };
    sourceTokens: readonly number[];
    targetTokens: readonly number[];
  };
}

export interface AutoMask {
  /** Binary mask [n, h, w] at latent resolution. */
  mask: Float32Array;
  /** The normalised difference map before thresholding, [n, h, w] in [0, 1]. */
  score: Float32Array;
  /** With `words`: the normalised word-attention map, [n, h, w] in [0, 1]. */
  wordScore?: Float32Array;
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
  const words = o.words;
  const coarse = words && new Float32Array(n * words.grid.h * words.grid.w);
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
      const { eps, outputs } = await model.predict(
        input,
        2 * count,
        h,
        w,
        traj.timesteps[k],
        emb,
        words && { variant: words.variant, outputs: words.maps },
      );
      unetEvals += 2 * count;
      if (words && coarse)
        for (const port of words.maps) {
          const positions = outputs[port].dims[1];
          if (positions !== words.grid.h * words.grid.w)
            throw new Error(
              `${port} has ${positions} positions, not the ${words.grid.w}×${words.grid.h} grid expected at its resolution`,
            );
          addWordMaps(coarse, outputs[port], 0, count, start, words.sourceTokens);
          addWordMaps(coarse, outputs[port], count, count, start, words.targetTokens);
        }
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
  const wordScore = words && coarse && wordMapScore(coarse, n, words.grid.h, words.grid.w, h, w);
  return { mask, score, unetEvals, ...(wordScore ? { wordScore } : {}) };
}
