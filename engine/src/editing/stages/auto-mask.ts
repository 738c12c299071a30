// The automatic mask as a stage: with no explicit mask, derive one from where the source and target prompts disagree
// along the inverted trajectory (masks/auto-mask.ts), before the first step. Its score stays in the state for the
// refinement stage after it.
import { autoMask } from '../masks/auto-mask';
import type { EditContext, EditStage } from '../loop/stage';

export const AUTO_MASK_LEVELS = 10;

export const autoMaskStage = (): EditStage => ({
  name: 'automatic mask',
  async plan({ model, traj, params: p, embeddings, state, checkStop }: EditContext) {
    if (state.mask || !p.autoMask) return false;
    const o = {
      threshold: p.autoMask.threshold,
      levels: p.autoMask.levels ?? AUTO_MASK_LEVELS,
      batchSize: p.batchSize,
    };
    const auto = await autoMask(model, traj, embeddings.get(p.sourcePrompt)!, embeddings.get(p.prompt)!, o, checkStop);
    state.mask = auto.mask;
    state.maskScore = auto.score;
    return 'done';
  },
});
