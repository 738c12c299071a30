// The stages of an inversion edit, in the order they plan: what the correspondences are searched in, the automatic
// mask, its refinement, then the stages that act between steps. A new method adds its stage file and a line here.
import type { EditStage } from '../loop/stage';
import type { AttentionSpec } from '../../api/schemas';
import type { EditParams } from '../types';
import { anchorStats } from './anchor-stats';
import { autoMaskStage } from './auto-mask';
import { checkConsistency } from './consistency';
import { crossFrameStage } from './cross-frame';
import { reweightStage } from './reweight';
import { structureLockConflict, structureLockStage } from './structure-lock';
import { wordSwapStage } from './word-swap';
import { latentCorrection } from './latent-correction';
import { maskRefinement } from './mask-refinement';
import { decoderFeatureStage } from './source-features';

export function editStages(p: EditParams): EditStage[] {
  if (p.consistency) checkConsistency(p.consistency);
  const conflict = p.structure ? structureLockConflict(p.crossFrame) : undefined;
  if (conflict) throw new Error(conflict);
  return [
    decoderFeatureStage(),
    autoMaskStage(),
    maskRefinement(),
    latentCorrection(),
    anchorStats(),
    crossFrameStage(),
    structureLockStage(),
    wordSwapStage(),
    reweightStage(),
  ];
}

/** Whether the job's attention methods read the source branch in the target's UNet call (the memory plan counts it). */
export function readsSourceBranch(a: AttentionSpec | undefined): boolean {
  return !!a && (a.structure > 0 || !!a.wordSwap);
}
