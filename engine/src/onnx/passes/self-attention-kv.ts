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
import { intAttr, intsAttr, makeNode, portType, valueInfo } from '../graph-edit';
import type { GraphPass, InputPort, PassResult, PortType } from '../pass';
import {
  chooseSelfSites,
  emitRewrites,
  leadsTo,
  mergePorts,
  schedule,
  scoresNode,
  siteRewrite,
  type SiteRewrite,
} from './site-rewrite';

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

export const selfAttentionKv: GraphPass<SelfAttentionKvOptions> = {
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

function planSite(g: GraphIndex, site: AttentionSite): SiteRewrite | string {
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
  const plan = siteRewrite(site);
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

/** K' replaces K where the path to the scores reads it; Kᵀ-only graphs get K by a Transpose and K'ᵀ back. */
function planKey(
  g: GraphIndex,
  plan: SiteRewrite,
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

function describePorts(
  plan: SiteRewrite,
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
