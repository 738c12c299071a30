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
import { structureLockStage } from './structure-lock';
import { tokenFlowStage } from './token-flow';
import { wordSwapStage } from './word-swap';
import { latentCorrection } from './latent-correction';
import { maskRefinement } from './mask-refinement';
import { decoderFeatureStage } from './source-features';

export function editStages(p: EditParams): EditStage[] {
  if (p.consistency) checkConsistency(p.consistency);
  const conflict = attentionConflict(p);
  if (conflict) throw new Error(conflict.detail);
  return [
    decoderFeatureStage(),
    autoMaskStage(),
    maskRefinement(),
    latentCorrection(),
    anchorStats(),
    // Before cross-frame attention and TokenFlow: their joint attention gathers the keys as the lock blended them
    // (the loop applies the stages' graph passes in this order).
    structureLockStage(),
    crossFrameStage(),
    wordSwapStage(),
    reweightStage(),
    tokenFlowStage(),
  ];
}

/**
 * Why the edit's attention methods cannot run together, and the field to change, or undefined. TokenFlow's joint
 * attention and propagation and the cross-frame bank rewrite the same self-attention sites, and would do the same
 * job twice.
 */
export function attentionConflict(
  p: Pick<EditParams, 'crossFrame' | 'tokenFlow'>,
): { field: string; detail: string } | undefined {
  if (p.tokenFlow && p.crossFrame)
    return {
      field: 'attention.crossFrame',
      detail:
        "TokenFlow already carries every frame's attention from shared keyframes, and the two rewrite the same self-attention keys; turn attention.crossFrame off, or turn attention.tokenFlow off",
    };
  return undefined;
}

/** Whether the job's attention methods read the source branch in the target's UNet call (the memory plan counts it). */
export function readsSourceBranch(a: AttentionSpec | undefined): boolean {
  return !!a && (a.structure > 0 || !!a.wordSwap || !!a.tokenFlow);
}
