// TokenFlow's propagation (Geyer et al. 2023): at each denoising step a few keyframes are edited with joint attention
// (self-attention-joint); every other frame's self-attention OUTPUT is then taken from the keyframes instead of its
// own attention: token n of frame b gets the output of the token of keyframe k nearest to it, nearest by the cosine
// similarity of the SOURCE video's features at that layer (the hidden states entering the self-attention, the input
// of to_q, of the source branch for frame b and for keyframe k), blended between the two nearest keyframes:
//   out'[b, n] = w1 · O_k1[argmax_j cos(X_b[n], X_k1[j])] + w2 · O_k2[argmax_j cos(X_b[n], X_k2[j])]
// where X is the site's input hidden states [B, N, C] and O the merged attention output (the tensor entering to_out,
// [B, N, C] after the heads are merged). As with self-attention-bank, the keyframes' tensors are explicit graph inputs
// the stage feeds from an earlier call's outputs, and the nearest-neighbour search runs inside the graph.
//
// Ports per chosen self-attention site (default every one; option `sites`), `reshoot/token-propagation/<module>/…`:
// - outputs `hidden_out` (X of every item, [B, N, C]) and `output_out` (O of every item, [B, N, C]): what the stage
//   records from the keyframes' call (hidden_out of the source branch, output_out of the target branch);
// - inputs `key_hidden` [B, 2, N, C] (per item, the SOURCE hidden states of its two keyframes; X's element type),
//   `key_output` [B, 2, N, C] (the TARGET keyframes' merged attention outputs; O's element type), `source` int64 [B]
//   (the item of this call whose X is the source branch's hidden states for this item's frame: the cosine is taken
//   between X[source[b]] and key_hidden[b]), `weight` [B, 2] or broadcastable (w1, w2; O's type) and `on` [B, 1, 1]
//   (O's type; 1 = replace the item's output by the propagated one, 0 = keep its own).
// The graph computes, per site,
//   S = normalise(Gather(X, source)) · normalise(key_hidden)ᵀ      [B, 2, N, N]  (rows normalised over C)
//   P = Σ_k weight[b, k] · GatherElements(key_output, ArgMax(S, −1), axis 2)       [B, N, C]
//   O' = (1 − on) · O + on · P                                                       what to_out reads
// The similarity is computed in float32 (fp16 hidden states are Cast first: an argmax over near-equal cosines would
// otherwise pick among fp16 ties). The norms are √(Σx² + 1e-12): a zero row normalises to zero instead of NaN, so a
// zero key_hidden gives all-zero similarities, ArgMax picks index 0 and P is finite.
//
// Neutral: `on` 0 and everything else an all-ones-shape zero (key_hidden, key_output [1, 1, 1, 1], source [0],
// weight [1, 1]): the key tensors are Expand-broadcast to the site's width C, so P is [1, N, C] of zeros, and
// 1·O + 0·P = O bit for bit for finite O (a −0 in O may come out +0). Exact at on = 1 too: 0·O + 1·P = P, and a
// GatherElements copies rows exactly, so an item whose keyframe rows are its own X and O (its own tokens' cosine is 1,
// the maximum) at weights summing to 1 in exact binary fractions (0.5, 0.5) gets its own output back.
//
// Costs, per chosen site and call: the similarity is N×N per keyframe per item (like the attention scores: at N = 4096,
// SD 1.5's 64×64 latent at full resolution, 67 MB fp32 per keyframe-item, N·N·C ≈ 5.4 GFLOP for C = 320), also at
// the neutral values only N×1 per item; the two key inputs are 2·N·C elements each per item (10.5 MB fp32 per input
// and item at N = 4096, C = 320), plus an Expand copy of each; the gather and blend are O(N·C). Index tensors
// [B, 2, N] (int64) and the expanded indices [B, 2, N, C] (int64: 2× the fp32 size of key_output) for GatherElements.
//
// Refused: cross-attention sites, a site the pass already rewrote, a site whose to_q MatMul (where X is read) or whose
// to_out MatMul (reached from the value MatMul through the Transpose/Reshape/Cast nodes that merge the heads) cannot
// be found, element types other than float32/float16, and graphs of opset < 11.
import { onnx } from 'onnx-proto';
import type { AttentionSite } from '../attention-sites';
import { GraphIndex, type Node } from '../graph-index';
import { intAttr, intsAttr, makeNode, portType, valueInfo } from '../graph-edit';
import type { GraphPass, InputPort, PassResult, PortType } from '../pass';
import { emitRewrites, mergePorts, schedule, siteRewrite, type SiteRewrite } from './site-rewrite';
import { NodeBuilder } from './node-builder';

export interface TokenPropagationOptions {
  /** Modules to rewrite (default: every self-attention site). */
  sites?: readonly string[];
}

const NAME = 'token-propagation';
const DT = onnx.TensorProto.DataType;
const FLOAT: number = DT.FLOAT;
/** Norm epsilon (added to Σx²): keeps a zero row's cosine finite. */
const EPS = 1e-12;
/** Ops between to_q's MatMul and the query the scores read (head split, upcast, SDPA's √scale). */
const QUERY_PATH = new Set(['Reshape', 'Transpose', 'Cast', 'Identity', 'Mul', 'Div', 'Unsqueeze', 'Squeeze']);
/** Ops between the value MatMul and to_out's MatMul (the heads merged back). */
const MERGE_PATH = new Set(['Reshape', 'Transpose', 'Cast', 'Identity', 'Squeeze', 'Unsqueeze']);
const SHAPE_OPS = new Set(['Shape', 'Size']);

/**
 * Port names of one site: outputs `hidden_out` (X), `output_out` (O); inputs `key_hidden`, `key_output`, `source`,
 * `weight`, `on`.
 */
export function tokenPropagationPorts(module: string) {
  const p = `reshoot/${NAME}/${module}`;
  return {
    hiddenOut: `${p}/hidden_out`,
    outputOut: `${p}/output_out`,
    keyHidden: `${p}/key_hidden`,
    keyOutput: `${p}/key_output`,
    source: `${p}/source`,
    weight: `${p}/weight`,
    on: `${p}/on`,
  };
}

type Names = ReturnType<typeof tokenPropagationPorts>;

export const tokenPropagation: GraphPass<TokenPropagationOptions> = {
  name: NAME,
  apply(model, sites, options): PassResult {
    if (!model.graph) return { ok: false, reason: 'the UNet file has no graph' };
    const opset = Number(model.opsetImport?.find((o) => !o.domain || o.domain === 'ai.onnx')?.version ?? 0);
    if (opset < 11) return { ok: false, reason: `opset ${opset}: the pass needs opset 11 or later` };
    const chosen = chooseSites(sites, options.sites);
    if (typeof chosen === 'string') return { ok: false, reason: chosen };
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

function chooseSites(sites: readonly AttentionSite[], modules?: readonly string[]): AttentionSite[] | string {
  const self = sites.filter((s) => s.kind === 'self');
  if (!modules) return self.length ? self : 'the graph has no self-attention site';
  const picked: AttentionSite[] = [];
  for (const module of modules) {
    const site = sites.find((s) => s.module === module);
    if (!site) return `${module} is not an attention site of this graph`;
    if (site.kind !== 'self')
      return `${module} is a cross-attention site; token-propagation replaces self-attention outputs only`;
    if (!picked.includes(site)) picked.push(site);
  }
  return picked.length ? picked : 'no site chosen';
}

/** A MatMul whose second operand is a constant: a linear projection (to_q, to_out). */
function isProjection(g: GraphIndex, n: Node): boolean {
  return n?.opType === 'MatMul' && !!n.input?.[1] && g.isConstant(n.input[1]);
}

/** to_q's MatMul: back from the query through the head split (and casts, scales) to a projection. */
export function queryProjection(g: GraphIndex, query: string, depth = 8): Node | undefined {
  const node = g.producer(query);
  if (!node || depth === 0) return undefined;
  if (isProjection(g, node)) return node;
  if (!QUERY_PATH.has(node.opType ?? '')) return undefined;
  for (const input of node.input ?? []) {
    if (!input || g.isConstant(input)) continue;
    const found = queryProjection(g, input, depth - 1);
    if (found) return found;
  }
  return undefined;
}

/** to_out's MatMul: forward from the value MatMul's output through the head merge to a projection reading it first. */
export function outputProjection(g: GraphIndex, attention: string, depth = 8): Node | undefined {
  let t = attention;
  for (let hops = 0; hops < depth; hops++) {
    const readers = g.consumers(t).filter((n) => !SHAPE_OPS.has(n.opType ?? ''));
    if (readers.length !== 1) return undefined;
    const next = readers[0];
    if (isProjection(g, next)) return next.input![0] === t ? next : undefined;
    if (!MERGE_PATH.has(next.opType ?? '') || next.input![0] !== t) return undefined;
    t = next.output![0];
  }
  return undefined;
}

const isFloat = (t: number | undefined): t is number => t === DT.FLOAT || t === DT.FLOAT16;

function planSite(g: GraphIndex, site: AttentionSite, opset: number): SiteRewrite | string {
  const names = tokenPropagationPorts(site.module);
  if (g.isGraphInput(names.on) || g.producer(names.hiddenOut)) return 'the pass was already applied to this site';
  const value = site.tensors.value;
  const attention = g.consumers(value).find((n) => n.opType === 'MatMul' && n.input![1] === value);
  if (!attention) return 'the site no longer has the value MatMul discovery found';
  const toQ = queryProjection(g, site.tensors.query);
  if (!toQ) return 'no to_q MatMul (a MatMul by a constant weight) found behind the query: X cannot be found';
  const toOut = outputProjection(g, attention.output![0]);
  if (!toOut)
    return 'no to_out MatMul (a MatMul by a constant weight) reads the merged heads after the value MatMul: O cannot be found';
  const x = toQ.input![0];
  const o = toOut.input![0];
  const xType = g.elemType(x);
  const oType = g.elemType(o);
  if (!isFloat(xType) || !isFloat(oType)) {
    const shown = [xType, oType].map((t) => (t === undefined ? 'unknown' : (DT[t] ?? String(t))));
    return `the element type of the hidden states or the attention output is not float32/float16 (${shown.join(', ')})`;
  }
  const plan = siteRewrite(site);
  const b = new Builder(`reshoot/${NAME}/${site.module}`, opset);
  b.nodes.push(makeNode('Identity', [x], names.hiddenOut), makeNode('Identity', [o], names.outputOut));
  const blended = propagate(b, names, x, o, xType, oType);
  schedule(plan, toOut, b.nodes, [o, blended]);
  describePorts(plan, names, { x, o, xType, oType, xPort: portType(xType)!, oPort: portType(oType)! });
  return plan;
}

/** The nodes computing O' = (1 − on)·O + on·P; returns O'. */
function propagate(b: Builder, names: Names, x: string, o: string, xType: number, oType: number): string {
  const f32 = (t: string, type: number, name: string) =>
    type === FLOAT ? t : b.op('Cast', [t], name, [intAttr('to', DT.FLOAT)]);
  const xShape = b.op('Shape', [x], 'hidden_shape');
  const xWidth = b.slice(xShape, 2, 3, 'hidden_width');
  const ones3 = b.ints('ones3', [1, 1, 1]);
  // Search: the source item's rows and the keyframes' rows, normalised; cosines [B, 2, N, N_key].
  const src = f32(b.op('Gather', [x, names.source], 'source_hidden', [intAttr('axis', 0)]), xType, 'source_f32');
  const keyTarget = b.op('Concat', [ones3, xWidth], 'key_hidden_target', [intAttr('axis', 0)]);
  const keys = f32(b.op('Expand', [names.keyHidden, keyTarget], 'key_hidden_full'), xType, 'key_hidden_f32');
  const srcUnit = b.unsqueeze(b.normalise(src, 'source_unit'), [1], 'source_unit4');
  const keyUnit = b.normalise(keys, 'key_unit');
  const keyUnitT = b.op('Transpose', [keyUnit], 'key_unit_t', [intsAttr('perm', [0, 1, 3, 2])]);
  const cosine = b.op('MatMul', [srcUnit, keyUnitT], 'cosine');
  const nearest = b.op('ArgMax', [cosine], 'nearest', [intAttr('axis', -1), intAttr('keepdims', 0)]);
  // Gather: the keyframes' outputs at the nearest tokens, [B, 2, N, C].
  const oWidth = b.slice(b.op('Shape', [o], 'output_shape'), 2, 3, 'output_width');
  const nearestShape = b.op('Shape', [nearest], 'nearest_shape');
  const one = b.ints('one', [1]);
  const outTarget = b.op('Concat', [b.slice(nearestShape, 0, 2, 'nearest_lead'), one, oWidth], 'key_output_target', [
    intAttr('axis', 0),
  ]);
  const keyOut = b.op('Expand', [names.keyOutput, outTarget], 'key_output_full');
  const keyOutShape = b.op('Shape', [keyOut], 'key_output_shape');
  const indexTarget = b.op(
    'Concat',
    [b.slice(keyOutShape, 0, 2, 'index_lead'), b.slice(nearestShape, 2, 3, 'index_tokens'), oWidth],
    'index_target',
    [intAttr('axis', 0)],
  );
  const index = b.op('Expand', [b.unsqueeze(nearest, [3], 'nearest4'), indexTarget], 'index');
  const gathered = b.op('GatherElements', [keyOut, index], 'gathered', [intAttr('axis', 2)]);
  // Blend the two keyframes, then with the item's own output.
  const weight = b.unsqueeze(names.weight, [2, 3], 'weight4');
  const weighted = b.op('Mul', [gathered, weight], 'weighted');
  const propagated = b.reduceSum(weighted, [1], 0, 'propagated');
  const keep = b.op('Sub', [b.scalar(oType, 1, 'one_f'), names.on], 'keep');
  const own = b.op('Mul', [keep, o], 'own');
  const injected = b.op('Mul', [names.on, propagated], 'injected');
  return b.op('Add', [own, injected], 'blended');
}

/** Nodes under one name prefix, with the opset-dependent forms of Unsqueeze and ReduceSum. */
class Builder extends NodeBuilder {
  constructor(
    prefix: string,
    readonly opset: number,
  ) {
    super(prefix);
  }

  unsqueeze(x: string, axes: number[], name: string): string {
    return this.opset >= 13
      ? this.op('Unsqueeze', [x, this.ints(`${name}/axes`, axes)], name)
      : this.op('Unsqueeze', [x], name, [intsAttr('axes', axes)]);
  }

  reduceSum(x: string, axes: number[], keepdims: 0 | 1, name: string): string {
    return this.opset >= 13
      ? this.op('ReduceSum', [x, this.ints(`${name}/axes`, axes)], name, [intAttr('keepdims', keepdims)])
      : this.op('ReduceSum', [x], name, [intsAttr('axes', axes), intAttr('keepdims', keepdims)]);
  }

  /** x / √(Σ_last x² + ε), float32. */
  normalise(x: string, name: string): string {
    const squares = this.op('Mul', [x, x], `${name}/squares`);
    const sum = this.reduceSum(squares, [-1], 1, `${name}/sum`);
    const norm = this.op(
      'Sqrt',
      [this.op('Add', [sum, this.scalar(DT.FLOAT, EPS, `${name}/eps`)], `${name}/padded`)],
      `${name}/norm`,
    );
    return this.op('Div', [x, norm], name);
  }
}

function describePorts(
  plan: SiteRewrite,
  names: Names,
  t: { x: string; o: string; xType: number; oType: number; xPort: PortType; oPort: PortType },
): void {
  const site = plan.site.module;
  const input = (name: string, type: PortType, neutralShape: number[], role: string): InputPort => ({
    name,
    type,
    neutralShape,
    neutralValue: 0,
    site,
    role,
  });
  plan.ports.inputs.push(
    input(
      names.keyHidden,
      t.xPort,
      [1, 1, 1, 1],
      "per item, its two keyframes' SOURCE hidden states (hidden_out of the source branch), [B, 2, N, C]",
    ),
    input(
      names.keyOutput,
      t.oPort,
      [1, 1, 1, 1],
      "per item, its two keyframes' merged attention outputs (output_out of the edited keyframes), [B, 2, N, C]",
    ),
    input(
      names.source,
      'int64',
      [1],
      "int64 [B]: the item of this call holding the source branch's hidden states of this item's frame",
    ),
    input(names.weight, t.oPort, [1, 1], 'keyframe weights (w1, w2), [B, 2] or broadcastable'),
    input(names.on, t.oPort, [1, 1, 1], "[B, 1, 1]: 1 = the propagated output replaces the item's own, 0 = off"),
  );
  plan.ports.outputs.push(
    {
      name: names.hiddenOut,
      type: t.xPort,
      tensor: t.x,
      site,
      role: 'the hidden states entering the self-attention (to_q input), [B, N, C]',
    },
    {
      name: names.outputOut,
      type: t.oPort,
      tensor: t.o,
      site,
      role: 'the merged attention output (to_out input, before propagation), [B, N, C]',
    },
  );
  plan.declare.inputs.push(
    valueInfo(names.keyHidden, t.xType),
    valueInfo(names.keyOutput, t.oType),
    valueInfo(names.source, DT.INT64),
    valueInfo(names.weight, t.oType),
    valueInfo(names.on, t.oType),
  );
  plan.declare.outputs.push(valueInfo(names.hiddenOut, t.xType), valueInfo(names.outputOut, t.oType));
}
