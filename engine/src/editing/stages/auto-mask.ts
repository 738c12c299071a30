// The automatic mask as a stage: with no explicit mask, derive one before the first step from where the source and
// target prompts disagree along the inverted trajectory (masks/auto-mask.ts, DiffEdit), from where the UNet's
// cross-attention looks for the words the edit changes (masks/word-mask.ts, FateZero), or from both. The word maps
// come out of the same UNet calls as the difference. Its score stays in the state for the refinement stage after it.
import type { ModelInfo } from '../../models/sd-model';
import { crossAttentionMaps, crossAttentionMapsPorts } from '../../onnx/passes/cross-attention-maps';
import { autoMask, type AutoMaskOptions } from '../masks/auto-mask';
import { thresholdMap } from '../masks/mask-ops';
import { siteGrid } from '../masks/word-mask';
import type { EditContext, EditStage } from '../loop/stage';
import { editedTokens } from '../prompt-alignment';

export const AUTO_MASK_LEVELS = 10;
/** FateZero reads its blend masks at 16×16 of SD's 64×64 latent: the sites at a quarter of the latent resolution. */
const WORD_MAP_RESOLUTION = 4;

/** The cross-attention sites the word maps are read at (one resolution), or why there are none. */
export function wordMapSites(info: ModelInfo): ModelInfo['attention']['sites'] | string {
  const cross = info.attention.sites.filter((s) => s.kind === 'cross');
  if (!cross.length)
    return `an attention mask reads the UNet's cross-attention maps, and this model has none${info.attention.note ? ` (${info.attention.note})` : ''}; use mask.from "difference" or a Stable Diffusion model`;
  const resolutions = [...new Set(cross.map((s) => s.resolution))];
  const fine = resolutions.filter((r) => r <= WORD_MAP_RESOLUTION);
  const r = fine.length ? Math.max(...fine) : Math.min(...resolutions);
  return cross.filter((s) => s.resolution === r);
}

/** Why an attention mask cannot be made for these prompts, or undefined. */
export function wordMaskProblem(sourcePrompt: string): string | undefined {
  if (sourcePrompt.trim()) return undefined;
  return 'an attention mask reads the maps of the words the edit changes, so it needs sourcePrompt: say what the shot shows now, e.g. "a red car on a gray road"';
}

async function wordMaps(ctx: EditContext): Promise<AutoMaskOptions['words']> {
  const { model, params: p, traj } = ctx;
  const sites = wordMapSites(model.info);
  if (typeof sites === 'string') throw new Error(sites);
  const problem = wordMaskProblem(p.sourcePrompt);
  if (problem) throw new Error(problem);
  // The pass over every cross-attention site, as word swap and re-weighting ask for it: one UNet variant for all.
  const all = model.info.attention.sites.filter((s) => s.kind === 'cross').map((s) => s.module);
  const variant = await model.variant([{ pass: crossAttentionMaps, options: { sites: all } }]);
  if (!variant.ok) throw new Error(`the UNet cannot be rewritten for an attention mask: ${variant.reason}`);
  const tokens = editedTokens(model.tokenizer, p.sourcePrompt, p.prompt);
  return {
    variant: variant.id,
    maps: sites.map((s) => crossAttentionMapsPorts(s.module).maps),
    grid: siteGrid(traj.height, traj.width, sites[0].resolution),
    sourceTokens: tokens.source,
    targetTokens: tokens.target,
  };
}

export const autoMaskStage = (): EditStage => ({
  name: 'automatic mask',
  async plan(ctx: EditContext) {
    const { model, traj, params: p, embeddings, state, checkStop } = ctx;
    if (state.mask || !p.autoMask) return false;
    const from = p.autoMask.from ?? 'difference';
    const o = {
      threshold: p.autoMask.threshold,
      levels: p.autoMask.levels ?? AUTO_MASK_LEVELS,
      batchSize: p.batchSize,
      words: from === 'difference' ? undefined : await wordMaps(ctx),
    };
    const auto = await autoMask(model, traj, embeddings.get(p.sourcePrompt)!, embeddings.get(p.prompt)!, o, checkStop);
    if (from === 'difference' || !auto.wordScore) {
      state.mask = auto.mask;
      state.maskScore = auto.score;
    } else {
      const words = auto.wordScore;
      const score = from === 'attention' ? words : auto.score.map((d, i) => (d + words[i]) / 2);
      state.mask = thresholdMap(score, o.threshold);
      state.maskScore = score;
    }
    return 'done';
  },
});
