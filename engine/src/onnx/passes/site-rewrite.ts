// What the passes that rewrite attention sites share: choosing self-attention sites, finding a site's scores MatMul,
// and a plan of new nodes and rewired inputs per site, emitted into one copy of the graph with the ports declared.
import type { onnx } from 'onnx-proto';
import type { AttentionSite } from '../attention-sites';
import type { GraphIndex, Node } from '../graph-index';
import { editableCopy, rewire } from '../graph-edit';
import type { InputPort, OutputPort, Ports } from '../pass';

/** The chosen self-attention sites (default all), or why there are none. */
export function chooseSelfSites(
  sites: readonly AttentionSite[],
  modules?: readonly string[],
): AttentionSite[] | string {
  const self = sites.filter((s) => s.kind === 'self');
  if (!modules) return self.length ? self : 'the graph has no self-attention site';
  const picked: AttentionSite[] = [];
  for (const module of modules) {
    const site = self.find((s) => s.module === module);
    if (!site) return `${module} is not a self-attention site of this graph`;
    picked.push(site);
  }
  return picked.length ? picked : 'no site chosen';
}

/** The scores MatMul: by name when node names are unique, else as the MatMul the probabilities come from. */
export function scoresNode(g: GraphIndex, site: AttentionSite): Node | undefined {
  const name = site.nodes.scores;
  const byName = name ? g.nodes.filter((n) => n.name === name) : [];
  if (byName.length === 1 && byName[0].opType === 'MatMul') return byName[0];
  let t = g.producer(site.tensors.probs)?.input?.[0];
  for (let hops = 0; t && hops < 6; hops++) {
    const node = g.producer(t);
    if (!node) return undefined;
    if (node.opType === 'MatMul') return node;
    t = (node.input ?? []).find((i) => i && !g.isConstant(i));
  }
  return undefined;
}

export function leadsTo(g: GraphIndex, node: Node, target: Node, depth: number): boolean {
  if (node === target) return true;
  if (depth === 0) return false;
  return (node.output ?? []).some((o) => g.consumers(o).some((c) => leadsTo(g, c, target, depth - 1)));
}

/** Exact zeros: a zero constant, ConstantOfShape(0), or a product of zeros (baddbmm's β·input with β = 0). */
export function isZero(g: GraphIndex, tensor: string, depth: number): boolean {
  if (g.isConstant(tensor)) {
    const v = g.constantValues(tensor);
    return v !== undefined && v.length > 0 && v.every((x) => x === 0);
  }
  const node = g.producer(tensor);
  if (!node || depth === 0) return false;
  if (node.opType === 'ConstantOfShape') {
    const t = node.attribute?.find((a) => a.name === 'value')?.t;
    const bytes = t?.rawData;
    if (!t) return true;
    if (bytes && bytes.length) return [...bytes].every((x) => x === 0);
    return [...(t.floatData ?? []), ...(t.int32Data ?? [])].every((x) => x === 0);
  }
  if (node.opType === 'Mul') {
    const [a, b] = node.input ?? [];
    return isZero(g, a, depth - 1) && isZero(g, b, depth - 1);
  }
  return false;
}

/** One site's rewrite: nodes to add, inputs to rename, nodes to replace whole, and the ports it adds. */
export interface SiteRewrite {
  site: AttentionSite;
  /** New nodes, emitted just before the first node they feed. */
  before: Map<Node, onnx.NodeProto[]>;
  /** Original node → the inputs it reads under a new name. */
  rewires: Map<Node, [string, string][]>;
  /** Original node → the node that takes its place. */
  replace: Map<Node, onnx.NodeProto>;
  /** Tensors whose declared shapes no longer hold (value_info entries to drop). */
  reshaped: string[];
  ports: { inputs: InputPort[]; outputs: OutputPort[] };
  declare: { inputs: onnx.IValueInfoProto[]; outputs: onnx.IValueInfoProto[] };
}

export function siteRewrite(site: AttentionSite): SiteRewrite {
  return {
    site,
    before: new Map(),
    rewires: new Map(),
    replace: new Map(),
    reshaped: [],
    ports: { inputs: [], outputs: [] },
    declare: { inputs: [], outputs: [] },
  };
}

/** Emits `nodes` before `reader` and makes it read `rename[1]` where it read `rename[0]`. */
export function schedule(plan: SiteRewrite, reader: Node, nodes: onnx.NodeProto[], rename: [string, string]): void {
  plan.before.set(reader, [...(plan.before.get(reader) ?? []), ...nodes]);
  plan.rewires.set(reader, [...(plan.rewires.get(reader) ?? []), rename]);
}

/** A copy of the model with every site's rewrite applied and its ports declared. */
export function emitRewrites(model: onnx.ModelProto, plans: SiteRewrite[]): onnx.ModelProto {
  const { model: out, graph } = editableCopy(model);
  const before = new Map<Node, onnx.NodeProto[]>();
  const rewires = new Map<Node, [string, string][]>();
  const replace = new Map<Node, onnx.NodeProto>();
  for (const p of plans) {
    for (const [n, nodes] of p.before) before.set(n, [...(before.get(n) ?? []), ...nodes]);
    for (const [n, r] of p.rewires) rewires.set(n, [...(rewires.get(n) ?? []), ...r]);
    for (const [n, r] of p.replace) replace.set(n, r);
  }
  const renamed = (n: Node) =>
    replace.get(n) ?? (rewires.get(n) ?? []).reduce<Node>((node, [from, to]) => rewire(node, from, to), n);
  graph.node = graph.node.flatMap((n) => [...(before.get(n) ?? []), renamed(n)]);
  const reshaped = new Set(plans.flatMap((p) => p.reshaped));
  if (reshaped.size) graph.valueInfo = graph.valueInfo.filter((v) => !reshaped.has(v.name ?? ''));
  for (const p of plans) {
    graph.input.push(...p.declare.inputs);
    graph.output.push(...p.declare.outputs);
  }
  return out;
}

export function mergePorts(plans: SiteRewrite[]): Ports {
  return { inputs: plans.flatMap((p) => p.ports.inputs), outputs: plans.flatMap((p) => p.ports.outputs) };
}

/** Ops an exporter may put between the scores and the Softmax. */
const CHAIN_OPS = new Set(['Mul', 'Div', 'Add', 'Sub', 'Cast', 'Identity']);

/**
 * Walks from the scores to the Softmax, for the passes that give a site more key columns (self-attention-bank,
 * self-attention-joint). Every other operand must broadcast against the wider key axis: a scale (a
 * constant or a value computed from shapes), a constant whose last dim is 1; an Add (or a Sub) of exact zeros
 * (baddbmm's term, sized for N keys) is returned to become an Identity of the chain. Anything else (a real mask over
 * the keys) is refused.
 */
export function chainToSoftmax(g: GraphIndex, scores: Node): { node: Node; keep: string }[] | string {
  const zeroTerms: { node: Node; keep: string }[] = [];
  let tensor = scores.output![0];
  for (let hops = 0; hops < 8; hops++) {
    const next = g.consumers(tensor);
    if (next.length !== 1)
      return `the scores ${tensor} are read by ${next.length} nodes; expected a chain to the softmax`;
    const node = next[0];
    const op = node.opType ?? '';
    if (op === 'Softmax') return zeroTerms;
    if (!CHAIN_OPS.has(op)) return `${op} ${node.name} between the scores and the softmax`;
    for (const [i, input] of (node.input ?? []).entries()) {
      if (!input || input === tensor) continue;
      const zeroTerm = (op === 'Add' || (op === 'Sub' && i === 1)) && isZero(g, input, 4);
      if (zeroTerm) zeroTerms.push({ node, keep: tensor });
      else if (!broadcastsOverKeys(g, op, input))
        return `${op} ${node.name} reads ${input}, which may be sized for the site's own keys only`;
    }
    tensor = node.output![0];
  }
  return 'the chain from the scores to the softmax is longer than any exporter writes';
}

function broadcastsOverKeys(g: GraphIndex, op: string, tensor: string): boolean {
  if (g.isConstant(tensor)) {
    const dims = g.constantDims(tensor);
    return dims !== undefined && (dims.length === 0 || dims[dims.length - 1] === 1);
  }
  // SDPA without constant folding computes its scale from Shape(query): a scalar.
  return (op === 'Mul' || op === 'Div') && fromShapesOnly(g, tensor, 0);
}

function fromShapesOnly(g: GraphIndex, tensor: string, depth: number): boolean {
  if (g.isConstant(tensor)) return true;
  const node = g.producer(tensor);
  if (!node || depth > 12 || node.opType === 'ConstantOfShape') return false;
  if (node.opType === 'Shape' || node.opType === 'Size') return true;
  return (node.input ?? []).filter(Boolean).every((i) => fromShapesOnly(g, i, depth + 1));
}

/** The key (or Kᵀ) the scores read at a site structure-lock rewrote: its blend of the keys. */
export function structureLockedKey(module: string): string {
  return `reshoot/structure-lock/${module}/key`;
}

/**
 * The key a pass that reroutes the keys (a bank, joint attention) starts from: the structure lock's blend where that
 * pass ran first, so the keys it gathers are the locked ones; the site's own key otherwise.
 */
export function keyOf(g: GraphIndex, site: AttentionSite): string {
  const locked = structureLockedKey(site.module);
  return g.producer(locked) ? locked : site.tensors.key;
}

/**
 * What carries the wider key axis after such a rewrite: Kᵀ from the key to the scores, the scores, everything from them to the
 * probabilities and on to the value MatMul. Their declared shapes (value_info a shape-inference tool wrote) would
 * otherwise be trusted by ONNX Runtime with N keys.
 */
export function reshapedTensors(g: GraphIndex, site: AttentionSite, scores: Node, output: Node): string[] {
  const out: string[] = [];
  const keyWriter = g.producer(site.tensors.key);
  const fromKey = (t: string) => t === site.tensors.key || (!!keyWriter && !!g.reaches(t, (n) => n === keyWriter, 4));
  let t: string | undefined = scores.input![1];
  for (let hops = 0; t && t !== site.tensors.key && hops < 4; hops++) {
    out.push(t);
    t = (g.producer(t)?.input ?? []).find((i) => i && fromKey(i));
  }
  const seen = new Set<string>();
  const forward = (tensor: string, depth: number) => {
    if (seen.has(tensor) || depth > 12) return;
    seen.add(tensor);
    out.push(tensor);
    for (const c of g.consumers(tensor)) if (c !== output) for (const o of c.output ?? []) if (o) forward(o, depth + 1);
  };
  forward(scores.output![0], 0);
  return out;
}
