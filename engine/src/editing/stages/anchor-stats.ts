// Anchor-frame statistics: inside the mask, each frame's deviation from the source trajectory (z − z_source at the
// same level) is given the anchor frame's per-channel mean and standard deviation of that deviation (AdaIN-style),
// so the edit's change cannot drift in colour or contrast from frame to frame, while whatever the edit leaves alone
// (and all of a same-prompt edit) stays exactly the source's.
// The inversion edit needs no shared noise (it starts from each frame's own inverted latent, deterministically);
// SDEdit already shares one seeded noise tensor across all frames (sdedit.ts).
import type { EditContext, EditStage } from '../loop/stage';
import type { InvertedTrajectory } from '../types';
import { maskOrAll, referenceAt } from './consistency';

export interface ChannelStats {
  mean: Float64Array;
  std: Float64Array;
  /** Total mask weight the statistics were taken over. */
  weight: number;
}

/**
 * Per-channel mask-weighted mean and standard deviation of one frame [C, hw] under mask [hw]; of its deviation
 * z − reference when a reference (the source latent at the same level, [C, hw]) is given.
 */
export function maskedChannelStats(
  z: Float32Array,
  m: Float32Array,
  C: number,
  hw: number,
  reference?: Float32Array,
): ChannelStats {
  const mean = new Float64Array(C);
  const std = new Float64Array(C);
  let weight = 0;
  for (let p = 0; p < hw; p++) weight += m[p];
  if (weight <= 0) return { mean, std, weight };
  for (let c = 0; c < C; c++) {
    let s = 0;
    let s2 = 0;
    for (let p = 0; p < hw; p++) {
      const v = reference ? z[c * hw + p] - reference[c * hw + p] : z[c * hw + p];
      s += m[p] * v;
      s2 += m[p] * v * v;
    }
    mean[c] = s / weight;
    std[c] = Math.sqrt(Math.max(0, s2 / weight - mean[c] * mean[c]));
  }
  return { mean, std, weight };
}

export interface AnchorOptions {
  /** Frame whose statistics the others take; default 0 (the chunk's first frame). */
  anchor?: number;
  /** Frames whose mask covers less than this many (weighted) pixels are left alone: too few for statistics. */
  minWeight?: number;
  /** Largest factor by which a frame's spread is scaled, either way; a guard against near-empty regions. */
  maxScale?: number;
  /**
   * The source trajectory at the same level as z, [n, C, hw]. When given, the statistics aligned are those of the
   * edit's deviation d = z − reference, not of the latents: the source's own frame-to-frame differences (lighting,
   * what is visible) stay, the edit's change is what is made to agree, and a frame with d ≡ 0 (nothing edited, or a
   * same-prompt edit with direct inversion) is left exactly as it was.
   */
  reference?: Float32Array;
}

/**
 * In place, for every frame t ≠ anchor and channel c, with d = z − reference (d = z without a reference):
 *   z ← z + m · (μ_a + (d − μ_t) · σ_a / σ_t − d)
 * with μ, σ the mask-weighted statistics of d in frame t and in the anchor under their own masks.
 */
export function alignToAnchor(
  z: Float32Array,
  mask: Float32Array,
  n: number,
  C: number,
  hw: number,
  o: AnchorOptions = {},
): void {
  const a = o.anchor ?? 0;
  const minWeight = o.minWeight ?? 4;
  const maxScale = o.maxScale ?? 2;
  const per = C * hw;
  const ref = o.reference;
  if (ref && ref.length !== z.length)
    throw new Error(`alignToAnchor: reference has ${ref.length} values, the latents ${z.length}`);
  const refOf = (t: number) => ref?.subarray(t * per, (t + 1) * per);
  const anchor = maskedChannelStats(
    z.subarray(a * per, (a + 1) * per),
    mask.subarray(a * hw, (a + 1) * hw),
    C,
    hw,
    refOf(a),
  );
  if (anchor.weight < minWeight) return;
  for (let t = 0; t < n; t++) {
    if (t === a) continue;
    const m = mask.subarray(t * hw, (t + 1) * hw);
    const zt = z.subarray(t * per, (t + 1) * per);
    const rt = refOf(t);
    const st = maskedChannelStats(zt, m, C, hw, rt);
    if (st.weight < minWeight) continue;
    for (let c = 0; c < C; c++) {
      const scale = st.std[c] > 1e-8 ? Math.min(maxScale, Math.max(1 / maxScale, anchor.std[c] / st.std[c])) : 1;
      // Already aligned (in particular: both deviations zero): nothing to do, bit for bit.
      if (anchor.mean[c] === st.mean[c] && scale === 1) continue;
      for (let p = 0; p < hw; p++) {
        if (m[p] <= 0) continue;
        const v = zt[c * hw + p];
        const d = rt ? v - rt[c * hw + p] : v;
        const aligned = anchor.mean[c] + (d - st.mean[c]) * scale;
        zt[c * hw + p] = v + m[p] * (aligned - d);
      }
    }
  }
}

/** The stage: after each of the first `anchorStats.steps` steps (every step for `true`), align to frame 0. */
export function anchorStats(): EditStage {
  let traj: InvertedTrajectory;
  let mask: Float32Array;
  let steps = 0;
  return {
    name: 'anchor statistics',
    plan(ctx: EditContext) {
      const a = ctx.params.consistency?.anchorStats;
      const K = ctx.traj.latents.length - 1;
      steps = a === true ? K : a ? Math.min(K, a.steps) : 0;
      if (ctx.traj.n < 2 || steps <= 0) return false;
      traj = ctx.traj;
      mask = maskOrAll(ctx.state.mask, traj);
      return true;
    },
    afterStep(z, step) {
      const reference = referenceAt(traj, z, step);
      if (step <= steps) alignToAnchor(z, mask, traj.n, traj.channels, traj.height * traj.width, { reference });
    },
  };
}
