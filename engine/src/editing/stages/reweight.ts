// Prompt-to-prompt's attention re-weighting: the target prompt's chosen words get their cross-attention scaled after
// the Softmax (no renormalisation, as P2P does it), so the edit follows a word more (scale > 1) or less (< 1, 0 =
// ignore it). Only the target's conditional branch is scaled: the unconditional and source branches stay as they
// were, so guidance pushes towards the re-weighted prompt and direct inversion still measures the source's own miss.
// The scale is a per-token input of every cross-attention site (onnx/passes/cross-attention-maps.ts); which tokens
// belong to a word comes from the tokenizer (prompt-alignment.ts).
import type { ModelInfo, PortTensor } from '../../models/sd-model';
import type { PassRequest } from '../../onnx/graph-cache';
import { crossAttentionMaps, crossAttentionMapsPorts } from '../../onnx/passes/cross-attention-maps';
import type { EditContext, EditStage, UnetCallInfo } from '../loop/stage';
import { tokenSpans } from '../prompt-alignment';
import type { EditParams } from '../types';
import { clipWords, type ClipTokenizer } from '../../models/tokenizer';

interface Site {
  module: string;
  scale: string;
  heads: number;
  layout: 'folded' | 'split';
}

/** The model's cross-attention sites, or why there are none. */
export function reweightSites(info: ModelInfo): ModelInfo['attention']['sites'] | string {
  const cross = info.attention.sites.filter((s) => s.kind === 'cross');
  if (cross.length) return cross;
  return `attention re-weighting scales the UNet's cross-attention to the prompt's words, and this model has none${info.attention.note ? ` (${info.attention.note})` : ''}; leave attention.reweight empty or use a Stable Diffusion model`;
}

/** Why a word list cannot re-weight this prompt (a word that is not one of its words), or undefined. */
export function reweightProblem(prompt: string, reweight: NonNullable<EditParams['reweight']>): string | undefined {
  const words = new Set(clipWords(prompt));
  for (const { word } of reweight) {
    const w = clipWords(word);
    if (w.length !== 1)
      return `attention.reweight: "${word}" is ${w.length ? 'several words' : 'no word'}; give one word of the prompt per entry`;
    if (!words.has(w[0]))
      return `attention.reweight: "${word}" is not a word of the prompt "${prompt}"; give a word as it appears in it`;
  }
  return undefined;
}

/** Per-token scales of the target prompt [T]. */
function reweightRow(tokenizer: ClipTokenizer, prompt: string, reweight: NonNullable<EditParams['reweight']>) {
  const spans = tokenSpans(tokenizer, prompt);
  const row = new Float32Array(tokenizer.maxLength).fill(1);
  for (const { word, scale } of reweight) {
    const [w] = clipWords(word);
    for (const s of spans) if (s.word === w) row.fill(scale, s.start, s.end);
  }
  return row;
}

export function reweightStage(): EditStage {
  let sites: Site[] = [];
  let row: Float32Array = new Float32Array(0);
  let prompt = '';
  let passes: PassRequest[] = [];
  return {
    name: 'attention re-weighting',
    changesPrediction: true,
    get passes() {
      return passes;
    },
    plan(ctx: EditContext) {
      const rw = ctx.params.reweight;
      if (!rw?.length) return false;
      const cross = reweightSites(ctx.model.info);
      if (typeof cross === 'string') throw new Error(cross);
      const problem = reweightProblem(ctx.params.prompt, rw);
      if (problem) throw new Error(problem);
      row = reweightRow(ctx.model.tokenizer, ctx.params.prompt, rw);
      prompt = ctx.params.prompt;
      sites = cross.map((s) => ({
        module: s.module,
        scale: crossAttentionMapsPorts(s.module).scale,
        heads: s.heads,
        layout: s.layout,
      }));
      passes = [{ pass: crossAttentionMaps, options: { sites: sites.map((s) => s.module) } }];
      return true;
    },
    beforeUnet(call) {
      const feeds: Record<string, PortTensor> = {};
      for (const s of sites) feeds[s.scale] = scales(call, s, row, prompt);
      return feeds;
    },
  };
}

/** [items·heads, 1, T] (folded) or [items, 1, 1, T] (split): the row for the target's conditional items, else 1. */
function scales(call: UnetCallInfo, site: Site, row: Float32Array, prompt: string): PortTensor {
  const T = row.length;
  const items = call.branches.length * call.count;
  const perItem = site.layout === 'folded' ? site.heads : 1;
  const data = new Float32Array(items * perItem * T).fill(1);
  call.branches.forEach((b, i) => {
    if (b.latent !== 'target' || b.prompt !== prompt) return;
    for (let j = 0; j < call.count * perItem; j++) data.set(row, (i * call.count * perItem + j) * T);
  });
  const dims = site.layout === 'folded' ? [items * perItem, 1, T] : [items, 1, 1, T];
  return { data, dims };
}
