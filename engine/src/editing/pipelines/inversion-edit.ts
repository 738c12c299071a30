// The inversion edit as a pipeline: the loops of loop/inversion-loop.ts with the stages the parameters ask for
// (stages/index.ts). Library callers and the worker come in here.
import type { ImageBatch } from '../../diffusion/images';
import { strengthSteps } from '../../diffusion/scheduler';
import type { DiffusionModel } from '../../models/sd-model';
import { batches } from '../../diffusion/images';
import { denoiseFromInversion, invertFrames } from '../loop/inversion-loop';
import { ProgressTracker } from '../loop/progress';
import { editStages } from '../stages';
import type {
  EditOutput,
  EditParams,
  InversionParams,
  InvertedTrajectory,
  MethodOutput,
  RunHooks,
  TrajectoryStore,
} from '../types';

export { invertFrames };

/** Denoises from the inverted trajectory under the target prompt and decodes the frames. */
export function editFromInversion(
  model: DiffusionModel,
  traj: InvertedTrajectory,
  p: EditParams,
  hooks: RunHooks = {},
  tracker?: ProgressTracker,
): Promise<EditOutput> {
  return denoiseFromInversion(model, traj, p, editStages(p), hooks, tracker);
}

export interface InversionEditParams extends InversionParams, EditParams {}

export interface InversionEditResult extends EditOutput {
  trajectory: InvertedTrajectory;
}

/** Invert then edit, with one progress fraction over both. */
export async function inversionEdit(
  model: DiffusionModel,
  frames: ImageBatch,
  p: InversionEditParams,
  hooks: RunHooks = {},
): Promise<InversionEditResult> {
  const K = strengthSteps(p.steps, p.strength);
  const nb = batches(frames.n, p.batchSize).length;
  const track = new ProgressTracker(nb * (1 + K) + nb * (K + (p.reconstruct ? 2 : 1)), frames.n, hooks);
  const trajectory = await invertFrames(model, frames, p, hooks, track);
  // The source steps belong with the trajectory they were taken along (and are cached with it), not beside it.
  const { sourceSteps, ...edited } = await editFromInversion(model, trajectory, p, hooks, track);
  return { ...edited, trajectory: { ...trajectory, sourceSteps } };
}

/**
 * The method as the worker runs it: with a store, a stored trajectory is edited without inverting again, and the
 * trajectory (with the source steps this edit computed) goes back into the store instead of to the caller.
 */
export async function inversionMethod(
  model: DiffusionModel,
  frames: ImageBatch,
  p: InversionEditParams,
  hooks: RunHooks = {},
  store?: TrajectoryStore,
): Promise<MethodOutput> {
  const cached = store?.get();
  if (cached) {
    const { sourceSteps, ...edited } = await editFromInversion(model, cached, p, hooks);
    // An entry from an edit without direct inversion (or another guidance scale) gains this edit's source steps.
    if (sourceSteps) store!.put({ ...cached, sourceSteps });
    return { ...edited, cacheHit: true };
  }
  const r = await inversionEdit(model, frames, p, hooks);
  if (!store) return r;
  const { trajectory, ...edited } = r;
  store.put(trajectory);
  return { ...edited, cacheHit: false };
}
