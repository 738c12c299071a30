// The automatic mask after the consistency refinements: motion-compensated temporal smoothing of its score, a
// hysteresis seed, dilation and a soft edge (masks/mask-ops.ts). Runs once, before the first step.
import { refineAutoMask } from '../masks/mask-ops';
import type { EditContext, EditStage, SourceFeatures } from '../loop/stage';
import type { NeighbourFields } from '../../flow/correspondence';
import type { ConsistencyParams, InvertedTrajectory } from '../types';
import { DEFAULT_MIN_SIMILARITY, DEFAULT_RADIUS, sourceFields } from './consistency';

/**
 * The refined mask, or undefined when no refinement is asked for (the plain thresholded mask stands). Returns the
 * fields it computed so latent correction can reuse them.
 */
export async function refineMask(
  score: Float32Array,
  threshold: number,
  traj: InvertedTrajectory,
  c: ConsistencyParams,
  features: () => Promise<SourceFeatures>,
  checkStop?: () => void,
): Promise<{ mask: Float32Array; fields?: NeighbourFields } | undefined> {
  const smoothing = c.maskSmoothing ?? 0;
  const dilate = c.maskDilate ?? 0;
  const softEdge = c.softEdge ?? 0;
  const seed = c.maskSeed ?? 0;
  if (smoothing <= 0 && dilate <= 0 && softEdge <= 0 && seed <= threshold) return undefined;
  const radius = c.latentCorrection?.radius ?? DEFAULT_RADIUS;
  const minSimilarity = c.latentCorrection?.minSimilarity ?? DEFAULT_MIN_SIMILARITY;
  const a = Math.min(smoothing, 1 / 3);
  // Smoothing gives s' = (1 − 2a)·s + a·(s₋ + s₊) ≥ (1 − 2a)·s, bounded above by (1 − 2a)·s + 2a: a pixel whose own
  // score is at most `low` can never pass the threshold, so it needs no correspondences (which are what cost time).
  const low = (threshold - 2 * a) / (1 - 2 * a);
  const hw = traj.height * traj.width;
  const fields =
    a > 0 && traj.n > 1
      ? sourceFields(traj, await features(), radius, checkStop, (t, p) => score[t * hw + p] > low)
      : undefined;
  const mask = refineAutoMask(
    score,
    traj.n,
    traj.height,
    traj.width,
    { threshold, smoothing: a, seed, dilate, softEdge, minSimilarity },
    fields,
  );
  return { mask, fields };
}

export const maskRefinement = (): EditStage => ({
  name: 'mask refinement',
  async plan({ traj, params, state, checkStop }: EditContext) {
    const c = params.consistency;
    if (!c || !state.maskScore || !params.autoMask) return false;
    const refined = await refineMask(
      state.maskScore,
      params.autoMask.threshold,
      traj,
      c,
      () => state.features(),
      checkStop,
    );
    if (!refined) return false;
    state.mask = refined.mask;
    state.fields = refined.fields;
    return 'done';
  },
});
