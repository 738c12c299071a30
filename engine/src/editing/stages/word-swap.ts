// Prompt-to-prompt's word swap and refine: for the first part of the steps the target prompt's cross-attention maps
// are the source prompt's, token by aligned token (prompt-alignment.ts: shared words keep their maps, a swapped word
// takes the map of the word it replaces, words only the target has attend freely), so "red car" → "blue car" paints
// blue where the red was instead of wherever blue fits. The source's maps come from the source branch in the same UNet
// call (source-pairs.ts) and are gathered inside the graph (the swap ports of onnx/passes/cross-attention-maps.ts):
// they never leave ONNX Runtime. Only the target's conditional branch is swapped, as P2P does it; the unconditional
// branch and the source branch run as they are.
import type { ModelInfo, PortTensor } from '../../models/sd-model';
import type { PassRequest } from '../../onnx/graph-cache';
import { crossAttentionMaps, crossAttentionMapsPorts } from '../../onnx/passes/cross-attention-maps';
import type { EditContext, EditStage, UnetCallInfo } from '../loop/stage';
import { alignPrompts } from '../prompt-alignment';
import { readerWeights, sourcePairs, sourceRows } from './source-pairs';

interface Site {
  ports: ReturnType<typeof crossAttentionMapsPorts>;
  perItem: number;
  rank: number;
}

/** The model's cross-attention sites, or why word swap cannot run on it. */
export function wordSwapSites(info: ModelInfo): ModelInfo['attention']['sites'] | string {
  const cross = info.attention.sites.filter((s) => s.kind === 'cross');
  if (cross.length) return cross;
  return `word swap carries the source prompt's cross-attention maps over to the target, and this model has no cross-attention${info.attention.note ? ` (${info.attention.note})` : ''}; turn attention.wordSwap off or use a Stable Diffusion model`;
}

/** Why word swap cannot edit from this source prompt, or undefined. */
export function wordSwapProblem(sourcePrompt: string): string | undefined {
  if (sourcePrompt.trim()) return undefined;
  return 'attention.wordSwap keeps the source prompt\'s cross-attention maps, so it needs sourcePrompt: say what the shot shows now, e.g. "a red car on a gray road"';
}

export function wordSwapStage(): EditStage {
  let sites: Site[] = [];
  let tokens: PortTensor = { data: new Float32Array(0), dims: [0] };
  let row = new Float32Array(0);
  let swapSteps = 0;
  let prompts = { prompt: '', sourcePrompt: '' };
  let passes: PassRequest[] = [];
  return {
    name: 'word swap',
    changesPrediction: true,
    readsSourceBranch: true,
    get passes() {
      return passes;
    },
    plan(ctx: EditContext) {
      const ws = ctx.params.wordSwap;
      if (!ws) return false;
      const cross = wordSwapSites(ctx.model.info);
      if (typeof cross === 'string') throw new Error(cross);
      const problem = wordSwapProblem(ctx.params.sourcePrompt);
      if (problem) throw new Error(problem);
      prompts = { prompt: ctx.params.prompt, sourcePrompt: ctx.params.sourcePrompt };
      const { sourceOf } = alignPrompts(ctx.model.tokenizer, prompts.sourcePrompt, prompts.prompt);
      // A new word (−1) reads its own column at weight 0: it attends as the target prompt has it.
      tokens = { data: Float32Array.from(sourceOf, (s, t) => (s < 0 ? t : s)), dims: [sourceOf.length] };
      row = Float32Array.from(sourceOf, (s) => (s < 0 ? 0 : 1));
      swapSteps = Math.max(1, Math.round(ws.steps * (ctx.traj.latents.length - 1)));
      sites = cross.map((s) => ({
        ports: crossAttentionMapsPorts(s.module),
        perItem: s.layout === 'split' ? 1 : s.heads,
        rank: s.layout === 'split' ? 4 : 3,
      }));
      passes = [{ pass: crossAttentionMaps, options: { sites: cross.map((s) => s.module) } }];
      return true;
    },
    beforeUnet(call: UnetCallInfo) {
      if (call.step > swapSteps) return undefined;
      const pairs = sourcePairs(call, prompts, 'conditional');
      const feeds: Record<string, PortTensor> = {};
      for (const site of sites) {
        feeds[site.ports.swapSource] = sourceRows(pairs, site.perItem);
        feeds[site.ports.swapToken] = tokens;
        feeds[site.ports.swapWeight] = readerWeights(pairs, site.perItem, site.rank, row);
      }
      return feeds;
    },
  };
}
