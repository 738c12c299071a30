// A cross-frame key/value bank for self-attention: the K/V cache of StreamV2V-style video editing (and the anchor
// frames of Text2Video-Zero and FateZero) as explicit tensors. For every chosen self-attention site the rewritten
// graph takes extra keys and values, `bank_key` and `bank_value` ([B·heads, S, d] folded, [B, heads, S, d] split:
// the site's own head layout), and concatenates them after the frame's own N keys and values along the token axis,
// so each query attends to its own N tokens and the S bank tokens in one softmax:
//   attention = softmax([Q·Kᵀ + bias, Q·K_bankᵀ]·scale) · [V; V_bank].
// The bank's leading dims and head width are Expand-broadcast to K's (the target shape comes from Shape(K) and, for
// S, from Shape(bank)), so the neutral value is an EMPTY bank, [1, 0, 1] / [1, 1, 0, 1]: concatenating nothing
// leaves K and V as they were and the graph computes the original. A bank of several frames is their keys
// concatenated along S; in the folded layout batch and heads share an axis, so a bank is fed per batch item
// ([B·heads, S, d], e.g. an anchor frame's key_out repeated for each item), while split layouts may broadcast one
// item ([1, heads, S, d]). bank_key and bank_value must have the same S. After structure-lock (apply it first) the
// frame's keys are the lock's blend: the bank extends those, and key_out gives them out.
//
// `bias` ([1], neutral 0) is added to the scores of the frame's own N key columns only (0 to the bank's), before the
// scale and softmax. Bank mode: bias 0, the frame attends to itself and the bank (StreamV2V's cache, FateZero's
// previous frame). Replace mode: a large negative bias, and the frame attends to the bank alone (Text2Video-Zero
// uses frame 0's K/V instead of its own). −1e4 is enough wherever the scale is at least 1/√1000 (every SD head
// width): the own columns drop by ≥ 300 after the scale, and exp underflows to exactly 0 in fp32 and fp16. In fp16
// graphs keep |bias| + |Q·Kᵀ| below 65504 (fp16's largest finite value): −30000 is safe, −65504 is not. Where a
// graph scales Q and K by √scale before the scores (torch 2 SDPA), the bias is not scaled, which only helps.
//
// The bias enters inside the scores MatMul rather than as an Add after it: Q gets an extra column of ones and Kᵀ an
// extra row holding the [N+S] bias row (Expand(bias) over N, zeros over S, Concat), so Q'·K'ᵀ = Q·Kᵀ + 1·bias_j.
// The chain from the scores to the output MatMul then reads only constants, which keeps attention-slicing (the tail
// pass, which accepts nothing per-call there) applicable after this pass. An Add of exact zeros sized for N keys in
// that chain (torch 1.x baddbmm's β·0 term, [B·heads, N_q, N]) would no longer broadcast against N+S columns: it
// becomes an Identity (x + 0 = x), as attention-slicing does with it.
//
// The rewritten graph also outputs `key_out` and `value_out`: the frame's own K and V before concatenation, [.., N, d]
// (Kᵀ transposed back where the graph holds only Kᵀ), so a stage can feed frame 0's key_out as another frame's
// bank_key. Ports carry the dtype K and V have where the scores and value MatMuls read them; bias the scores'.
//
// Memory: a bank costs S·d·heads·bytes for keys and as much for values, per batch item and site (fp32: S·d·heads·8
// bytes for both; SD 1.5 at a 64×64 latent with S = N, one bank frame: 10.5 MB at each full-resolution site, ~92 MB
// over its 16 self-attention sites). The larger cost is at run time: the scores grow from N×N to N×(N+S) per head,
// which attention-slicing divides again.
import { onnx } from 'onnx-proto';
import type { AttentionSite } from '../attention-sites';
import { GraphIndex, type Node } from '../graph-index';
import { intAttr, intsAttr, makeNode, portType, valueInfo } from '../graph-edit';
import type { GraphPass, InputPort, PassResult, PortType } from '../pass';
import {
  chainToSoftmax,
  chooseSelfSites,
  emitRewrites,
  keyOf,
  leadsTo,
  mergePorts,
  schedule,
  scoresNode,
  reshapedTensors,
  siteRewrite,
  type SiteRewrite,
} from './site-rewrite';
import { selfAttentionKvPorts } from './self-attention-kv';
import { NodeBuilder } from './node-builder';

export interface SelfAttentionBankOptions {
  /** Modules to rewrite (default: every self-attention site). */
  sites?: readonly string[];
}

const NAME = 'self-attention-bank';
const DT = onnx.TensorProto.DataType;
/** Ops a chain may hold between the scores MatMul and the Softmax. */
/**
 * Port names of one site: inputs `bank_key`, `bank_value` (extra keys/values, [.., S, d]) and `bias` (added to the
 * scores of the frame's own keys); outputs `key_out`, `value_out` (its own K and V, [.., N, d]).
 */
export function selfAttentionBankPorts(module: string) {
  const p = prefix(module);
  return {
    bankKey: `${p}/bank_key`,
    bankValue: `${p}/bank_value`,
    bias: `${p}/bias`,
    keyOut: `${p}/key_out`,
    valueOut: `${p}/value_out`,
  };
}

function prefix(module: string): string {
  return `reshoot/${NAME}/${module}`;
}

type Names = ReturnType<typeof selfAttentionBankPorts>;

export const selfAttentionBank: GraphPass<SelfAttentionBankOptions> = {
  name: NAME,
  apply(model, sites, options): PassResult {
    if (!model.graph) return { ok: false, reason: 'the UNet file has no graph' };
    const chosen = chooseSelfSites(sites, options.sites);
    if (typeof chosen === 'string') return { ok: false, reason: chosen };
    const g = new GraphIndex(model.graph);
    const plans: SiteRewrite[] = [];
    for (const site of chosen) {
      const plan = planSite(g, site);
      if (typeof plan === 'string') return { ok: false, reason: `${site.module}: ${plan}` };
      plans.push(plan);
    }
    return { ok: true, model: emitRewrites(model, plans), ports: mergePorts(plans) };
  },
};

/** V‖bank where the value MatMul reads V, concatenated along the tokens. */
function planValue(plan: SiteRewrite, output: Node, names: Names, rank: number): void {
  const value = plan.site.tensors.value;
  const b = new NodeBuilder(`${prefix(plan.site.module)}/v`);
  const vShape = b.op('Shape', [value], 'shape');
  const bankTokens = b.slice(b.op('Shape', [names.bankValue], 'bank_shape'), rank - 2, rank - 1, 'bank_tokens');
  const lead = b.slice(vShape, 0, rank - 2, 'lead');
  const width = b.slice(vShape, rank - 1, rank, 'width');
  const target = b.op('Concat', [lead, bankTokens, width], 'bank_target', [intAttr('axis', 0)]);
  const bank = b.op('Expand', [names.bankValue, target], 'bank');
  const cat = b.op('Concat', [value, bank], 'cat', [intAttr('axis', rank - 2)]);
  b.nodes.push(makeNode('Identity', [value], names.valueOut));
  schedule(plan, output, b.nodes, [value, cat]);
}

/** Element types of the tensors a site's rewrite touches; float only. */
interface Types {
  k: number;
  v: number;
  /** What the scores MatMul multiplies (the bias row and the ones column are of this type). */
  s: number;
  kPort: PortType;
  vPort: PortType;
  sPort: PortType;
}

function planSite(g: GraphIndex, site: AttentionSite): SiteRewrite | string {
  const names = selfAttentionBankPorts(site.module);
  if (g.isGraphInput(names.bankKey) || g.producer(names.keyOut)) return 'the pass was already applied to this site';
  // self-attention-kv blends the frame's K and V where the MatMuls read them, with N-key operands a bank would not
  // match; it in turn finds no value MatMul reading V once the bank is in. The two do not compose (replace mode with
  // an anchor's K/V as the bank does what self-attention-kv does at weight 1).
  if (g.producer(selfAttentionKvPorts(site.module).keyOut))
    return 'self-attention-kv was applied to this site; the two passes do not compose';
  const scores = scoresNode(g, site);
  const value = site.tensors.value;
  const output = g.consumers(value).find((n) => n.opType === 'MatMul' && n.input![1] === value);
  if (!scores || !output) return 'the site no longer has the scores/value MatMuls discovery found';
  const types = elementTypes(g, site, scores);
  if (typeof types === 'string') return types;
  const zeroTerms = chainToSoftmax(g, scores);
  if (typeof zeroTerms === 'string') return zeroTerms;
  const plan = siteRewrite(site);
  plan.reshaped = reshapedTensors(g, site, scores, output);
  const rank = site.layout === 'split' ? 4 : 3;
  const key = planKey(g, plan, scores, names, rank);
  if (typeof key === 'string') return key;
  planBias(plan, scores, names, rank, types.s, key);
  planValue(plan, output, names, rank);
  for (const { node, keep } of zeroTerms) {
    const identity = { name: node.name, opType: 'Identity', input: [keep], output: [node.output![0]] };
    plan.replace.set(node, onnx.NodeProto.create(identity));
  }
  describePorts(plan, names, types, rank);
  return plan;
}

function elementTypes(g: GraphIndex, site: AttentionSite, scores: Node): Types | string {
  const k = g.elemType(site.tensors.key);
  const v = g.elemType(site.tensors.value);
  const s = g.elemType(scores.input![1]);
  const float = (t: number | undefined): t is number => t === DT.FLOAT || t === DT.FLOAT16;
  if (!float(k) || !float(v) || !float(s)) {
    const shown = [k, v, s].map((t) => (t === undefined ? 'unknown' : (DT[t] ?? String(t))));
    return `the element type of K, V or the scores is not float32/float16 (${shown.join(', ')})`;
  }
  return { k, v, s, kPort: portType(k)!, vPort: portType(v)!, sPort: portType(s)! };
}

interface KeyPlan {
  /** What the scores MatMul reads as Kᵀ once the bank is in. */
  keyT: string;
  /** The frame's own key count N, as a 1-D [1] int64 tensor. */
  own: string;
  /** The bank's key count S, likewise. */
  banked: string;
}

/**
 * K‖bank where the path to the scores reads K ([.., N, d], concatenated along N); Kᵀ‖bankᵀ where the graph holds only
 * Kᵀ ([.., d, N], concatenated along its last axis, the bank transposed to match).
 */
function planKey(g: GraphIndex, plan: SiteRewrite, scores: Node, names: Names, rank: number): KeyPlan | string {
  // After structure-lock, the locked keys: the bank extends them, and a frame's key_out is its keys as locked.
  const key = keyOf(g, plan.site);
  const transposed = plan.site.keyTransposed === true;
  const readers = transposed
    ? g
        .consumers(key)
        .filter((n) => leadsTo(g, n, scores, 3))
        .slice(0, 1)
    : g.consumers(key).filter((n) => leadsTo(g, n, scores, 3));
  if (!readers.length) return 'no path from the key to the scores';
  const b = new NodeBuilder(`${prefix(plan.site.module)}/k`);
  const swap = rank === 4 ? [0, 1, 3, 2] : [0, 2, 1];
  const kShape = b.op('Shape', [key], 'shape');
  const bankShape = b.op('Shape', [names.bankKey], 'bank_shape');
  const banked = b.slice(bankShape, rank - 2, rank - 1, 'bank_tokens');
  // Target of the bank's Expand, [.., S, d]: K's leading dims and width, the bank's S.
  const width = transposed ? b.slice(kShape, rank - 2, rank - 1, 'width') : b.slice(kShape, rank - 1, rank, 'width');
  const lead = b.slice(kShape, 0, rank - 2, 'lead');
  const target = b.op('Concat', [lead, banked, width], 'bank_target', [intAttr('axis', 0)]);
  const bank = b.op('Expand', [names.bankKey, target], 'bank');
  let cat: string;
  let own: string;
  if (transposed) {
    const bankT = b.op('Transpose', [bank], 'bank_transposed', [intsAttr('perm', swap)]);
    cat = b.op('Concat', [key, bankT], 'cat', [intAttr('axis', rank - 1)]);
    own = b.slice(kShape, rank - 1, rank, 'own_tokens');
    b.nodes.push(makeNode('Transpose', [key], names.keyOut, [intsAttr('perm', swap)]));
  } else {
    cat = b.op('Concat', [key, bank], 'cat', [intAttr('axis', rank - 2)]);
    own = b.slice(kShape, rank - 2, rank - 1, 'own_tokens');
    b.nodes.push(makeNode('Identity', [key], names.keyOut));
  }
  schedule(plan, readers[0], b.nodes, [key, cat]);
  for (const r of readers.slice(1)) schedule(plan, r, [], [key, cat]);
  // Kᵀ as the scores read it: renamed too where the scores MatMul itself reads the key.
  const keyT = scores.input![1] === key ? cat : scores.input![1];
  return { keyT, own, banked };
}

/**
 * Q' = Q‖1 and K'ᵀ = Kᵀ‖row, row = [bias × N, 0 × S]: the scores MatMul then adds the bias to the own key columns.
 */
function planBias(plan: SiteRewrite, scores: Node, names: Names, rank: number, elemType: number, key: KeyPlan): void {
  const b = new NodeBuilder(`${prefix(plan.site.module)}/bias_row`);
  const ownColumns = b.op('Expand', [names.bias, key.own], 'own');
  const bankColumns = b.filled(key.banked, elemType, 0, 'bank');
  const row = b.op('Concat', [ownColumns, bankColumns], 'row', [intAttr('axis', 0)]);
  const ktShape = b.op('Shape', [key.keyT], 'key_shape');
  const one = b.ints('one', [1]);
  const rowShape = b.op(
    'Concat',
    [b.slice(ktShape, 0, rank - 2, 'lead'), one, b.slice(ktShape, rank - 1, rank, 'columns')],
    'row_shape',
    [intAttr('axis', 0)],
  );
  const keyT = b.op('Concat', [key.keyT, b.op('Expand', [row, rowShape], 'rows')], 'key', [intAttr('axis', rank - 2)]);
  const query = scores.input![0];
  const qShape = b.op('Shape', [query], 'query_shape');
  const onesShape = b.op('Concat', [b.slice(qShape, 0, rank - 1, 'query_lead'), one], 'ones_shape', [
    intAttr('axis', 0),
  ]);
  const ones = b.filled(onesShape, elemType, 1, 'ones');
  const q = b.op('Concat', [query, ones], 'query', [intAttr('axis', rank - 1)]);
  schedule(plan, scores, b.nodes, [query, q]);
  schedule(plan, scores, [], [key.keyT, keyT]);
}

function describePorts(plan: SiteRewrite, names: Names, t: Types, rank: number): void {
  const site = plan.site.module;
  const empty = rank === 4 ? [1, 1, 0, 1] : [1, 0, 1];
  const bankLayout = rank === 4 ? '[B or 1, heads, S, d]' : '[B·heads, S, d]';
  const ownLayout = rank === 4 ? '[B, heads, N, d]' : '[B·heads, N, d]';
  const input = (name: string, type: PortType, neutralShape: number[], role: string): InputPort => ({
    name,
    type,
    neutralShape,
    neutralValue: 0,
    site,
    role,
  });
  plan.ports.inputs.push(
    input(names.bankKey, t.kPort, empty, `extra keys every query also attends to, ${bankLayout}; S = 0 (empty) = off`),
    input(names.bankValue, t.vPort, empty, `values of the bank's keys, ${bankLayout}, the same S as bank_key`),
    input(names.bias, t.sPort, [1], "added to the scores of the frame's own keys, 0 = bank mode, −1e4 = replace mode"),
  );
  plan.ports.outputs.push(
    { name: names.keyOut, type: t.kPort, site, role: `this frame's own keys, without the bank, ${ownLayout}` },
    { name: names.valueOut, type: t.vPort, site, role: `this frame's own values, without the bank, ${ownLayout}` },
  );
  plan.declare.inputs.push(valueInfo(names.bankKey, t.k), valueInfo(names.bankValue, t.v), valueInfo(names.bias, t.s));
  plan.declare.outputs.push(valueInfo(names.keyOut, t.k), valueInfo(names.valueOut, t.v));
}
