// Structure lock, plug-and-play (PnP) injection as TokenFlow and VidToMe use it: for the first part of the steps the
// target branch takes the source branch's self-attention queries and keys in the decoder and the residual features
// of up_blocks.1.resnets.1, both computed in the same UNet call from the source video's latent (source-pairs.ts says
// which item reads which). The queries and keys fix which pixels attend to which, so the layout and motion of the
// footage carry over while the values, and so the appearance, follow the target prompt.
//
// One strength s in [0, 1] sets both spans: features for the first s·K of the K steps, queries and keys for the first
// QK_SHARE·s·K, so that s = 0.8 is PnP's own setting (features 80 %, attention 50 %). The pass is
// onnx/passes/structure-lock.ts.
import type { ModelInfo, PortTensor } from '../../models/sd-model';
import type { PassRequest } from '../../onnx/graph-cache';
import { structureLock, structureLockPorts } from '../../onnx/passes/structure-lock';
import type { EditContext, EditStage, UnetCallInfo } from '../loop/stage';
import { readerWeights, sourcePairs, sourceRows } from './source-pairs';

/** Queries and keys are locked for this share of the steps the features are: PnP's 50 % against 80 %. */
export const QK_SHARE = 0.625;
/** The resnet whose residual features PnP injects. */
export const STRUCTURE_FEATURES = ['up_blocks.1.resnets.1'];
const ONE = Float32Array.of(1);

interface Site {
  ports: ReturnType<typeof structureLockPorts>;
  /** Rows per batch item of the blended tensors (the heads where they are folded into the batch) and their rank. */
  perItem: number;
  rank: number;
}

/** The decoder's self-attention sites the lock rewrites, or why there are none. */
export function structureSites(info: ModelInfo): ModelInfo['attention']['sites'] | string {
  const decoder = info.attention.sites.filter((s) => s.kind === 'self' && s.module.startsWith('up_blocks.'));
  if (decoder.length) return decoder;
  return `structure lock takes the source's self-attention in the UNet's decoder, and this model has none${info.attention.note ? ` (${info.attention.note})` : ''}; set attention.structure to 0 or use a Stable Diffusion model`;
}

/** Steps of K during which the features and the queries/keys are injected. */
export function structureSpans(strength: number, K: number): { features: number; attention: number } {
  return { features: Math.round(strength * K), attention: Math.round(QK_SHARE * strength * K) };
}

export function structureLockStage(): EditStage {
  let attention: Site[] = [];
  let features: Site[] = [];
  let spans = { features: 0, attention: 0 };
  let prompts = { prompt: '', sourcePrompt: '' };
  let passes: PassRequest[] = [];
  return {
    name: 'structure lock',
    changesPrediction: true,
    readsSourceBranch: true,
    get passes() {
      return passes;
    },
    plan(ctx: EditContext) {
      const strength = ctx.params.structure ?? 0;
      if (!strength) return false;
      const sites = structureSites(ctx.model.info);
      if (typeof sites === 'string') throw new Error(sites);
      spans = structureSpans(strength, ctx.traj.latents.length - 1);
      if (!spans.features && !spans.attention) return false;
      prompts = { prompt: ctx.params.prompt, sourcePrompt: ctx.params.sourcePrompt };
      attention = sites.map((s) => ({
        ports: structureLockPorts(s.module),
        perItem: s.layout === 'split' ? 1 : s.heads,
        rank: s.layout === 'split' ? 4 : 3,
      }));
      features = STRUCTURE_FEATURES.map((module) => ({ ports: structureLockPorts(module), perItem: 1, rank: 4 }));
      passes = [{ pass: structureLock, options: { sites: sites.map((s) => s.module), features: STRUCTURE_FEATURES } }];
      return true;
    },
    beforeUnet(call: UnetCallInfo) {
      const locked = [
        ...(call.step <= spans.attention ? attention : []),
        ...(call.step <= spans.features ? features : []),
      ];
      if (!locked.length) return undefined;
      const pairs = sourcePairs(call, prompts, 'both');
      const feeds: Record<string, PortTensor> = {};
      for (const site of locked) {
        feeds[site.ports.source] = sourceRows(pairs, site.perItem);
        feeds[site.ports.weight] = readerWeights(pairs, site.perItem, site.rank, ONE);
      }
      return feeds;
    },
  };
}
