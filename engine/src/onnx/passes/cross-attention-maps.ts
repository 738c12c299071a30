// Cross-attention maps, readable and controllable: prompt-to-prompt's attention control (and FateZero's, which stores
// the source's cross-attention maps during inversion and blends them back in while editing) as explicit graph inputs
// and outputs. In PyTorch both are attention processors that see the probabilities softmax(Q·Kᵀ·scale) of every
// cross-attention layer and store or rewrite them; an ONNX graph has no hook, so this pass adds the hook to the graph:
// for every chosen cross-attention site the rewritten graph outputs the site's maps and takes six inputs, so that
// the value MatMul computes with
//   swapped = Gather(Gather(probs, swap_source, axis 0), swap_token, last axis)
//   probs₁  = (1 − sw)·probs + sw·swapped
//   probs'  = ((1 − w)·probs₁ + w·replace) · scale
// where probs is the Softmax output, [B·heads, N_q, T] (heads folded into the batch) or [B, heads, N_q, T] (split),
// T the text tokens. First the swap (P2P's word swap and refine: the target's maps replaced by the source's, token t
// reading the aligned source token; the source branch runs in the same batch, so the gather stays in the graph and
// nothing the size of the maps crosses to JS and back), then the replace (maps fed from outside: FateZero's, stored
// during inversion), then the reweight (P2P's equalizer: each token's column multiplied, no renormalisation, as P2P
// does it). Both blends are written (1 − w)·x + w·r rather than x + w·(r − x): the same value, but exact at both
// ends, so weight 1 injects r bit for bit, and weight 0 computes x exactly (1·x = x, 0·r = 0 for a finite r,
// x + 0 = x; then x·1 = x): at the neutral values the graph is the original.
//
// Ports, per site (`reshoot/cross-attention-maps/<module>/<port>`):
// - output `maps`, float32 [B, N_q, T]: the probabilities averaged over the heads (the folded layout is reshaped to
//   [B, heads, N_q, T] with the site's head count first), BEFORE swap, replace and reweight: what the model attended
//   to, as P2P's AttentionStore records it. Float32 also where the graph's softmax is float16 (Cast first), so a
//   caller reads plain floats; every row sums to 1 over T. (ONNX Runtime's CPU provider computes a float16 softmax in
//   float32 and drops the Cast pair in front of the maps: they are then the float32 softmax, within float16's half
//   ulp of the probabilities the value MatMul reads. It runs the blends and the value MatMul in float32 too, while
//   the swap's Gathers, which take any type, read the float16 probabilities: there a swap at weight 1 injects the
//   float16-rounded probabilities, and one from an item to itself moves the attention by that rounding.)
// - input `swap_source`, int64: per row of the probabilities' first axis, the row it reads from (folded: B·heads
//   entries, row b·heads + h reading source item s's row s·heads + h; split: B). Neutral: 0, [1] (row 0 broadcast).
// - input `swap_token`, int64 [T]: target token t reads source token swap_token[t]. Neutral: 0, [1].
// - input `swap_weight`: per token, [1, 1, T] / [1, 1, 1, T] (or per item: [B·heads, 1, T] / [B, 1, 1, T]); 0 = off,
//   1 = swap. Neutral: 0, [1, 1, 1] / [1, 1, 1, 1].
// - input `replace`: probabilities to inject, the probs' shape or broadcastable, finite (a source run's softmax
//   output, per head; `maps` repeated over the heads, cast to the port's type, injects the head mean instead).
//   Neutral: 0, [1, 1, 1] / [1, 1, 1, 1].
// - input `replace_weight`: as `swap_weight`; 0 = off, 1 = replace. Neutral: 0.
// - input `scale`: per-token multiplier, shaped as `swap_weight`. Neutral: 1, [1, 1, 1] / [1, 1, 1, 1].
// Float inputs carry the softmax output's element type (float32 where upcast_attention computes the softmax in float32
// and a Cast to float16 follows: the rewrite sits before that Cast, on the probabilities as the softmax wrote them).
//
// Costs: `maps` is B·N_q·T float32 per site; SD 1.5 at a 64×64 latent (16 cross-attention sites, N_q 4096 at five,
// 1024 at five, 256 at five, 64 at one: 26 944 query rows in all) with T = 77: 8.3 MB per batch item over all sites,
// plus a ReduceMean over the heads. A full per-head `replace` is heads times that (66 MB per item at SD 1.5's 8 heads).
// At run time the rewrite adds five elementwise ops over each site's probabilities (B·heads·N_q·T elements; 10 MB per
// item at a full-resolution SD 1.5 site; a sixth with a live swap, a seventh with a full-size `replace`), a Gather
// pair and the maps' reduction, whatever the inputs, also at the neutral values (where the gathers copy one row's one
// token: N_q elements): small next to the self-attention sites' N_q × N_q scores. A live swap's gathers copy the
// probabilities twice.
//
// attention-slicing (the tail pass) slices self-attention only by default and finds its sites as they were: it
// applies after this pass. With its `cross` option it would refuse the rewritten cross sites (the probabilities are
// read by the maps as well as by the chain to the value MatMul, and the chain reads per-call inputs); cross-attention
// scores are N_q × T, small enough not to need slicing.
import { onnx } from 'onnx-proto';
import type { AttentionSite } from '../attention-sites';
import { GraphIndex, type Node } from '../graph-index';
import { intAttr, intsAttr, makeNode, portType, valueInfo } from '../graph-edit';
import type { GraphPass, InputPort, PassResult, PortType } from '../pass';
import { emitRewrites, mergePorts, schedule, siteRewrite, type SiteRewrite } from './site-rewrite';
import { NodeBuilder } from './node-builder';

export interface CrossAttentionMapsOptions {
  /** Modules to rewrite (default: every cross-attention site). */
  sites?: readonly string[];
}

const NAME = 'cross-attention-maps';
const DT = onnx.TensorProto.DataType;
const FLOAT: number = DT.FLOAT;
const HALF: number = DT.FLOAT16;
/** Ops an exporter may put between the softmax and the value MatMul (upcast_attention's Cast, inference Dropout). */
const PASS_OPS = new Set(['Cast', 'Identity', 'Dropout']);

/**
 * Port names of one site: output `maps` (head-mean probabilities, float32 [B, N_q, T]); inputs `replace`
 * (probabilities to inject), `replace_weight` (per token, 0 = off), `scale` (per-token multiplier, 1 = off),
 * `swap_source` (int64: the row of the probabilities' first axis each row reads), `swap_token` (int64 [T]: the token
 * each token reads) and `swap_weight` (per token, 0 = off).
 */
export function crossAttentionMapsPorts(module: string) {
  const p = prefix(module);
  return {
    maps: `${p}/maps`,
    replace: `${p}/replace`,
    replaceWeight: `${p}/replace_weight`,
    scale: `${p}/scale`,
    swapSource: `${p}/swap_source`,
    swapToken: `${p}/swap_token`,
    swapWeight: `${p}/swap_weight`,
  };
}

function prefix(module: string): string {
  return `reshoot/${NAME}/${module}`;
}

type Names = ReturnType<typeof crossAttentionMapsPorts>;

export const crossAttentionMaps: GraphPass<CrossAttentionMapsOptions> = {
  name: NAME,
  apply(model, sites, options): PassResult {
    if (!model.graph) return { ok: false, reason: 'the UNet file has no graph' };
    const chosen = chooseCrossSites(sites, options.sites);
    if (typeof chosen === 'string') return { ok: false, reason: chosen };
    const opset = Number(model.opsetImport?.find((o) => !o.domain || o.domain === 'ai.onnx')?.version ?? 0);
    if (opset < 10) return { ok: false, reason: `opset ${opset}: the pass needs opset 10 or later (Slice by inputs)` };
    const g = new GraphIndex(model.graph);
    const plans: SiteRewrite[] = [];
    for (const site of chosen) {
      const plan = planSite(g, site, opset);
      if (typeof plan === 'string') return { ok: false, reason: `${site.module}: ${plan}` };
      plans.push(plan);
    }
    return { ok: true, model: emitRewrites(model, plans), ports: mergePorts(plans) };
  },
};

/** The chosen cross-attention sites (default all), or why there are none. */
function chooseCrossSites(sites: readonly AttentionSite[], modules?: readonly string[]): AttentionSite[] | string {
  const cross = sites.filter((s) => s.kind === 'cross');
  if (!modules) return cross.length ? cross : 'the graph has no cross-attention site';
  const picked: AttentionSite[] = [];
  for (const module of modules) {
    const site = sites.find((s) => s.module === module);
    if (!site) return `${module} is not an attention site of this graph`;
    if (site.kind !== 'cross') return `${module} is a self-attention site; the pass rewrites cross-attention only`;
    picked.push(site);
  }
  return picked.length ? picked : 'no site chosen';
}

function planSite(g: GraphIndex, site: AttentionSite, opset: number): SiteRewrite | string {
  const names = crossAttentionMapsPorts(site.module);
  if (g.isGraphInput(names.scale) || g.producer(names.maps)) return 'the pass was already applied to this site';
  const probs = site.tensors.probs;
  if (g.producer(probs)?.opType !== 'Softmax') return `${probs} is no longer written by the softmax discovery found`;
  const reader = readerTowardsValue(g, probs, site.tensors.value);
  if (!reader) return `no value MatMul reads the probabilities ${probs} (through Cast/Identity/Dropout only)`;
  const type = g.elemType(probs);
  if (type !== FLOAT && type !== HALF) {
    const shown = type === undefined ? 'unknown' : (DT[type] ?? String(type));
    return `the element type of the probabilities is not float32/float16 (${shown})`;
  }
  const rank = site.layout === 'split' ? 4 : 3;
  if (rank === 3 && !(site.heads > 0)) return 'the head count is unknown: folded probabilities cannot be averaged';
  const plan = siteRewrite(site);
  const b = new NodeBuilder(prefix(site.module));
  planMaps(b, probs, type, site.heads, rank, opset, names.maps);
  // The source's probabilities, read from the same batch: rows along the first axis, then tokens along the last.
  const rows = b.op('Gather', [probs, names.swapSource], 'swap/rows', [intAttr('axis', 0)]);
  const swapped = b.op('Gather', [rows, names.swapToken], 'swap/tokens', [intAttr('axis', rank - 1)]);
  // x₁ = (1 − sw)·x + sw·swapped, then (1 − w)·x₁ + w·r, then ·scale.
  const one = b.scalar(type, 1, 'one');
  const swapKeep = b.op('Sub', [one, names.swapWeight], 'swap/keep');
  const swapKept = b.op('Mul', [probs, swapKeep], 'swap/kept');
  const swapInjected = b.op('Mul', [swapped, names.swapWeight], 'swap/injected');
  const swapBlended = b.op('Add', [swapKept, swapInjected], 'swap/blended');
  const keep = b.op('Sub', [one, names.replaceWeight], 'replace/keep');
  const kept = b.op('Mul', [swapBlended, keep], 'replace/kept');
  const injected = b.op('Mul', [names.replace, names.replaceWeight], 'replace/injected');
  const replaced = b.op('Add', [kept, injected], 'replace/blended');
  const scaled = b.op('Mul', [replaced, names.scale], 'scaled');
  schedule(plan, reader, b.nodes, [probs, scaled]);
  describePorts(plan, names, type, portType(type)!, rank);
  return plan;
}

/**
 * The node that reads the probabilities on their way to the value MatMul (the MatMul itself, or the first of the
 * casts between), or undefined where no MatMul(·, V) reads them.
 */
function readerTowardsValue(g: GraphIndex, probs: string, value: string): Node | undefined {
  const reaches = (node: Node, tensor: string, depth: number): boolean => {
    const op = node.opType ?? '';
    if (op === 'MatMul') return node.input![0] === tensor && node.input![1] === value;
    if (!PASS_OPS.has(op) || depth > 3 || node.input![0] !== tensor) return false;
    const out = node.output![0];
    return g.consumers(out).some((c) => reaches(c, out, depth + 1));
  };
  return g.consumers(probs).find((n) => reaches(n, probs, 0));
}

/** Head mean of the probabilities in float32, [B, N_q, T], written to `out`. */
function planMaps(
  b: NodeBuilder,
  probs: string,
  type: number,
  heads: number,
  rank: number,
  opset: number,
  out: string,
) {
  let x = type === FLOAT ? probs : b.op('Cast', [probs], 'maps/float', [intAttr('to', DT.FLOAT)]);
  if (rank === 3) {
    // [B·heads, N_q, T] → [B, heads, N_q, T]: −1, heads, then N_q and T from the tensor's shape.
    const tail = b.op(
      'Slice',
      [b.op('Shape', [x], 'maps/shape'), b.ints('maps/start', [1]), b.ints('maps/end', [3])],
      'maps/tail',
    );
    const shape = b.op('Concat', [b.ints('maps/lead', [-1, heads]), tail], 'maps/split_shape', [intAttr('axis', 0)]);
    x = b.op('Reshape', [x, shape], 'maps/split');
  }
  // ReduceMean takes its axes as an input from opset 18, as an attribute before.
  const keepdims = intAttr('keepdims', 0);
  const mean =
    opset >= 18
      ? makeNode('ReduceMean', [x, b.ints('maps/axes', [1])], out, [keepdims])
      : makeNode('ReduceMean', [x], out, [intsAttr('axes', [1]), keepdims]);
  b.nodes.push(mean);
}

function describePorts(plan: SiteRewrite, names: Names, elemType: number, type: PortType, rank: number): void {
  const site = plan.site.module;
  const ones = new Array<number>(rank).fill(1);
  const split = rank === 4;
  const probs = split ? '[B, heads, N_q, T]' : '[B·heads, N_q, T]';
  const perToken = split ? '[1, 1, 1, T] (per item [B, 1, 1, T])' : '[1, 1, T] (per item [B·heads, 1, T])';
  const input = (name: string, neutralValue: number, role: string): InputPort => ({
    name,
    type,
    neutralShape: ones,
    neutralValue,
    site,
    role,
  });
  plan.ports.inputs.push(
    input(names.replace, 0, `probabilities to inject, ${probs} or broadcastable (a source run's softmax output)`),
    input(names.replaceWeight, 0, `weight of the injected probabilities per token, ${perToken}; 0 = off, 1 = replace`),
    input(names.scale, 1, `multiplier of each token's probabilities after the replace, ${perToken}; 1 = off`),
    // The swap's ports come last: they were added after the others, whose order callers may know.
    {
      name: names.swapSource,
      type: 'int64',
      neutralShape: [1],
      neutralValue: 0,
      site,
      role:
        `int64 [${split ? 'B' : 'B·heads'}]: the row of the probabilities ${probs} each row reads the swapped ` +
        `maps from (${split ? 'the source item' : 'source item·heads + head'})`,
    },
    {
      name: names.swapToken,
      type: 'int64',
      neutralShape: [1],
      neutralValue: 0,
      site,
      role: 'int64 [T]: the source token each token reads the swapped maps from',
    },
    input(names.swapWeight, 0, `weight of the swapped probabilities per token, ${perToken}; 0 = off, 1 = swap`),
  );
  plan.ports.outputs.push({
    name: names.maps,
    type: 'float32',
    site,
    role:
      'cross-attention probabilities averaged over the heads, float32 [B, N_q, T], before swap, replace and scale ' +
      '(each row sums to 1 over the tokens)',
  });
  plan.declare.inputs.push(
    valueInfo(names.replace, elemType),
    valueInfo(names.replaceWeight, elemType),
    valueInfo(names.scale, elemType),
    valueInfo(names.swapSource, DT.INT64),
    valueInfo(names.swapToken, DT.INT64),
    valueInfo(names.swapWeight, elemType),
  );
  plan.declare.outputs.push(valueInfo(names.maps, DT.FLOAT));
}
