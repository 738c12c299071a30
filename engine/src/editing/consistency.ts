// Temporal-consistency stages of the inversion edit, switchable per job (docs/QUALITY.md has what each measurably
// does). The denoising loop in inversion-edit.ts calls two hooks from here: refineMask() once the automatic mask's
// score is known, and CrossFrameStages.afterStep() after every denoising step when a stage needs all frames of the
// chunk at the same step (latent correction, anchor statistics), which is what makes the loop step in lockstep.
// Both act on the edit's deviation from the source trajectory at the same level, d = z − z*ₖ, never on the latents
// themselves: z ← z*ₖ + blend(d). Where the edit equals the source (a same-prompt edit with direct inversion, or
// anywhere a mask keeps the source) d ≡ 0 and the stages change nothing, bit for bit, mask or no mask.
import { alignToAnchor } from './anchor-stats';
import { correctLatents, neighbourFields, type NeighbourFields } from './latent-correction';
import { refineAutoMask } from './mask-ops';
import { latentFeatures, type SourceFeatures } from './source-features';
import type { InvertedTrajectory } from './types';

export interface LatentCorrectionParams {
  /** Denoising steps, counted from the noisy end, after which the correction runs. */
  steps: number;
  /** [w₋₁, w₀, w₊₁]: weights of the previous frame, the frame itself and the next frame; they sum to 1. */
  weights: [number, number, number];
  /** Correspondence search radius in latent pixels; default 6 (motion up to 6 latent pixels a frame: 5 px/frame on the oracle was missed at 4). */
  radius?: number;
  /** Matches below this cosine similarity are not used; default 0.5. */
  minSimilarity?: number;
}

export interface ConsistencyParams {
  latentCorrection?: LatentCorrectionParams | null;
  /**
   * Align each frame's per-channel latent mean and spread inside the mask to the chunk's first frame: `true` after
   * every denoising step, or after the first `steps` steps only.
   */
  anchorStats?: boolean | { steps: number };
  /** Motion-compensated temporal smoothing of the automatic mask's score: each neighbour's weight, 0..1/3. */
  maskSmoothing?: number;
  /** Hysteresis seed of the automatic mask: regions above the threshold are kept only if they reach this score. */
  maskSeed?: number;
  /** Dilation of the automatic mask, latent pixels. */
  maskDilate?: number;
  /** Outward soft edge of the automatic mask, latent pixels. */
  softEdge?: number;
  /** Frames shared by consecutive chunks of a long clip and crossfaded (read by the job runner, not the loop). */
  chunkOverlap?: number;
}

const DEFAULT_RADIUS = 6;
const DEFAULT_MIN_SIMILARITY = 0.5;

/** Library callers get the same checks the job schema makes (weights summing to 1, smoothing ≤ 1/3). */
export function checkConsistency(c: ConsistencyParams): void {
  const lc = c.latentCorrection;
  if (lc) {
    if (!Number.isInteger(lc.steps) || lc.steps < 0) throw new Error(`latentCorrection.steps must be a non-negative integer, got ${lc.steps}`);
    if (lc.weights.length !== 3 || lc.weights.some((v) => !(v >= 0))) throw new Error('latentCorrection.weights must be three non-negative numbers');
    const sum = lc.weights[0] + lc.weights[1] + lc.weights[2];
    if (Math.abs(sum - 1) > 1e-6) throw new Error(`latentCorrection.weights must sum to 1, they sum to ${sum}`);
  }
  const s = c.maskSmoothing ?? 0;
  if (!(s >= 0 && s <= 1 / 3 + 1e-9)) throw new Error(`maskSmoothing must be between 0 and 1/3, got ${s}`);
}

/** Whether latent correction would change anything: it runs for some steps and the neighbours have weight. */
function correctsLatents(lc: LatentCorrectionParams | null | undefined): lc is LatentCorrectionParams {
  return !!lc && lc.steps > 0 && lc.weights[1] < 1;
}

/** Whether the stages asked for need correspondences between frames (and so the source features). */
export function needsCorrespondences(c: ConsistencyParams | undefined, autoMask: boolean): boolean {
  if (!c) return false;
  return (autoMask && (c.maskSmoothing ?? 0) > 0) || correctsLatents(c.latentCorrection);
}

/** Correspondences between neighbouring frames of the source, from its decoder features or clean latents. */
function sourceFields(traj: InvertedTrajectory, features: SourceFeatures | undefined, radius: number, checkStop: (() => void) | undefined, need?: (t: number, p: number) => boolean): NeighbourFields {
  const f = features ?? latentFeatures(traj);
  return neighbourFields(f.data, traj.n, f.channels, traj.height, traj.width, { radius, checkStop }, need);
}

/**
 * The automatic mask after the consistency refinements, or the plain thresholded mask when none is asked for.
 * Returns the fields it computed so latent correction can reuse them.
 */
export function refineMask(score: Float32Array, threshold: number, traj: InvertedTrajectory, c: ConsistencyParams | undefined, features?: SourceFeatures, checkStop?: () => void): { mask: Float32Array; fields?: NeighbourFields } | undefined {
  if (!c) return undefined;
  checkConsistency(c);
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
  const fields = a > 0 && traj.n > 1 ? sourceFields(traj, features, radius, checkStop, (t, p) => score[t * hw + p] > low) : undefined;
  const mask = refineAutoMask(score, traj.n, traj.height, traj.width, { threshold, smoothing: a, seed, dilate, softEdge, minSimilarity }, fields);
  return { mask, fields };
}

/** The stages that act on all frames of a chunk between denoising steps. */
export class CrossFrameStages {
  /** The frames as they were before a correction pass (every frame reads its neighbours' uncorrected latents). */
  private snapshot?: Float32Array;
  private constructor(
    private readonly c: ConsistencyParams,
    private readonly traj: InvertedTrajectory,
    private readonly mask: Float32Array,
    private readonly fields: NeighbourFields | undefined,
    private readonly anchorSteps: number,
  ) {}

  /** Undefined when no cross-frame stage is on: the loop then runs batch by batch as before. */
  static plan(c: ConsistencyParams | undefined, traj: InvertedTrajectory, mask: Float32Array | undefined, fields?: NeighbourFields, features?: SourceFeatures, checkStop?: () => void): CrossFrameStages | undefined {
    if (!c) return undefined;
    checkConsistency(c);
    if (traj.n < 2) return undefined;
    const K = traj.latents.length - 1;
    const lc = c.latentCorrection;
    const correct = correctsLatents(lc);
    const anchorSteps = c.anchorStats === true ? K : c.anchorStats ? Math.min(K, c.anchorStats.steps) : 0;
    if (!correct && anchorSteps <= 0) return undefined;
    const hw = traj.height * traj.width;
    // Without a mask the whole frame is the edit region. That is safe for an unchanged edit: the stages blend the
    // deviation from the source trajectory, which is zero wherever the edit did not move off it.
    const m = mask ?? new Float32Array(traj.n * hw).fill(1);
    let f: NeighbourFields | undefined;
    if (correct) f = fields ?? sourceFields(traj, features, lc.radius ?? DEFAULT_RADIUS, checkStop, (t, p) => m[t * hw + p] > 0);
    return new CrossFrameStages(c, traj, m, f, anchorSteps);
  }

  /**
   * After denoising step `step` (1 = the first, from the noisiest level) for all frames; z is [n, C, h, w] at
   * trajectory level K − step, and the stages act on its deviation from the source trajectory at that level.
   */
  afterStep(z: Float32Array, step: number): void {
    const { n, channels: C, height: h, width: w } = this.traj;
    const K = this.traj.latents.length - 1;
    const reference = this.traj.latents[K - step];
    if (!reference || reference.length !== z.length) throw new Error(`consistency: no source latents for step ${step} of ${K}`);
    const lc = this.c.latentCorrection;
    if (lc && this.fields && step <= lc.steps) {
      this.snapshot ??= new Float32Array(z.length);
      correctLatents(z, n, C, h * w, this.mask, this.fields, { weights: lc.weights, minSimilarity: lc.minSimilarity ?? DEFAULT_MIN_SIMILARITY, reference }, this.snapshot);
    }
    if (step <= this.anchorSteps) alignToAnchor(z, this.mask, n, C, h * w, { reference });
  }
}
