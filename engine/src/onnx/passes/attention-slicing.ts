// Self-attention over slices of the query axis, as diffusers' `enable_attention_slicing`: the scores and
// probabilities of a site, [.., N_q, N_k] each, are the largest tensors of a Stable Diffusion UNet (at 64×64 latents,
// 4096×4096 floats per head and batch item), and ONNX Runtime materialises them whole. Split into `slices` parts
// along N_q, each part's scores → softmax → probabilities·V is computed and freed before the next (the parts are
// emitted one after the other and ORT runs nodes in that order), so the peak of these tensors falls by the number
// of slices. Exact up to the last float bits: every row of the probabilities depends only on its own query row.
//
// The rewrite clones the site's chain from the scores MatMul to the output MatMul once per slice, reading a Slice of
// the query instead of the whole, and concatenates the outputs along N_q. Slice bounds are computed from the query's
// shape at run time (opset 13 ops), so one rewritten graph serves every latent size. A chain node's other inputs
// must be the same for every query row: constants that do not vary along N_q (the scale), or baddbmm's β·0 term
// (torch 1.x exports: Mul(ConstantOfShape(0), 0), a whole [B·heads, N_q, N_k] tensor of zeros), which is dropped:
// adding exact zeros changes nothing. A site whose chain reads anything else is refused with the reason.
import { onnx } from 'onnx-proto';
import type { AttentionSite } from '../attention-sites';
import { GraphIndex, type Node } from '../graph-index';
import { editableCopy, intAttr, makeNode } from '../graph-edit';
import type { GraphPass, PassResult } from '../pass';
import { isZero } from './site-rewrite';

export interface AttentionSlicingOptions {
  /** Parts of the query axis (≥ 2). */
  slices: number;
  /** Modules to rewrite (default: every self-attention site). */
  sites?: readonly string[];
  /** Also slice cross-attention sites (their scores are N_q × text length: small; default false). */
  cross?: boolean;
}

const NAME = 'attention-slicing';
/** Ops a chain may hold between the scores and the output MatMul: all act on each query row alone. */
const ROW_WISE = new Set(['Mul', 'Div', 'Add', 'Sub', 'Cast', 'Softmax', 'Identity']);

interface Chain {
  site: AttentionSite;
  scores: Node;
  /** Nodes after the scores MatMul, in order, ending with the output MatMul. */
  rest: Node[];
  /** Inputs of `rest` to drop: (node, index) of baddbmm's zero term. */
  dropped: Set<string>;
}

export const attentionSlicing: GraphPass<AttentionSlicingOptions> = {
  name: NAME,
  apply(model, sites, options): PassResult {
    if (!model.graph) return { ok: false, reason: 'the UNet file has no graph' };
    if (!Number.isInteger(options.slices) || options.slices < 2)
      return { ok: false, reason: `slices must be an integer of at least 2 (got ${options.slices})` };
    const chosen = sites.filter(
      (s) => (s.kind === 'self' || options.cross) && (!options.sites || options.sites.includes(s.module)),
    );
    if (!chosen.length) return { ok: false, reason: 'the graph has no attention site to slice' };
    const g = new GraphIndex(model.graph);
    const opset = Number(model.opsetImport?.find((o) => !o.domain)?.version ?? 0);
    if (opset < 13) return { ok: false, reason: `opset ${opset}: slicing needs opset 13 or later (per-axis Softmax)` };
    const chains: Chain[] = [];
    for (const site of chosen) {
      const chain = findChain(g, site);
      if (typeof chain === 'string') return { ok: false, reason: `${site.module}: ${chain}` };
      chains.push(chain);
    }
    return { ok: true, model: emit(model, g, chains, options.slices), ports: { inputs: [], outputs: [] } };
  },
};

function findChain(g: GraphIndex, site: AttentionSite): Chain | string {
  const scores = g.nodes.find((n) => n.name === site.nodes.scores && n.opType === 'MatMul');
  const output = g.nodes.find((n) => n.name === site.nodes.output && n.opType === 'MatMul');
  if (!scores || !output) return 'the scores or output MatMul is not where discovery found it';
  const rest: Node[] = [];
  const dropped = new Set<string>();
  let tensor = scores.output![0];
  while (true) {
    const next = g.consumers(tensor);
    if (next.length !== 1) return `${tensor} is read by ${next.length} nodes; only a straight chain can be sliced`;
    const node = next[0];
    rest.push(node);
    if (node === output) {
      if (node.input![0] !== tensor) return 'the output MatMul does not read the probabilities as its first input';
      break;
    }
    if (!ROW_WISE.has(node.opType ?? '')) return `${node.opType} ${node.name} between the scores and the output`;
    if (node.opType === 'Softmax' && !lastAxis(g, node)) return 'the softmax is not over the keys (last axis)';
    for (const [i, input] of (node.input ?? []).entries()) {
      if (input === tensor || !input) continue;
      if (node.opType === 'Add' && isZero(g, input, 4)) dropped.add(`${node.name}#${i}`);
      else if (!sameForEveryRow(g, input)) return `${node.opType} ${node.name} reads ${input}, which may vary by query`;
    }
    tensor = node.output![0];
    if (rest.length > 12) return 'the chain from the scores to the output is longer than any exporter writes';
  }
  return { site, scores, rest, dropped };
}

/** Opset 13+ Softmax normalises over one axis, -1 by default; it must be the keys'. */
function lastAxis(g: GraphIndex, softmax: Node): boolean {
  const axis = softmax.attribute?.find((a) => a.name === 'axis');
  if (axis === undefined || Number(axis.i) === -1) return true;
  return Number(axis.i) === (g.declaredDims(softmax.input![0])?.length ?? 0) - 1;
}

/** A constant whose value is the same along N_q: a scalar, or dims that are 1 everywhere but the last. */
function sameForEveryRow(g: GraphIndex, tensor: string): boolean {
  if (!g.isConstant(tensor)) return false;
  const dims = g.constantDims(tensor);
  return dims !== undefined && dims.slice(0, -1).every((d) => d === 1);
}

function emit(model: onnx.ModelProto, g: GraphIndex, chains: Chain[], slices: number): onnx.ModelProto {
  const { model: out, graph } = editableCopy(model);
  const removed = new Set<Node>(chains.flatMap((c) => [c.scores, ...c.rest]));
  const replacement = new Map<Node, onnx.NodeProto[]>();
  for (const c of chains) replacement.set(c.scores, sliceChain(g, c, slices));
  graph.node = graph.node.flatMap((n) => replacement.get(n) ?? (removed.has(n) ? [] : [n]));
  // The chain's nodes are gone; anything only they read (the zero term) is left for ORT to drop as dead.
  return out;
}

function sliceChain(g: GraphIndex, c: Chain, slices: number): onnx.NodeProto[] {
  const p = `reshoot/${NAME}/${c.site.module}`;
  const query = c.scores.input![0];
  const rank = c.site.layout === 'split' ? 4 : 3;
  const nodes: onnx.NodeProto[] = [];
  const constant = (name: string, values: number[]) => {
    nodes.push(
      onnx.NodeProto.create({
        name,
        opType: 'Constant',
        output: [name],
        attribute: [
          {
            name: 'value',
            type: onnx.AttributeProto.AttributeType.TENSOR,
            t: { dataType: onnx.TensorProto.DataType.INT64, dims: [values.length], int64Data: values },
          },
        ],
      }),
    );
    return name;
  };
  // part = ceil(N_q / slices), from the query's shape at run time.
  const shape = `${p}/shape`;
  nodes.push(makeNode('Shape', [query], shape));
  const n = `${p}/n`;
  nodes.push(makeNode('Gather', [shape, constant(`${p}/axis`, [rank - 2])], n, [intAttr('axis', 0)]));
  const rounded = `${p}/n_plus`;
  nodes.push(makeNode('Add', [n, constant(`${p}/slices_minus_one`, [slices - 1])], rounded));
  const part = `${p}/part`;
  nodes.push(makeNode('Div', [rounded, constant(`${p}/slices`, [slices])], part));
  const axes = constant(`${p}/axes`, [rank - 2]);
  const outputs: string[] = [];
  for (let i = 0; i < slices; i++) {
    const s = `${p}/${i}`;
    const start = `${s}/start`;
    const end = `${s}/end`;
    nodes.push(makeNode('Mul', [part, constant(`${s}/i`, [i])], start));
    nodes.push(makeNode('Mul', [part, constant(`${s}/i_plus_one`, [i + 1])], end));
    const q = `${s}/query`;
    nodes.push(makeNode('Slice', [query, start, end, axes], q));
    let tensor = `${s}/scores`;
    nodes.push(onnx.NodeProto.create({ ...c.scores, name: tensor, input: [q, c.scores.input![1]], output: [tensor] }));
    for (const node of c.rest) {
      const inputs = (node.input ?? [])
        .map((input, k) => ({ input, k }))
        .filter(({ k }) => !c.dropped.has(`${node.name}#${k}`))
        .map(({ input }) => (g.producer(input) && removedOutput(c, input) ? tensor : input));
      const name = `${s}/${node.name}`;
      // An Add left with one input (its zero term dropped) becomes an Identity.
      const op = node.opType === 'Add' && inputs.length === 1 ? 'Identity' : node.opType;
      nodes.push(onnx.NodeProto.create({ ...node, opType: op, name, input: inputs, output: [name] }));
      tensor = name;
    }
    outputs.push(tensor);
  }
  const last = c.rest[c.rest.length - 1];
  nodes.push(makeNode('Concat', outputs, last.output![0], [intAttr('axis', rank - 2)]));
  return nodes;
}

/** Whether `tensor` is the output of the chain's scores or one of its nodes (so a slice reads its own copy). */
function removedOutput(c: Chain, tensor: string): boolean {
  return c.scores.output![0] === tensor || c.rest.some((n) => n.output![0] === tensor);
}
