// Latent correction across frames (GenVideo §3.3). Early in denoising, each frame's deviation from the source
// trajectory inside the edit mask (d = z − z_source at the same level) is replaced by a weighted mix of itself and
// its neighbours' deviations carried over through nearest-neighbour correspondence fields (flow/correspondence.ts),
// so all frames commit to the same change where the content is the same. Blending the deviations rather than the
// latents (GenVideo blends the latents) keeps what the edit does not change exactly as it was: a same-prompt edit
// with direct inversion has d ≡ 0 and comes back bit for bit, and the source's own texture and grain are not
// averaged away with the edit.
import type { NeighbourFields } from '../../flow/correspondence';
import type { EditContext, EditStage } from '../loop/stage';
import type { InvertedTrajectory, LatentCorrectionParams } from '../types';
import {
  correctsLatents,
  DEFAULT_MIN_SIMILARITY,
  DEFAULT_RADIUS,
  maskOrAll,
  referenceAt,
  sourceFields,
} from './consistency';

export interface LatentCorrectionOptions {
  /** [w₋₁, w₀, w₊₁], summing to 1. */
  weights: [number, number, number];
  minSimilarity: number;
  /**
   * The source trajectory at the same level as z, [n, C, hw]. When given, the pass blends the edit's deviation from
   * it, d = z − reference, instead of the latents themselves: z ← reference + blend(d). Where the edit has not
   * moved off the source (d ≡ 0: target prompt = source prompt with direct inversion, or outside the edit) nothing
   * changes, bit for bit, while the part the edit changed is still made to agree across frames.
   */
  reference?: Float32Array;
}

/**
 * One correction pass over all frames of a chunk at one denoising step, in place, on the deviations
 * d = z − reference (d = z when no reference is given):
 *   d_t(p) ← d_t(p) + m_t(p) · Σ_d w_d · (d_{t+d}(q_d(p)) − d_t(p)),  d ∈ {−1, +1},   z = reference + d,
 * i.e. the weighted mean w₋₁·d_{t−1}(q₋) + w₀·d_t(p) + w₊₁·d_{t+1}(q₊) inside the mask. A neighbour is left out —
 * its weight going to w₀ — at the chunk's ends, where its match is not trusted, and where the match lies outside
 * the neighbour's own mask (mixing kept background into the edited object would undo the mask). Every frame is
 * corrected from the same snapshot, so the result does not depend on frame order. A pixel whose own deviation and
 * used neighbours' deviations are all zero is left exactly as it was.
 */
export function correctLatents(
  z: Float32Array,
  n: number,
  C: number,
  hw: number,
  mask: Float32Array,
  fields: NeighbourFields,
  o: LatentCorrectionOptions,
  snapshot?: Float32Array,
): void {
  const per = C * hw;
  const ref = o.reference;
  if (ref && ref.length !== z.length)
    throw new Error(`correctLatents: reference has ${ref.length} values, the latents ${z.length}`);
  // The snapshot holds the deviations (the latents themselves without a reference).
  const snap = snapshot && snapshot.length === z.length ? snapshot : new Float32Array(z.length);
  if (ref) for (let i = 0; i < z.length; i++) snap[i] = z[i] - ref[i];
  else snap.set(z);
  const [wm, , wp] = o.weights;
  for (let t = 0; t < n; t++) {
    for (let p = 0; p < hw; p++) {
      const m = mask[t * hw + p];
      if (m <= 0) continue;
      const i = t * hw + p;
      const qPrev = t > 0 && fields.prevSim[i] >= o.minSimilarity ? fields.prev[i] : -1;
      const qNext = t < n - 1 && fields.nextSim[i] >= o.minSimilarity ? fields.next[i] : -1;
      const usePrev = qPrev >= 0 && mask[(t - 1) * hw + qPrev] > 0.5 && wm > 0;
      const useNext = qNext >= 0 && mask[(t + 1) * hw + qNext] > 0.5 && wp > 0;
      if (!usePrev && !useNext) continue;
      for (let c = 0; c < C; c++) {
        const at = t * per + c * hw + p;
        const self = snap[at];
        let delta = 0;
        if (usePrev) delta += wm * (snap[(t - 1) * per + c * hw + qPrev] - self);
        if (useNext) delta += wp * (snap[(t + 1) * per + c * hw + qNext] - self);
        // Unchanged where nothing differs: z itself is kept, not reference + (z − reference) rounded.
        if (delta === 0) continue;
        z[at] = ref ? ref[at] + self + m * delta : self + m * delta;
      }
    }
  }
}

export function latentCorrection(): EditStage {
  let lc: LatentCorrectionParams;
  let traj: InvertedTrajectory;
  let mask: Float32Array;
  let fields: NeighbourFields;
  /** The frames as they were before a correction pass (every frame reads its neighbours' uncorrected latents). */
  let snapshot: Float32Array | undefined;
  return {
    name: 'latent correction',
    async plan(ctx: EditContext) {
      const c = ctx.params.consistency?.latentCorrection;
      if (ctx.traj.n < 2 || !correctsLatents(c)) return false;
      lc = c;
      traj = ctx.traj;
      // Without a mask the whole frame is the edit region. That is safe for an unchanged edit: the stage blends the
      // deviation from the source trajectory, which is zero wherever the edit did not move off it.
      mask = maskOrAll(ctx.state.mask, traj);
      const hw = traj.height * traj.width;
      fields =
        ctx.state.fields ??
        sourceFields(
          traj,
          await ctx.state.features(),
          lc.radius ?? DEFAULT_RADIUS,
          ctx.checkStop,
          (t, p) => mask[t * hw + p] > 0,
        );
      return true;
    },
    afterStep(z, step) {
      const reference = referenceAt(traj, z, step);
      if (step > lc.steps) return;
      snapshot ??= new Float32Array(z.length);
      const { n, channels: C, height: h, width: w } = traj;
      correctLatents(
        z,
        n,
        C,
        h * w,
        mask,
        fields,
        { weights: lc.weights, minSimilarity: lc.minSimilarity ?? DEFAULT_MIN_SIMILARITY, reference },
        snapshot,
      );
    },
  };
}
