// Attention sites of a Stable Diffusion UNet graph: where self- and cross-attention compute their keys, values and
// probabilities, in whichever form the exporter wrote them.
//
// Every decomposed form ends the same way, scores MatMul(Q, Kᵀ) → [scale] → [mask Add] → Softmax → MatMul(·, V),
// so discovery starts at each Softmax and walks out from there; the forms differ only in where the scale sits and
// in the layout of the heads:
// - torch 1.x `baddbmm` (optimum ≤ 1.16 era): heads folded into the batch [B·heads, N, d], Mul(scale) after the
//   scores, an Add of baddbmm's β·0 term, Casts around Q/K/probs with upcast_attention;
// - torch ≥ 2.1 `scaled_dot_product_attention`: [B, heads, N, d], Q and Kᵀ each multiplied by √scale before the
//   scores, nothing between the scores and Softmax but an optional mask;
// - this project's generated graphs (sd-graphs.ts): [B, heads, N, d] with Kᵀ transposed straight from
//   [B, N, heads, d], Mul(scale) after the scores.
// Fused attention kernels hide all of that inside one node; they are reported, not rewritten.
import { onnx } from 'onnx-proto';
import { GraphIndex, attrFloats, attrInt, attrInts, isRandomOp, type Node } from './graph-index';

export type AttentionPattern = 'torch1-baddbmm' | 'torch2-sdpa' | 'split-heads' | 'fused-multihead' | 'none';

export interface AttentionSite {
  /**
   * diffusers module path, e.g. "down_blocks.0.attentions.0.transformer_blocks.0.attn1"; "site<i>" in topological
   * order when node names say nothing.
   */
  module: string;
  kind: 'self' | 'cross';
  /** Downsampling of the token grid relative to the latent: 1 at full latent resolution, 2, 4, … */
  resolution: number;
  heads: number;
  headDim: number;
  /**
   * Keys per query: latent h·w / resolution² for self-attention (0 when only known at run time), the text length
   * for cross.
   */
  tokens: number;
  /** Tensor names in the graph (heads folded into the batch: [B·heads, N, d], or split [B, heads, N, d]: layout). */
  tensors: {
    query: string;
    /** [.., N, d]; the graph's Kᵀ [.., d, N] instead when `keyTransposed`. */
    key: string;
    value: string;
    /** Softmax output: [B·heads, N_q, N_k] (or [B, heads, N_q, N_k]). */
    probs: string;
  };
  /** Node names (for the passes that rewrite around them). */
  nodes: { softmax: string; scores: string; output: string };
  /** 'folded' (default): [B·heads, N, d]; 'split': [B, heads, N, d]. */
  layout?: 'folded' | 'split';
  /**
   * True when the graph never holds K as [.., N, d] (generated graphs transpose [B, N, heads, d] straight to Kᵀ):
   * `tensors.key` is then Kᵀ and a pass wanting K transposes it back itself.
   */
  keyTransposed?: boolean;
}

export interface AttentionSites {
  pattern: AttentionPattern;
  sites: AttentionSite[];
  /** Why no site is usable (fused attention, unknown pattern) and what to do about it. */
  note?: string;
}

export interface FindOptions {
  /** Latent size the UNet will run at, for self-attention `tokens` when the graph's sample input is dynamic. */
  latent?: { height: number; width: number };
  /** Text length for cross-attention `tokens` when encoder_hidden_states is dynamic (default 77, CLIP's). */
  textLength?: number;
}

type SitePattern = Exclude<AttentionPattern, 'fused-multihead' | 'none'>;
interface Match {
  site: Omit<AttentionSite, 'module' | 'resolution' | 'tokens'>;
  pattern: SitePattern;
  /** Projection inputs: equal for self-attention. */
  querySource?: string;
  keySource?: string;
}

const FUSED_MS = new Set([
  'MultiHeadAttention',
  'Attention',
  'PackedMultiHeadAttention',
  'PackedAttention',
  'GroupQueryAttention',
]);
const DEFAULT_TEXT_LENGTH = 77;
const PASS_TYPES = new Set(['Cast', 'Identity']);

/** Finds every attention site of a UNet graph, or says why there is none to use. */
export function findAttentionSites(model: onnx.IModelProto, options: FindOptions = {}): AttentionSites {
  const graph = model.graph;
  if (!graph) return { pattern: 'none', sites: [], note: 'the model has no graph' };
  const fused = fusedAttention(graph.node ?? []);
  if (fused) return { pattern: 'fused-multihead', sites: [], note: fused };
  const g = new GraphIndex(graph);
  const matches: Match[] = [];
  for (const node of g.topoOrder()) {
    if (node.opType !== 'Softmax') continue;
    const m = matchSite(g, node);
    if (m) matches.push(m);
  }
  if (!matches.length) {
    const note =
      'no Softmax in the graph reads MatMul(Q, Kᵀ) and feeds MatMul(·, V): no decomposed attention to rewrite';
    return { pattern: 'none', sites: [], note };
  }
  const levels = spatialLevels(g);
  const sites = matches.map((m, i) => completeSite(g, m, i, levels, options));
  dedupeModules(sites);
  return { pattern: majorityPattern(matches), sites };
}

function fusedAttention(nodes: readonly Node[]): string | undefined {
  const isFused = (n: Node) =>
    (n.domain === 'com.microsoft' && FUSED_MS.has(n.opType ?? '')) ||
    ((!n.domain || n.domain === 'ai.onnx') && n.opType === 'Attention');
  const fused = nodes.filter(isFused);
  if (!fused.length) return undefined;
  const kinds = [...new Set(fused.map((n) => `${n.domain || 'ai.onnx'}.${n.opType}`))].join(', ');
  return (
    `${fused.length} attention op(s) are fused into ${kinds}: keys, values and probabilities live inside one ` +
    'kernel and cannot be read or replaced. Use the unoptimised export instead: re-export with ' +
    "`optimum-cli export onnx` without ORT's transformer optimisation (no `optimum-cli onnxruntime optimize`, no " +
    'Olive/`onnxruntime.transformers.optimizer` pass; `--no-post-process` if post-processing fused it), or download ' +
    'the plain fp32/fp16 ONNX export rather than the ORT-optimised one.'
  );
}

function majorityPattern(matches: Match[]): SitePattern {
  const count = new Map<SitePattern, number>();
  for (const m of matches) count.set(m.pattern, (count.get(m.pattern) ?? 0) + 1);
  return [...count.entries()].sort((a, b) => b[1] - a[1])[0][0];
}

// ---- matching one Softmax ------------------------------------------------------------------------------------------

function matchSite(g: GraphIndex, softmax: Node): Match | undefined {
  const probs = softmax.output?.[0];
  if (!probs) return undefined;
  const scores = scoresOf(g, softmax.input![0]);
  const output = outputMatMul(g, probs);
  if (!scores || !output) return undefined;
  const q = unscaled(g, scores.node.input![0]);
  const kScaled = unscaled(g, scores.node.input![1]);
  const k = keyOf(g, kScaled.tensor);
  const sdpa = q.scaled && kScaled.scaled && !scores.scaledAfter;
  const layout = rankOf(g, q.tensor) === 4 ? 'split' : 'folded';
  const pattern: SitePattern = sdpa ? 'torch2-sdpa' : layout === 'split' ? 'split-heads' : 'torch1-baddbmm';
  const qHeads = headsOf(g, q.tensor);
  return {
    pattern,
    querySource: qHeads.source,
    keySource: headsOf(g, k.tensor).source,
    site: {
      kind: 'self',
      heads: qHeads.heads,
      headDim: qHeads.headDim,
      tensors: { query: q.tensor, key: k.tensor, value: output.input![1], probs },
      nodes: { softmax: softmax.name ?? '', scores: scores.node.name ?? '', output: output.name ?? '' },
      layout,
      keyTransposed: k.transposed,
    },
  };
}

/** Walks back from the Softmax input over scale, mask and casts to the scores MatMul. */
function scoresOf(g: GraphIndex, tensor: string, depth = 0): { node: Node; scaledAfter: boolean } | undefined {
  const node = g.producer(tensor);
  if (!node || depth > 6) return undefined;
  const op = node.opType ?? '';
  if (op === 'MatMul') return { node, scaledAfter: false };
  if (PASS_TYPES.has(op)) return scoresOf(g, node.input![0], depth + 1);
  if (op === 'Mul' || op === 'Div') {
    const data = dataOperand(g, node);
    const found = data !== undefined ? scoresOf(g, data, depth + 1) : undefined;
    return found && { node: found.node, scaledAfter: true };
  }
  if (op === 'Add') {
    // One operand is the mask (baddbmm's zero term, an attention mask): the other leads to the scores.
    for (const input of node.input ?? []) {
      const found = input ? scoresOf(g, input, depth + 1) : undefined;
      if (found) return found;
    }
  }
  return undefined;
}

/** Forward from the probabilities (through casts) to the MatMul that weights the values. */
function outputMatMul(g: GraphIndex, probs: string, depth = 0): Node | undefined {
  for (const reader of g.consumers(probs)) {
    const op = reader.opType ?? '';
    if (op === 'MatMul' && reader.input![0] === probs) return reader;
    if ((PASS_TYPES.has(op) || op === 'Dropout') && depth < 3) {
      const found = outputMatMul(g, reader.output![0], depth + 1);
      if (found) return found;
    }
  }
  return undefined;
}

/**
 * The operand of a Mul/Div that carries data, when the other is a scale: a constant, or computed from shapes only
 * (SDPA without constant folding computes √(1/√d) from Shape(query)).
 */
function dataOperand(g: GraphIndex, node: Node): string | undefined {
  const [a, b] = node.input ?? [];
  if (!a || !b) return undefined;
  const scaleA = isScaleLike(g, a);
  const scaleB = isScaleLike(g, b);
  if (scaleB && !scaleA) return a;
  if (scaleA && !scaleB && node.opType === 'Mul') return b;
  return undefined;
}

function isScaleLike(g: GraphIndex, tensor: string, depth = 0): boolean {
  if (g.isConstant(tensor)) return true;
  const node = g.producer(tensor);
  if (!node || depth > 12 || isRandomOp(node.opType)) return false;
  if (node.opType === 'Shape' || node.opType === 'Size') return true;
  return (node.input ?? []).filter(Boolean).every((i) => isScaleLike(g, i, depth + 1));
}

/** Q or Kᵀ before SDPA's √scale Mul (and through casts to the nearest tensor the scores actually read). */
function unscaled(g: GraphIndex, tensor: string): { tensor: string; scaled: boolean } {
  const node = g.producer(tensor);
  if (node?.opType === 'Mul') {
    const data = dataOperand(g, node);
    if (data) return { tensor: data, scaled: true };
  }
  return { tensor, scaled: false };
}

/** K as [.., N, d] behind the Transpose that swaps its last two axes, else the Kᵀ the scores read. */
function keyOf(g: GraphIndex, kt: string): { tensor: string; transposed: boolean } {
  const node = g.producer(kt);
  if (node?.opType === 'Transpose') {
    const perm = attrInts(node, 'perm') ?? [];
    const n = perm.length;
    const swapsLast = n >= 2 && perm.every((p, i) => (i < n - 2 ? p === i : p === (i === n - 1 ? n - 2 : n - 1)));
    if (swapsLast) return { tensor: node.input![0], transposed: false };
  }
  return { tensor: kt, transposed: true };
}

/** Static rank of a tensor where the layout ops make it evident. */
function rankOf(g: GraphIndex, tensor: string, depth = 0): number | undefined {
  const declared = g.declaredDims(tensor);
  if (declared) return declared.length;
  const node = g.producer(tensor);
  if (!node || depth > 8) return undefined;
  switch (node.opType) {
    case 'Transpose':
      return attrInts(node, 'perm')?.length ?? rankOf(g, node.input![0], depth + 1);
    case 'Reshape':
      return shapeVector(g, node.input![1])?.length;
    case 'Mul':
    case 'Div':
      return rankOf(g, dataOperand(g, node) ?? node.input![0], depth + 1);
    default:
      return rankOf(g, node.input![0], depth + 1);
  }
}

/** Elements of a Reshape's shape operand: numbers where constant, undefined where computed at run time. */
function shapeVector(g: GraphIndex, tensor: string): (number | undefined)[] | undefined {
  const values = g.constantValues(tensor, 16);
  if (values) return values;
  const node = g.producer(g.source(tensor));
  if (node?.opType !== 'Concat') return undefined;
  const out: (number | undefined)[] = [];
  for (const part of node.input ?? []) {
    const v = g.constantValues(part, 16);
    if (v) out.push(...v);
    else if (g.producer(g.source(part))?.opType === 'Unsqueeze') out.push(undefined);
    else return undefined;
  }
  return out;
}

/**
 * Heads and head width from the Reshape that splits the projection's [B, N, heads·d] into [B, N, heads, d], with
 * the projection weight's width where the Reshape computes d at run time; `source` is the projection's input.
 */
function headsOf(g: GraphIndex, tensor: string): { heads: number; headDim: number; source?: string } {
  let t = tensor;
  for (let hops = 0; hops < 8; hops++) {
    const node = g.producer(t);
    if (!node) break;
    const op = node.opType ?? '';
    if (op === 'Reshape') {
      const shape = shapeVector(g, node.input![1]);
      const proj = projection(g, node.input![0]);
      if (shape?.length === 4 && proj) return splitHeads(shape, proj);
    } else if (!['Transpose', 'Cast', 'Identity', 'Mul', 'Div'].includes(op)) {
      break;
    }
    t = op === 'Mul' || op === 'Div' ? (dataOperand(g, node) ?? node.input![0]) : node.input![0];
  }
  return { heads: 0, headDim: 0 };
}

function splitHeads(
  shape: (number | undefined)[],
  proj: { width?: number; source: string },
): { heads: number; headDim: number; source: string } {
  const positive = (v: number | undefined) => (v !== undefined && v > 0 ? v : undefined);
  let heads = positive(shape[2]);
  let headDim = positive(shape[3]);
  if (proj.width && heads && !headDim) headDim = proj.width / heads;
  if (proj.width && headDim && !heads) heads = proj.width / headDim;
  return { heads: heads ?? 0, headDim: headDim ?? 0, source: proj.source };
}

/** The to_q/to_k/to_v projection writing `tensor` (MatMul by a constant, optional bias Add, casts). */
function projection(g: GraphIndex, tensor: string, depth = 0): { width?: number; source: string } | undefined {
  const node = g.producer(tensor);
  if (!node || depth > 4) return undefined;
  const op = node.opType ?? '';
  if (PASS_TYPES.has(op)) return projection(g, node.input![0], depth + 1);
  if (op === 'Add') {
    const data = (node.input ?? []).find((i) => i && !g.isConstant(i));
    return data ? projection(g, data, depth + 1) : undefined;
  }
  if (op === 'MatMul' || op === 'Gemm') {
    const [x, w] = node.input ?? [];
    if (!x || !w || !g.isConstant(w)) return undefined;
    const dims = g.constantDims(w);
    const transB = op === 'Gemm' && attrInt(node, 'transB') === 1;
    const width = dims && dims.length >= 2 ? dims[transB ? dims.length - 2 : dims.length - 1] : undefined;
    return { width, source: stripCasts(g, x) };
  }
  return undefined;
}

function stripCasts(g: GraphIndex, tensor: string): string {
  let t = tensor;
  for (let node = g.producer(t); node && PASS_TYPES.has(node.opType ?? ''); node = g.producer(t)) t = node.input![0];
  return t;
}

// ---- what the graph as a whole says about each site --------------------------------------------------------------

function completeSite(
  g: GraphIndex,
  m: Match,
  index: number,
  levels: Map<string, number>,
  options: FindOptions,
): AttentionSite {
  // torch names outputs after their node (`…/attn1/Softmax_output_0`): they tell the module when nodes are unnamed.
  const fromTensor = m.site.tensors.probs.replace(/_output_\d+$/, '');
  const module = moduleOf(m.site.nodes.softmax) ?? moduleOf(fromTensor) ?? `site${index}`;
  const kind = kindOf(g, m, module);
  const level = levels.get(m.site.tensors.query) ?? 0;
  const resolution = 2 ** level;
  return { module, ...m.site, kind, resolution, tokens: tokensOf(g, kind, resolution, m.keySource, options) };
}

/** `/down_blocks.0/attentions.0/transformer_blocks.0/attn1/Softmax` → `down_blocks.0.….attn1`. */
function moduleOf(nodeName: string): string | undefined {
  const parts = nodeName.split('/').filter(Boolean);
  return parts.length >= 2 ? parts.slice(0, -1).join('.') : undefined;
}

function dedupeModules(sites: AttentionSite[]): void {
  const seen = new Set<string>();
  sites.forEach((s, i) => {
    if (seen.has(s.module)) s.module = `site${i}`;
    seen.add(s.module);
  });
}

function kindOf(g: GraphIndex, m: Match, module: string): 'self' | 'cross' {
  if (m.querySource && m.keySource) return g.source(m.querySource) === g.source(m.keySource) ? 'self' : 'cross';
  // Without projections to compare, diffusers' names decide: attn1 is self-, attn2 cross-attention.
  return /(^|\.)attn2$/.test(module) ? 'cross' : 'self';
}

function tokensOf(
  g: GraphIndex,
  kind: 'self' | 'cross',
  resolution: number,
  keySource: string | undefined,
  o: FindOptions,
): number {
  if (kind === 'cross') {
    const dims = keySource ? g.declaredDims(keySource) : undefined;
    return (dims && dims.length === 3 ? dims[1] : undefined) ?? o.textLength ?? DEFAULT_TEXT_LENGTH;
  }
  const latent = o.latent ?? staticLatent(g);
  return latent ? Math.ceil(latent.height / resolution) * Math.ceil(latent.width / resolution) : 0;
}

function latentInput(g: GraphIndex): string | undefined {
  const inputs = (g.graph.input ?? []).filter((i) => i.name && g.isGraphInput(i.name));
  const named = inputs.find((i) => i.name === 'sample');
  return (named ?? inputs.find((i) => g.declaredDims(i.name!)?.length === 4))?.name ?? undefined;
}

function staticLatent(g: GraphIndex): { height: number; width: number } | undefined {
  const name = latentInput(g);
  const dims = name ? g.declaredDims(name) : undefined;
  return dims?.[2] && dims[3] ? { height: dims[2], width: dims[3] } : undefined;
}

/**
 * Downsampling level (log2) of every tensor computed from the latent: +1 per stride-2 conv/pool, −1 per ×2 resize,
 * the deepest input elsewhere. Shapes are not data, so Shape ends the propagation and shape operands are skipped.
 */
function spatialLevels(g: GraphIndex): Map<string, number> {
  const levels = new Map<string, number>();
  const start = latentInput(g);
  if (!start) return levels;
  levels.set(start, 0);
  for (const node of g.topoOrder()) {
    const op = node.opType ?? '';
    if (op === 'Shape' || op === 'Size') continue;
    const inputs = DATA_INPUT_0.has(op) ? [node.input![0]] : (node.input ?? []);
    const known = inputs.map((i) => levels.get(i)).filter((l): l is number => l !== undefined);
    if (!known.length) continue;
    const level = Math.max(...known) + levelStep(g, node);
    for (const o of node.output ?? []) if (o) levels.set(o, level);
  }
  return levels;
}

const DATA_INPUT_0 = new Set([
  'Reshape',
  'Expand',
  'Tile',
  'Slice',
  'Resize',
  'Upsample',
  'Pad',
  'Gather',
  'Squeeze',
  'Unsqueeze',
]);

function levelStep(g: GraphIndex, node: Node): number {
  switch (node.opType) {
    case 'Conv':
    case 'MaxPool':
    case 'AveragePool':
      return Math.log2(Math.max(1, ...(attrInts(node, 'strides') ?? [1])));
    case 'ConvTranspose':
      return -Math.log2(Math.max(1, ...(attrInts(node, 'strides') ?? [1])));
    case 'Resize':
    case 'Upsample': {
      const scales = node.opType === 'Resize' ? node.input?.[2] : node.input?.[1];
      const values = (scales ? g.constantValues(scales, 8) : undefined) ?? attrFloats(node, 'scales');
      // Resize by `sizes` computed at run time: diffusers only ever upsamples by 2.
      return values?.length ? -Math.log2(Math.max(1, ...values)) : -1;
    }
    default:
      return 0;
  }
}
