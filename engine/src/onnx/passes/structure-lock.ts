// Structure lock: plug-and-play (PnP) feature and Q/K injection, as TokenFlow and VidToMe use it to keep an edited
// video's layout that of the source. The source branch (the source video's latent, run through the same UNet in the
// same batch as the edited frames) hands the target branch its structure: the self-attention queries and keys of the
// chosen decoder sites, and the residual-branch features of one decoder resnet (`up_blocks.1.resnets.1` by default:
// its conv2 output, before the skip Add). Both branches ride in one UNet batch, so the injection is a gather along
// the batch axis inside the graph, and nothing large crosses the JS/ORT boundary:
//   x' = (1 − w)·x + w·Gather(x, source, axis = 0)
// per row of x's first axis, for x ∈ {Q, K} at every chosen self-attention site (where the scores MatMul reads them)
// and x = the resnet's conv2 output. Written that way rather than x + w·(g − x) it is exact at both ends: at w = 0,
// 1·x = x and 0·g = ±0, so x' = x (bit for bit for finite values, −0 aside); at w = 1, 0·x + 1·g = g. So the neutral
// graph is the original, and a row whose source is itself computes the original at any weight.
//
// The schedule is the stage's: PnP injects the features during the first 80 % of the steps and Q/K during the first
// 50 % (TokenFlow's and VidToMe's defaults); the pass only gives the ports, and a step without injection feeds weight
// 0 (or leaves the ports unfed: their neutral values are weight 0, source [0]). Sources index the batch of one
// session run: a UNet exported with a fixed batch is run in chunks (sd-model.ts predict), and every chunk gets the
// same feeds, so there the source items must sit in each chunk at the same positions.
//
// Ports, per site and per resnet (`reshoot/structure-lock/<module>/source` and `/weight`):
// - `source`, int64: for each row of the tensor's first axis, the row it takes its injected tensor from. Attention
//   sites with heads folded into the batch ([B·heads, N, d]) have item b's head h at row b·heads + h, so item b
//   injected from item s is fed s·heads + h; split sites ([B, heads, N, d]) and resnets ([B, C, h, w]) are indexed
//   by item. Neutral [0].
// - `weight`: per row of the same axis, [B·heads, 1, 1] folded, [B, 1, 1, 1] split and resnets (or broadcastable),
//   of the element type of the tensor it blends (float16 where the graph computes Q/K in float16; float32 where
//   upcast_attention Casts them first). Should K have another type than Q, K's blend reads the weight through a
//   Cast. Neutral 0, all-ones shape.
// Kᵀ-only graphs (keyTransposed) have Kᵀ blended directly: the gather is along axis 0 and the weight is per row of
// it, neither of which a transpose of the last two axes touches.
//
// Cost: per injected tensor and call one Gather, a Sub on the weight ([B', 1, 1]: nothing) and three elementwise ops
// over the tensor (Mul, Mul, Add), also at the neutral values (the gather then copies one row and w·g is one row,
// but (1 − w)·x and the Add still touch every element). SD 1.5's decoder has 9 self-attention sites (up_blocks.1–3,
// three transformers each); at a 64×64 latent Q and K are each, per batch item, tokens × channels = 256 × 1280
// (up_blocks.1, 16×16), 1024 × 640 (up_blocks.2, 32×32) and 4096 × 320 (up_blocks.3, 64×64) elements: 0.33 M, 0.66 M
// and 1.31 M (1.3, 2.6 and 5.2 MB in fp32). Q and K of all 9 sites come to 13.8 M elements per item (55 MB fp32,
// 28 MB fp16) and the default resnet adds 1280 × 16 × 16 = 0.33 M: per item and call about 42 M flops and 5 (neutral)
// to 9 (injecting) reads/writes of each of those elements, next to the UNet's hundreds of GFLOPs. Memory: the
// blended tensor and its intermediates live beside the original only while one site runs (up to ≈ 3 × 5.2 MB per
// item in fp32, at up_blocks.3).
//
// Sites by default: every self-attention site whose module is in the decoder (`up_blocks.*`); none → refused. (PnP's
// own code leaves out the first decoder transformer, up_blocks.1.attentions.0 in SD 1.5: name `sites` to match it.)
// Features by default: `up_blocks.1.resnets.1` where the graph has that resnet's conv2 node (found by diffusers node
// name, `/up_blocks.1/resnets.1/conv2/Conv`), else none; a resnet named explicitly that the graph lacks is refused,
// and so is any resnet in a graph whose nodes carry no diffusers names. `sites: []` injects features only.
import { onnx } from 'onnx-proto';
import { floatToHalfBits } from '../../diffusion/half';
import type { AttentionSite } from '../attention-sites';
import { GraphIndex, type Node } from '../graph-index';
import { intAttr, makeNode, portType, rewire, valueInfo } from '../graph-edit';
import type { GraphPass, InputPort, PassResult, Ports, PortType } from '../pass';
import {
  emitRewrites,
  leadsTo,
  mergePorts,
  schedule,
  scoresNode,
  siteRewrite,
  structureLockedKey,
  type SiteRewrite,
} from './site-rewrite';

export interface StructureLockOptions {
  /** Self-attention modules whose Q and K are injected (default: every one in `up_blocks.*`; [] for none). */
  sites?: readonly string[];
  /** Resnet modules (e.g. `up_blocks.1.resnets.1`) whose conv2 output is injected (default: that one, if present). */
  features?: readonly string[];
}

const NAME = 'structure-lock';
const DT = onnx.TensorProto.DataType;
const HALF: number = DT.FLOAT16;
const DEFAULT_FEATURES = ['up_blocks.1.resnets.1'];
/** Readers of Q/K that only need their shape: left reading the original. */
const SHAPE_OPS = new Set(['Shape', 'Size']);

/** Port names of one attention site or resnet: inputs `source` (int64 rows) and `weight` (per row, 0 = off). */
export function structureLockPorts(module: string) {
  const p = `reshoot/${NAME}/${module}`;
  return { source: `${p}/source`, weight: `${p}/weight` };
}

type Names = ReturnType<typeof structureLockPorts>;

/** A resnet's rewrite: nodes emitted before the first reader of conv2's output, every reader rewired. */
interface FeaturePlan {
  module: string;
  readers: Node[];
  from: string;
  to: string;
  nodes: onnx.NodeProto[];
  ports: Ports;
  declare: onnx.IValueInfoProto[];
}

export const structureLock: GraphPass<StructureLockOptions> = {
  name: NAME,
  apply(model, sites, options): PassResult {
    if (!model.graph) return { ok: false, reason: 'the UNet file has no graph' };
    const chosen = chooseSites(sites, options.sites);
    if (typeof chosen === 'string') return { ok: false, reason: chosen };
    const g = new GraphIndex(model.graph);
    const features = chooseFeatures(g, options.features);
    if (typeof features === 'string') return { ok: false, reason: features };
    if (!chosen.length && !features.length)
      return { ok: false, reason: 'no site and no resnet chosen: nothing to inject' };
    const plans: SiteRewrite[] = [];
    for (const site of chosen) {
      const plan = planSite(g, site);
      if (typeof plan === 'string') return { ok: false, reason: `${site.module}: ${plan}` };
      plans.push(plan);
    }
    const featurePlans: FeaturePlan[] = [];
    for (const { module, conv } of features) {
      const plan = planFeature(g, module, conv);
      if (typeof plan === 'string') return { ok: false, reason: `${module}: ${plan}` };
      featurePlans.push(plan);
    }
    const out = emitRewrites(model, plans);
    const emitted = emitFeatures(out, featurePlans);
    if (typeof emitted === 'string') return { ok: false, reason: emitted };
    const ports = mergePorts(plans);
    for (const p of featurePlans) {
      ports.inputs.push(...p.ports.inputs);
      ports.outputs.push(...p.ports.outputs);
    }
    return { ok: true, model: out, ports };
  },
};

function chooseSites(sites: readonly AttentionSite[], modules?: readonly string[]): AttentionSite[] | string {
  const self = sites.filter((s) => s.kind === 'self');
  if (!modules) {
    const decoder = self.filter((s) => s.module.startsWith('up_blocks.'));
    if (decoder.length) return decoder;
    return self.length
      ? 'the graph has no self-attention site in the decoder (up_blocks.*); name the sites to inject'
      : 'the graph has no self-attention site';
  }
  const picked: AttentionSite[] = [];
  for (const module of modules) {
    const site = sites.find((s) => s.module === module);
    if (!site) return `${module} is not an attention site of this graph`;
    if (site.kind !== 'self')
      return `${module} is a cross-attention site; structure-lock injects self-attention queries and keys only`;
    if (!picked.includes(site)) picked.push(site);
  }
  return picked;
}

/** diffusers module path of a node named after it: `/up_blocks.1/resnets.1/conv2/Conv` → `up_blocks.1.resnets.1.conv2.Conv`. */
const dotted = (name: string) => name.split('/').filter(Boolean).join('.');

function chooseFeatures(g: GraphIndex, modules?: readonly string[]): { module: string; conv: Node }[] | string {
  const convs = new Map<string, Node[]>();
  for (const n of g.nodes) {
    if (n.opType !== 'Conv' || !n.name) continue;
    const key = dotted(n.name);
    convs.set(key, [...(convs.get(key) ?? []), n]);
  }
  const conv2 = (module: string) => convs.get(`${module}.conv2.Conv`);
  if (!modules) {
    return DEFAULT_FEATURES.flatMap((module) => {
      const found = conv2(module);
      return found?.length === 1 ? [{ module, conv: found[0] }] : [];
    });
  }
  const named = g.nodes.some((n) => /(^|[/.])resnets\.\d+[/.]/.test(n.name ?? ''));
  const picked: { module: string; conv: Node }[] = [];
  for (const module of modules) {
    if (!named)
      return `${module}: the graph's nodes carry no diffusers module names (no "…/resnets.<i>/…"), so resnet features cannot be found`;
    const found = conv2(module);
    const path = `/${module.replace(/\.(\d+)(\.|$)/g, '.$1/').replace(/\/$/, '')}/conv2/Conv`;
    if (!found?.length) return `${module} is not a resnet of this graph (no Conv node ${path})`;
    if (found.length > 1) return `${module}: ${found.length} Conv nodes are named ${path}`;
    if (!picked.some((p) => p.module === module)) picked.push({ module, conv: found[0] });
  }
  return picked;
}

function planSite(g: GraphIndex, site: AttentionSite): SiteRewrite | string {
  const names = structureLockPorts(site.module);
  if (g.isGraphInput(names.source) || g.isGraphInput(names.weight)) return 'the pass was already applied to this site';
  const scores = scoresNode(g, site);
  if (!scores) return 'the site no longer has the scores MatMul discovery found';
  const qType = g.elemType(site.tensors.query);
  const kType = g.elemType(site.tensors.key);
  const qPort = portType(qType);
  if (!isFloat(qType) || !isFloat(kType) || !qPort) {
    const shown = [qType, kType].map((t) => (t === undefined ? 'unknown' : (DT[t] ?? String(t))));
    return `the element type of Q or K is not float32/float16 (${shown.join(', ')})`;
  }
  const plan = siteRewrite(site);
  // The weight port has Q's type; K reads it through a Cast where its type differs.
  const kWeight = kType === qType ? names.weight : `${names.weight}/k_cast`;
  for (const [tensor, role, weight, type] of [
    [site.tensors.query, 'query', names.weight, qType],
    [site.tensors.key, 'key', kWeight, kType],
  ] as const) {
    const readers = g.consumers(tensor).filter((n) => !SHAPE_OPS.has(n.opType ?? '') && leadsTo(g, n, scores, 3));
    if (!readers.length) return `no path from the ${role} to the scores`;
    const out = role === 'key' ? structureLockedKey(site.module) : `reshoot/${NAME}/${site.module}/${role}`;
    const nodes = blend(tensor, names.source, weight, type, out);
    if (weight !== names.weight) nodes.unshift(makeNode('Cast', [names.weight], weight, [intAttr('to', type)]));
    schedule(plan, readers[0], nodes, [tensor, out]);
    for (const r of readers.slice(1)) schedule(plan, r, [], [tensor, out]);
  }
  const rank = site.layout === 'split' ? 4 : 3;
  const rows = rank === 4 ? 'B (items)' : `B·heads (item b's head h is row b·${site.heads || 'heads'} + h)`;
  const weightShape = rank === 4 ? '[B, 1, 1, 1]' : '[B·heads, 1, 1]';
  plan.ports.inputs.push(
    sourcePort(
      names,
      site.module,
      `Q/K rows along the first axis, ${rows}: row i takes its injected Q and K from row source[i]`,
    ),
    weightPort(names, site.module, qPort, rank, `Q/K injection weight per row, ${weightShape} or broadcastable`),
  );
  plan.declare.inputs.push(valueInfo(names.source, DT.INT64), valueInfo(names.weight, qType));
  return plan;
}

function planFeature(g: GraphIndex, module: string, conv: Node): FeaturePlan | string {
  const names = structureLockPorts(module);
  if (g.isGraphInput(names.source) || g.isGraphInput(names.weight))
    return 'the pass was already applied to this resnet';
  const x = conv.output?.[0];
  if (!x) return `${conv.name} has no output`;
  const readers = g.consumers(x);
  if (!readers.length) return `nothing reads ${conv.name}'s output`;
  const type = g.elemType(x);
  const port = portType(type);
  if (!isFloat(type) || !port) return `the element type of ${x} is not float32/float16`;
  const out = `reshoot/${NAME}/${module}/features`;
  const role = 'resnet conv2 output rows along the first axis, B (items): row i takes its features from row source[i]';
  return {
    module,
    readers: [...readers],
    from: x,
    to: out,
    nodes: blend(x, names.source, names.weight, type, out),
    ports: {
      inputs: [
        sourcePort(names, module, role),
        weightPort(names, module, port, 4, 'feature injection weight per item, [B, 1, 1, 1] or broadcastable'),
      ],
      outputs: [],
    },
    declare: [valueInfo(names.source, DT.INT64), valueInfo(names.weight, type)],
  };
}

const isFloat = (t: number | undefined): t is number => t === DT.FLOAT || t === DT.FLOAT16;

function sourcePort(names: Names, site: string, role: string): InputPort {
  return { name: names.source, type: 'int64', neutralShape: [1], neutralValue: 0, site, role: `int64 ${role}` };
}

function weightPort(names: Names, site: string, type: PortType, rank: number, role: string): InputPort {
  const neutralShape = new Array<number>(rank).fill(1);
  const full = `${role}: 0 = the row's own, 1 = the source row's, (1 − w)·own + w·source between`;
  return { name: names.weight, type, neutralShape, neutralValue: 0, site, role: full };
}

/** (1 − w)·x + w·Gather(x, source, axis 0), ending in `out`; `weight` already has x's element type. */
function blend(x: string, source: string, weight: string, type: number, out: string): onnx.NodeProto[] {
  const one = `${out}/one`;
  const data = type === HALF ? Uint16Array.of(floatToHalfBits(1)) : Float32Array.of(1);
  const constant = onnx.NodeProto.create({
    name: one,
    opType: 'Constant',
    output: [one],
    attribute: [
      {
        name: 'value',
        type: onnx.AttributeProto.AttributeType.TENSOR,
        t: { dataType: type, dims: [], rawData: new Uint8Array(data.buffer) },
      },
    ],
  });
  return [
    constant,
    makeNode('Sub', [one, weight], `${out}/keep`),
    makeNode('Gather', [x, source], `${out}/gathered`, [intAttr('axis', 0)]),
    makeNode('Mul', [`${out}/keep`, x], `${out}/own`),
    makeNode('Mul', [weight, `${out}/gathered`], `${out}/injected`),
    makeNode('Add', [`${out}/own`, `${out}/injected`], out),
  ];
}

/** Adds the resnets' rewrites to the emitted copy: nodes before the first reader, every reader rewired. */
function emitFeatures(model: onnx.ModelProto, plans: FeaturePlan[]): string | undefined {
  const graph = model.graph!;
  for (const p of plans) {
    // Readers are found by the tensor they write: the attention rewrites may have replaced the node objects.
    const at = p.readers.map((r) => graph.node!.findIndex((n) => n.output?.[0] === r.output?.[0]));
    if (at.some((i) => i < 0)) return `${p.module}: a reader of the conv2 output is gone from the rewritten graph`;
    for (const i of at) graph.node![i] = rewire(graph.node![i], p.from, p.to);
    graph.node!.splice(Math.min(...at), 0, ...p.nodes);
    graph.input!.push(...p.declare);
  }
  return undefined;
}
