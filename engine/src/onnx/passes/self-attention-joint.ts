// Joint (extended) self-attention across the items of one UNet call: TokenFlow's keyframes and Tune-A-Video's /
// Text2Video-Zero's "every frame attends to every frame". At each chosen self-attention site the keys and values of
// the items of a group are concatenated along the token axis, so each item's queries attend to the N tokens of every
// item of its group in one softmax:
//   attention_b = softmax([Q_b·K_0ᵀ + bias_b0, …, Q_b·K_{M-1}ᵀ + bias_b(M-1)]·scale) · [V_0; …; V_{M-1}],
// with bias_bm = 0 where item m is in item b's group and −1e4 where it is not (−1e4 drops a column by ≥ 300 after
// any SD scale, and exp of that underflows to 0 or below float precision, as in self-attention-bank).
//
// Port: one input per site, `groups` (int64, [B], or [1] broadcast over the batch): the group id of each batch item.
// Items with the same id ≥ 0 attend to each other's keys; an item with a negative id is alone (it attends to its own
// keys only). The neutral value is [1] = −1: every item alone. The graph then computes the original attention, bit
// for bit by construction up to one detail (below): the joint key count M·N is decided at run time, with M the
// largest group's size (1 when every id is negative), and with M = 1 the joint K and V are each item's own
// K and V (a Gather of the item itself, a Transpose moving a size-1 axis, a Reshape), the bias is exact zeros and
// the softmax runs over the same N columns as before. The one detail: the bias enters inside the scores MatMul (see
// below), whose inner dimension grows from d to d+1 with Q's extra column of ones times the bias row's 0: x + 1·0 is
// x exactly, so only a GEMM kernel that orders its sum differently for d+1 than for d could change a last bit (the
// tests measure bit-identical outputs on every subject). The groups are fed as ids rather than as a bias tensor
// because the neutral bias (0 on an item's own keys, −1e4 on the others') is not a constant fill and would grow with
// B·N; the pass builds the [B, M·N] bias row in-graph from B ids. TokenFlow with classifier-free guidance: the
// keyframes of the unconditional branch get one id, those of the conditional branch another.
//
// Layout: folded K [B·heads, N, d] is viewed as [B, heads, N, d] (heads from discovery), split K is that already;
// Gather(K4, idx) over the batch with idx [B, M] (row b: the members of b's group in batch order, found with TopK,
// then other items as masked padding where b's group is smaller than M; [b] when every item is alone), Transpose to
// [B, heads, M, N, d] and Reshape to the site's own layout with M·N tokens ([B·heads, M·N, d] or [B, heads, M·N, d];
// Kᵀ [.., d, M·N] where the graph holds only Kᵀ). V alike. Every shape comes from Shape ops: the batch size and the
// latent size stay dynamic. The bias enters the scores as in self-attention-bank: Q gets an extra column of ones and
// Kᵀ an extra row holding the item's bias row, so Q'·K'ᵀ = Q·Kᵀ + 1·bias_j, and the chain from the scores to the
// output MatMul reads only constants: attention-slicing still slices the rewritten site (apply it after this pass).
// A baddbmm β·0 term sized for N keys in that chain becomes an Identity, as in self-attention-bank.
//
// Costs: the scores and probabilities grow from N×N to N×M·N per head and item (M the largest group's size; items of
// a smaller group read masked padding, which costs as much as live keys), so in total quadratically in the group.
// SD 1.5 at a 64×64 latent, 4 keyframes, 8 heads, full-resolution sites (N = 4096): 4096×16384 floats per head and
// item = 268 MB fp32, 2.1 GB per item over the 8 heads and 8.6 GB for the group of 4, for the scores alone (the
// probabilities are as large again), against 0.5 GB per item without the pass; with classifier-free guidance in the
// same call (B = 8, two groups of 4) the same per item and twice that in total. The joint K and V are B·M·N·C floats
// each (84 MB fp32 for B = M = 4, C = 320). Until 2026-12-07 the joint axis held every item of the call, the other
// groups masked: 4× these figures with 4 branches. Apply attention-slicing after this pass: it divides the scores'
// peak by its slice count along the queries.
//
// Does not compose with self-attention-bank or self-attention-kv on the same site (each refuses the other's graph).
// Composes with structure-lock applied before it: the joint axis then gathers the keys as the lock blended them
// (its output tensor, site-rewrite's keyOf), so a locked item's keys are the source's in every item that reads them.
import { onnx } from 'onnx-proto';
import type { AttentionSite } from '../attention-sites';
import { GraphIndex, type Node } from '../graph-index';
import { intAttr, intsAttr, valueInfo } from '../graph-edit';
import type { GraphPass, PassResult } from '../pass';
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
import { selfAttentionBankPorts } from './self-attention-bank';
import { selfAttentionKvPorts } from './self-attention-kv';
import { NodeBuilder } from './node-builder';

export interface SelfAttentionJointOptions {
  /** Modules to rewrite (default: every self-attention site). */
  sites?: readonly string[];
}

const NAME = 'self-attention-joint';
const DT = onnx.TensorProto.DataType;
const HALF: number = DT.FLOAT16;
/** Added to the scores of the keys of items outside an item's group. */
export const JOINT_OFF_BIAS = -1e4;
/** Ops a chain may hold between the scores MatMul and the Softmax. */
/** Port names of one site: input `groups` (int64 group id per batch item, [B] or [1]; negative = alone). */
export function selfAttentionJointPorts(module: string) {
  return { groups: `reshoot/${NAME}/${module}/groups` };
}

const prefix = (module: string) => `reshoot/${NAME}/${module}`;

export const selfAttentionJoint: GraphPass<SelfAttentionJointOptions> = {
  name: NAME,
  apply(model, sites, options): PassResult {
    if (!model.graph) return { ok: false, reason: 'the UNet file has no graph' };
    const opset = Number(model.opsetImport?.find((o) => !o.domain || o.domain === 'ai.onnx')?.version ?? 0);
    if (opset < 11) return { ok: false, reason: `opset ${opset}: the pass needs opset 11 or later (TopK)` };
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

function planSite(g: GraphIndex, site: AttentionSite): SiteRewrite | string {
  const groups = selfAttentionJointPorts(site.module).groups;
  if (g.isGraphInput(groups)) return 'the pass was already applied to this site';
  if (g.isGraphInput(selfAttentionBankPorts(site.module).bankKey))
    return 'self-attention-bank was applied to this site; the two passes do not compose';
  if (g.producer(selfAttentionKvPorts(site.module).keyOut))
    return 'self-attention-kv was applied to this site; the two passes do not compose';
  const scores = scoresNode(g, site);
  const value = site.tensors.value;
  const output = g.consumers(value).find((n) => n.opType === 'MatMul' && n.input![1] === value);
  if (!scores || !output) return 'the site no longer has the scores/value MatMuls discovery found';
  const s = g.elemType(scores.input![1]);
  if (s !== DT.FLOAT && s !== HALF) {
    const shown = s === undefined ? 'unknown' : (DT[s] ?? String(s));
    return `the element type of the scores is not float32/float16 (${shown})`;
  }
  if (!(site.heads > 0)) return 'discovery did not find the head count';
  const zeroTerms = chainToSoftmax(g, scores);
  if (typeof zeroTerms === 'string') return zeroTerms;
  const plan = siteRewrite(site);
  plan.reshaped = reshapedTensors(g, site, scores, output);
  const rank = site.layout === 'split' ? 4 : 3;
  const b = new NodeBuilder(prefix(site.module));
  const mode = planMode(b, site, groups, rank, s);
  // Structure lock applied first blends each item's keys with its source item's: the joint axis then gathers the
  // blended keys, so an item attends to its group's keys as locked.
  const key = keyOf(g, site);
  const readers = keyReaders(g, site, key, scores);
  if (!readers.length) return 'no path from the key to the scores';
  const keyJoint = joined(b, key, 'k', mode, site, rank, site.keyTransposed === true);
  schedule(plan, readers[0], b.take(), [key, keyJoint]);
  for (const r of readers.slice(1)) schedule(plan, r, [], [key, keyJoint]);
  const keyT = scores.input![1] === key ? keyJoint : scores.input![1];
  planBias(b, plan, scores, keyT, mode, rank, s);
  const valueJoint = joined(b, value, 'v', mode, site, rank, false);
  schedule(plan, output, b.take(), [value, valueJoint]);
  for (const { node, keep } of zeroTerms) {
    const identity = { name: node.name, opType: 'Identity', input: [keep], output: [node.output![0]] };
    plan.replace.set(node, onnx.NodeProto.create(identity));
  }
  plan.ports.inputs.push({
    name: groups,
    type: 'int64',
    neutralShape: [1],
    neutralValue: -1,
    site: site.module,
    role:
      'group id of each batch item, [B] (or [1] for all): items with the same id ≥ 0 attend to the keys of the ' +
      'whole group; a negative id = the item attends to its own keys only; all negative ([1] = −1) = off',
  });
  plan.declare.inputs.push(valueInfo(groups, DT.INT64));
  return plan;
}

/** Readers of the key on the way to the scores (only the first where the graph holds Kᵀ). */
function keyReaders(g: GraphIndex, site: AttentionSite, key: string, scores: Node): Node[] {
  const readers = g.consumers(key).filter((n) => leadsTo(g, n, scores, 3));
  return site.keyTransposed === true ? readers.slice(0, 1) : readers;
}

/** The run-time shape of the joint attention, shared by the K, V and bias rewrites of one site. */
interface Mode {
  /** Item indices each item reads, [B, M]. */
  index: string;
  /** The bias of each item (row) for each item read (column), [B, M], the scores' type. */
  bias: string;
  /** M, as a 1-D [1] int64 tensor. */
  m: string;
}

/**
 * B from the key's shape; ids g = groups where ≥ 0, −1 − b where negative (unique: an item alone); M = the largest
 * group's size; index[b, ·] = the members of b's group in batch order, then other items as padding up to M;
 * bias[b, m] = 0 where index[b, m] is in b's group, −1e4 on the padding. Every item alone: M = 1, index[b, 0] = b and
 * bias 0, so each item reads exactly its own K and V.
 */
function planMode(b: NodeBuilder, site: AttentionSite, groups: string, rank: number, s: number): Mode {
  const kShape = b.op('Shape', [site.tensors.key], 'mode/key_shape');
  let batch = b.slice(kShape, 0, 1, 'mode/lead');
  if (rank === 3) batch = b.op('Div', [batch, b.ints('mode/heads', [site.heads])], 'mode/batch');
  const scalar = (t: string, name: string) => b.op('Reshape', [t, b.ints(`${name}/shape`, [])], name);
  const items = b.op(
    'Range',
    [b.int('mode/zero', 0), scalar(batch, 'mode/batch_scalar'), b.int('mode/step', 1)],
    'mode/items',
  );
  const fed = b.op('Expand', [groups, batch], 'mode/fed');
  const alone = b.op('Less', [fed, b.ints('mode/zero_1d', [0])], 'mode/alone');
  const own = b.op('Sub', [b.ints('mode/minus_one', [-1]), items], 'mode/own_id');
  const ids = b.op('Where', [alone, own, fed], 'mode/ids');
  const column = b.op('Reshape', [ids, b.ints('mode/column_shape', [-1, 1])], 'mode/ids_column');
  const row = b.op('Reshape', [ids, b.ints('mode/row_shape', [1, -1])], 'mode/ids_row');
  // member[b, j] = 1 where j is in b's group; the group sizes are its row sums, M their maximum.
  const f32 = (t: string, name: string) => b.op('Cast', [t], name, [intAttr('to', DT.FLOAT)]);
  const member = f32(b.op('Equal', [column, row], 'mode/same'), 'mode/member');
  const ones = b.filled(
    b.op('Concat', [batch, b.ints('mode/one_1d', [1])], 'mode/ones_shape', [intAttr('axis', 0)]),
    DT.FLOAT,
    1,
    'mode/ones',
  );
  const largest = b.op('ReduceMax', [b.op('MatMul', [member, ones], 'mode/sizes')], 'mode/largest', [
    intAttr('keepdims', 0),
  ]);
  const m = b.op('Cast', [b.op('Reshape', [largest, b.ints('mode/m_shape', [1])], 'mode/m_f')], 'mode/m', [
    intAttr('to', DT.INT64),
  ]);
  // The members first, in batch order: the top M of member[b, j]·(B − j) (the rest score 0: padding, masked below).
  const order = f32(b.op('Sub', [batch, items], 'mode/reversed'), 'mode/order');
  const score = b.op(
    'Mul',
    [member, b.op('Reshape', [order, b.ints('mode/order_shape', [1, -1])], 'mode/order_row')],
    'mode/score',
  );
  const index = `${b.prefix}/mode/index`;
  b.nodes.push(
    onnx.NodeProto.create({
      name: index,
      opType: 'TopK',
      input: [score, m],
      output: [`${b.prefix}/mode/top`, index],
      attribute: [intAttr('axis', 1), intAttr('largest', 1), intAttr('sorted', 1)],
    }),
  );
  const read = b.op('GatherElements', [member, index], 'mode/read_member', [intAttr('axis', 1)]);
  const inGroup = b.op('Greater', [read, b.scalar(DT.FLOAT, 0.5, 'mode/half')], 'mode/in_group');
  // Built in float32 and cast to the scores' type: the float16 path then needs only Cast, Expand and Concat kernels.
  const on = b.scalar(DT.FLOAT, 0, 'mode/on');
  const bias32 = b.op('Where', [inGroup, on, b.scalar(DT.FLOAT, JOINT_OFF_BIAS, 'mode/off')], 'mode/bias32');
  const bias = s === HALF ? b.op('Cast', [bias32], 'mode/bias', [intAttr('to', HALF)]) : bias32;
  return { index, bias, m };
}

/**
 * The site's K (or Kᵀ, or V) over the items each item reads: [B(·heads) .., M·N, d] (Kᵀ: [.., d, M·N]), item m's
 * tokens at m·N.
 */
function joined(
  b: NodeBuilder,
  tensor: string,
  tag: string,
  mode: Mode,
  site: AttentionSite,
  rank: number,
  transposed: boolean,
): string {
  const shape = b.op('Shape', [tensor], `${tag}/shape`);
  const inner = b.slice(shape, rank - 2, rank, `${tag}/inner`);
  const split =
    rank === 3
      ? b.op(
          'Reshape',
          [
            tensor,
            b.op('Concat', [b.ints(`${tag}/heads`, [-1, site.heads]), inner], `${tag}/split_shape`, [
              intAttr('axis', 0),
            ]),
          ],
          `${tag}/split`,
        )
      : tensor;
  // [B, M, heads, X, Y] → [B, heads, M, N, d] (or [B, heads, d, M, N] for Kᵀ).
  const gathered = b.op('Gather', [split, mode.index], `${tag}/gathered`, [intAttr('axis', 0)]);
  const perm = transposed ? [0, 2, 3, 1, 4] : [0, 2, 1, 3, 4];
  const moved = b.op('Transpose', [gathered], `${tag}/moved`, [intsAttr('perm', perm)]);
  const x = b.slice(shape, rank - 2, rank - 1, `${tag}/x`);
  const y = b.slice(shape, rank - 1, rank, `${tag}/y`);
  const tokens = transposed
    ? [x, b.op('Mul', [y, mode.m], `${tag}/tokens`)]
    : [b.op('Mul', [x, mode.m], `${tag}/tokens`), y];
  const target = b.op('Concat', [b.slice(shape, 0, rank - 2, `${tag}/lead`), ...tokens], `${tag}/target`, [
    intAttr('axis', 0),
  ]);
  return b.op('Reshape', [moved, target], `${tag}/joint`);
}

/**
 * Q' = Q‖1 and K'ᵀ = Kᵀ‖row, row[b, h] = the item's bias per item read, repeated over N: the scores MatMul then adds
 * the bias to each key column.
 */
function planBias(
  b: NodeBuilder,
  plan: SiteRewrite,
  scores: Node,
  keyT: string,
  mode: Mode,
  rank: number,
  s: number,
): void {
  const ktShape = b.op('Shape', [keyT], 'bias/key_shape');
  const columns = b.slice(ktShape, rank - 1, rank, 'bias/columns');
  const perItem = b.op('Reshape', [mode.bias, b.ints('bias/per_item_shape', [0, 0, 1])], 'bias/per_item');
  const n = b.op('Div', [columns, mode.m], 'bias/own_tokens');
  const spread = b.op(
    'Expand',
    [perItem, b.op('Concat', [b.ints('bias/ones_2', [1, 1]), n], 'bias/spread_shape', [intAttr('axis', 0)])],
    'bias/spread',
  );
  // [B, M, N] → [B, 1, 1, M·N] → [B, heads, 1, M·N] (→ [B·heads, 1, M·N] folded).
  const flat = b.op('Reshape', [spread, b.ints('bias/flat_shape', [0, 1, 1, -1])], 'bias/flat');
  const heads = b.ints('bias/heads', [1, plan.site.heads, 1, 1]);
  let row = b.op('Expand', [flat, heads], 'bias/heads_row');
  if (rank === 3) {
    const shape = b.op('Concat', [b.ints('bias/folded_lead', [-1, 1]), columns], 'bias/folded_shape', [
      intAttr('axis', 0),
    ]);
    row = b.op('Reshape', [row, shape], 'bias/folded');
  }
  const key = b.op('Concat', [keyT, row], 'bias/key', [intAttr('axis', rank - 2)]);
  const query = scores.input![0];
  const qShape = b.op('Shape', [query], 'bias/query_shape');
  const onesShape = b.op(
    'Concat',
    [b.slice(qShape, 0, rank - 1, 'bias/query_lead'), b.ints('bias/one', [1])],
    'bias/ones_shape',
    [intAttr('axis', 0)],
  );
  const ones = b.op('Expand', [b.scalar(s, 1, 'bias/one_value'), onesShape], 'bias/ones');
  const q = b.op('Concat', [query, ones], 'bias/query', [intAttr('axis', rank - 1)]);
  schedule(plan, scores, b.take(), [query, q]);
  schedule(plan, scores, [], [keyT, key]);
}
