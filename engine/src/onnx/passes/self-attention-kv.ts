// Keys and values of self-attention, readable and replaceable: the foundation of cross-frame attention, where a
// frame attends to an anchor frame's keys and values. For every chosen self-attention site the rewritten graph
// outputs the site's own K and V (the tensors the scores and the value MatMul read, heads folded or split as the
// exporter wrote them) and takes three inputs, so that the site computes with
//   K' = K + weight·(key − K),  V' = V + weight·(value − V).
// At weight 0 that is exactly K and V (0·finite = 0 and K + 0 = K bit for bit), so the neutral graph is the
// original. Ports carry the dtype K and V have where they are read: after upcast_attention's Casts for K,
// whatever the value MatMul reads for V.
import { onnx } from 'onnx-proto';
import type { AttentionSite } from '../attention-sites';
import { GraphIndex, type Node } from '../graph-index';
import { editableCopy, intAttr, intsAttr, makeNode, portType, rewire, valueInfo } from '../graph-edit';
import type { GraphPass, InputPort, OutputPort, PassResult, PortType } from '../pass';

export interface SelfAttentionKvOptions {
  /** Modules to rewrite (default: every self-attention site). */
  sites?: readonly string[];
}

const NAME = 'self-attention-kv';

/** Port names of one site: inputs `weight`, `key`, `value`; outputs `key_out`, `value_out` (its own K and V). */
export function selfAttentionKvPorts(module: string) {
  const p = `reshoot/${NAME}/${module}`;
  return {
    weight: `${p}/weight`,
    key: `${p}/key`,
    value: `${p}/value`,
    keyOut: `${p}/key_out`,
    valueOut: `${p}/value_out`,
  };
}

interface SitePlan {
  site: AttentionSite;
  /** New nodes, emitted just before the first node they feed. */
  before: Map<Node, onnx.NodeProto[]>;
  /** Original node → the inputs it reads under a new name. */
  rewires: Map<Node, [string, string][]>;
  ports: { inputs: InputPort[]; outputs: OutputPort[] };
  declare: { inputs: onnx.IValueInfoProto[]; outputs: onnx.IValueInfoProto[] };
}

export const selfAttentionKv: GraphPass<SelfAttentionKvOptions> = {
  name: NAME,
  apply(model, sites, options): PassResult {
    if (!model.graph) return { ok: false, reason: 'the UNet file has no graph' };
    const chosen = chooseSites(sites, options);
    if (typeof chosen === 'string') return { ok: false, reason: chosen };
    const g = new GraphIndex(model.graph);
    const plans: SitePlan[] = [];
    for (const site of chosen) {
      const plan = planSite(g, site);
      if (typeof plan === 'string') return { ok: false, reason: `${site.module}: ${plan}` };
      plans.push(plan);
    }
    return { ok: true, model: emit(model, plans), ports: mergePorts(plans) };
  },
};

function chooseSites(sites: readonly AttentionSite[], options: SelfAttentionKvOptions): AttentionSite[] | string {
  const self = sites.filter((s) => s.kind === 'self');
  if (!options.sites) return self.length ? self : 'the graph has no self-attention site';
  const picked: AttentionSite[] = [];
  for (const module of options.sites) {
    const site = self.find((s) => s.module === module);
    if (!site) return `${module} is not a self-attention site of this graph`;
    picked.push(site);
  }
  return picked.length ? picked : 'no site chosen';
}

function planSite(g: GraphIndex, site: AttentionSite): SitePlan | string {
  const names = selfAttentionKvPorts(site.module);
  if (g.isGraphInput(names.weight) || g.producer(names.keyOut)) return 'the pass was already applied to this site';
  const scores = scoresNode(g, site);
  const value = site.tensors.value;
  const output = g.consumers(value).find((n) => n.opType === 'MatMul' && n.input![1] === value);
  if (!scores || !output) return 'the site no longer has the scores/value MatMuls discovery found';
  const kType = g.elemType(site.tensors.key);
  const vType = g.elemType(site.tensors.value);
  const kPort = portType(kType);
  const vPort = portType(vType);
  if (!kPort || !vPort || kType === undefined || vType === undefined) return 'the element type of K or V is unknown';
  const plan: SitePlan = {
    site,
    before: new Map(),
    rewires: new Map(),
    ports: { inputs: [], outputs: [] },
    declare: { inputs: [], outputs: [] },
  };
  const rank = site.layout === 'split' ? 4 : 3;
  const keyFailure = planKey(g, plan, scores, names, rank);
  if (keyFailure) return keyFailure;
  const weightForV = vType === kType ? names.weight : `${names.weight}/cast`;
  const vNodes = blend(site.tensors.value, names.value, weightForV, `${names.value}/blended`);
  if (weightForV !== names.weight) vNodes.unshift(makeNode('Cast', [names.weight], weightForV, [intAttr('to', vType)]));
  vNodes.push(makeNode('Identity', [site.tensors.value], names.valueOut));
  schedule(plan, output, vNodes, [site.tensors.value, `${names.value}/blended`]);
  describePorts(plan, names, { kType, vType, kPort, vPort, rank });
  return plan;
}

/** The scores MatMul: by name when node names are unique, else as the MatMul the probabilities come from. */
function scoresNode(g: GraphIndex, site: AttentionSite): Node | undefined {
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

/** K' replaces K where the path to the scores reads it; Kᵀ-only graphs get K by a Transpose and K'ᵀ back. */
function planKey(
  g: GraphIndex,
  plan: SitePlan,
  scores: Node,
  names: ReturnType<typeof selfAttentionKvPorts>,
  rank: number,
): string | undefined {
  const key = plan.site.tensors.key;
  const swap = rank === 4 ? [0, 1, 3, 2] : [0, 2, 1];
  const blended = `${names.key}/blended`;
  if (plan.site.keyTransposed) {
    const reader = g.consumers(key).find((n) => leadsTo(g, n, scores, 3));
    if (!reader) return 'no path from the key to the scores';
    const k = `${names.key}/untransposed`;
    const nodes = [
      makeNode('Transpose', [key], k, [intsAttr('perm', swap)]),
      ...blend(k, names.key, names.weight, blended),
    ];
    nodes.push(makeNode('Transpose', [blended], `${blended}/transposed`, [intsAttr('perm', swap)]));
    nodes.push(makeNode('Identity', [k], names.keyOut));
    schedule(plan, reader, nodes, [key, `${blended}/transposed`]);
    return undefined;
  }
  const readers = g.consumers(key).filter((n) => leadsTo(g, n, scores, 3));
  if (!readers.length) return 'no path from the key to the scores';
  const nodes = [...blend(key, names.key, names.weight, blended), makeNode('Identity', [key], names.keyOut)];
  schedule(plan, readers[0], nodes, [key, blended]);
  for (const r of readers.slice(1)) schedule(plan, r, [], [key, blended]);
  return undefined;
}

/** x + w·(injected − x): Sub, Mul, Add, ending in `out`. */
function blend(x: string, injected: string, weight: string, out: string): onnx.NodeProto[] {
  return [
    makeNode('Sub', [injected, x], `${out}/delta`),
    makeNode('Mul', [weight, `${out}/delta`], `${out}/scaled`),
    makeNode('Add', [x, `${out}/scaled`], out),
  ];
}

function leadsTo(g: GraphIndex, node: Node, target: Node, depth: number): boolean {
  if (node === target) return true;
  if (depth === 0) return false;
  return (node.output ?? []).some((o) => g.consumers(o).some((c) => leadsTo(g, c, target, depth - 1)));
}

/** Emits `nodes` before `reader` and makes it read `rename[1]` where it read `rename[0]`. */
function schedule(plan: SitePlan, reader: Node, nodes: onnx.NodeProto[], rename: [string, string]): void {
  plan.before.set(reader, [...(plan.before.get(reader) ?? []), ...nodes]);
  plan.rewires.set(reader, [...(plan.rewires.get(reader) ?? []), rename]);
}

function describePorts(
  plan: SitePlan,
  names: ReturnType<typeof selfAttentionKvPorts>,
  t: { kType: number; vType: number; kPort: PortType; vPort: PortType; rank: number },
): void {
  const site = plan.site.module;
  const ones = new Array<number>(t.rank).fill(1);
  const layout = t.rank === 4 ? '[B, heads, N, d]' : '[B·heads, N, d]';
  const input = (name: string, type: PortType, neutralShape: number[], role: string): InputPort => ({
    name,
    type,
    neutralShape,
    neutralValue: 0,
    site,
    role,
  });
  plan.ports.inputs.push(
    input(names.weight, t.kPort, [1], 'weight of the injected keys and values, 0 = off, 1 = replace'),
    input(names.key, t.kPort, ones, `keys to inject, ${layout} or broadcastable`),
    input(names.value, t.vPort, ones, `values to inject, ${layout} or broadcastable`),
  );
  plan.ports.outputs.push(
    { name: names.keyOut, type: t.kPort, site, role: `this frame's own keys before injection, ${layout}` },
    { name: names.valueOut, type: t.vPort, site, role: `this frame's own values before injection, ${layout}` },
  );
  plan.declare.inputs.push(
    valueInfo(names.weight, t.kType),
    valueInfo(names.key, t.kType),
    valueInfo(names.value, t.vType),
  );
  plan.declare.outputs.push(valueInfo(names.keyOut, t.kType), valueInfo(names.valueOut, t.vType));
}

function emit(model: onnx.ModelProto, plans: SitePlan[]): onnx.ModelProto {
  const { model: out, graph } = editableCopy(model);
  const before = new Map<Node, onnx.NodeProto[]>();
  const rewires = new Map<Node, [string, string][]>();
  for (const p of plans) {
    for (const [n, nodes] of p.before) before.set(n, [...(before.get(n) ?? []), ...nodes]);
    for (const [n, r] of p.rewires) rewires.set(n, [...(rewires.get(n) ?? []), ...r]);
  }
  const renamed = (n: Node) => (rewires.get(n) ?? []).reduce<Node>((node, [from, to]) => rewire(node, from, to), n);
  graph.node = graph.node.flatMap((n) => [...(before.get(n) ?? []), renamed(n)]);
  for (const p of plans) {
    graph.input.push(...p.declare.inputs);
    graph.output.push(...p.declare.outputs);
  }
  return out;
}

function mergePorts(plans: SitePlan[]): { inputs: InputPort[]; outputs: OutputPort[] } {
  return { inputs: plans.flatMap((p) => p.ports.inputs), outputs: plans.flatMap((p) => p.ports.outputs) };
}
