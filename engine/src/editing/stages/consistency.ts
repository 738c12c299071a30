// Temporal-consistency stages of the inversion edit, switchable per job (docs/QUALITY.md has what each measurably
// does): the automatic mask's refinement (mask-refinement.ts), latent correction (latent-correction.ts) and anchor
// statistics (anchor-stats.ts). Their parameters are the job contract's (api/schemas.ts ConsistencySpec), every
// field optional for library callers. The stages that act between steps act on the edit's deviation from the source
// trajectory at the same level, d = z − z*ₖ, never on the latents themselves: z ← z*ₖ + blend(d). Where the edit
// equals the source (a same-prompt edit with direct inversion, or anywhere a mask keeps the source) d ≡ 0 and the
// stages change nothing, bit for bit, mask or no mask.
import { ConsistencySpec } from '../../api/schemas';
import { neighbourFields, type NeighbourFields } from '../../flow/correspondence';
import type { SourceFeatures } from '../loop/stage';
import type { ConsistencyParams, InvertedTrajectory, LatentCorrectionParams } from '../types';

export const DEFAULT_RADIUS = 6;
export const DEFAULT_MIN_SIMILARITY = 0.5;

const LibraryConsistency = ConsistencySpec.partial();

/** Library callers get the same checks the job schema makes (weights summing to 1, smoothing ≤ 1/3). */
export function checkConsistency(c: ConsistencyParams): void {
  const r = LibraryConsistency.safeParse(c);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new Error(`consistency.${issue.path.join('.')}: ${issue.message}`);
  }
}

/** Whether latent correction would change anything: it runs for some steps and the neighbours have weight. */
export function correctsLatents(lc: LatentCorrectionParams | null | undefined): lc is LatentCorrectionParams {
  return !!lc && lc.steps > 0 && lc.weights[1] < 1;
}

/** Correspondences between neighbouring frames of the source, searched in the given features. */
export function sourceFields(
  traj: InvertedTrajectory,
  f: SourceFeatures,
  radius: number,
  checkStop: (() => void) | undefined,
  need?: (t: number, p: number) => boolean,
): NeighbourFields {
  return neighbourFields(f.data, traj.n, f.channels, traj.height, traj.width, { radius, checkStop }, need);
}

/** Where no mask was given or derived, the whole frame is the edit region. */
export function maskOrAll(mask: Float32Array | undefined, traj: InvertedTrajectory): Float32Array {
  return mask ?? new Float32Array(traj.n * traj.height * traj.width).fill(1);
}

/** The source latents at the level z reached after `step` denoising steps. */
export function referenceAt(traj: InvertedTrajectory, z: Float32Array, step: number): Float32Array {
  const K = traj.latents.length - 1;
  const reference = traj.latents[K - step];
  if (!reference || reference.length !== z.length)
    throw new Error(`consistency: no source latents for step ${step} of ${K}`);
  return reference;
}
