// The UNet's last decoder features as an extra graph output, for the correspondences of latent correction and mask
// smoothing (GenVideo §3.3 matches frames by these features; DIFT showed they carry semantic correspondence). An
// exported UNet does not output them, so the graph is rewritten: the tensor entering the output normalisation
// (`conv_norm_out`, then SiLU, then `conv_out`) is the last up block's output at latent resolution — 320 channels
// at 64×64 for SD 1.x — and becomes an output. Constants are recognised through the Identity nodes an exporter writes
// when it merges identical constants into one initializer (a walk that takes those for data finds "Add with 2 data
// inputs" and gives up).
import { onnx } from 'onnx-proto';
import { GraphIndex, type Node } from '../graph-index';
import { editableCopy, makeNode, portType, valueInfo } from '../graph-edit';
import type { GraphPass, PassResult } from '../pass';

export const FEATURE_TAP_OUTPUT = 'reshoot/feature-tap/features';

/** Ops between the decoder features and conv_out: the normalisation (whole or decomposed), SiLU, casts, layouts. */
const PASS_THROUGH = new Set(['Mul', 'Add', 'Sigmoid', 'Reshape', 'Cast', 'Identity', 'Transpose', 'Div', 'Sub']);
const NORMS = new Set(['GroupNormalization', 'InstanceNormalization', 'GroupNorm']);
/** Of these only the first input is data. */
const SINGLE_DATA_INPUT = new Set(['Reshape', 'Cast', 'Identity', 'Transpose', 'Sigmoid']);
const MAX_HOPS = 16;

type Walk = { ok: true; tensor: string } | { ok: false; reason: string };

export const featureTap: GraphPass = {
  name: 'feature-tap',
  apply(model: onnx.ModelProto): PassResult {
    const graph = model.graph;
    if (!graph) return { ok: false, reason: 'the UNet file has no graph' };
    const g = new GraphIndex(graph);
    const output = graph.output?.[0]?.name;
    if (!output) return { ok: false, reason: 'the UNet graph declares no output' };
    const conv = convOut(g, output);
    if (conv.opType !== 'Conv') {
      const writer = conv.opType ?? 'nothing';
      return { ok: false, reason: `the UNet output is not written by a Conv (conv_out) but by ${writer}` };
    }
    const found = walkToNorm(g, conv.input![0]);
    if (!found.ok) return found;
    if (g.isGraphInput(found.tensor)) return { ok: false, reason: 'the decoder features are a graph input' };
    // The features have conv_out's compute type, which its weight tells (an fp16-I/O graph may compute in float).
    const elemType = g.elemType(conv.input![1]) ?? g.elemType(found.tensor) ?? onnx.TensorProto.DataType.FLOAT;
    return addOutput(model, found.tensor, elemType);
  },
};

/** The node writing the graph output, past trailing Cast/Identity; `{}` when nothing writes it. */
function convOut(g: GraphIndex, output: string): Node {
  let node = g.producer(output);
  while (node && (node.opType === 'Cast' || node.opType === 'Identity')) node = g.producer(node.input![0]);
  return node ?? {};
}

/** Back from conv_out's input through SiLU and the normalisation to the normalisation's input. */
function walkToNorm(g: GraphIndex, start: string): Walk {
  let tensor = start;
  for (let hops = 0; hops < MAX_HOPS; hops++) {
    const node = g.producer(tensor);
    if (!node) {
      return { ok: false, reason: 'the walk back from conv_out reached a graph input before the output normalisation' };
    }
    const op = node.opType ?? '';
    if (NORMS.has(op)) return { ok: true, tensor: normInput(g, node) };
    if (!PASS_THROUGH.has(op)) {
      return { ok: false, reason: `unexpected ${op} between the output normalisation and conv_out` };
    }
    const next = SINGLE_DATA_INPUT.has(op) ? node.input![0] : dataPredecessor(g, node);
    if (typeof next !== 'string') return next;
    tensor = next;
  }
  return { ok: false, reason: `no normalisation found within ${MAX_HOPS} ops before conv_out` };
}

/**
 * A decomposed GroupNorm reshapes to [N, G, -1] before InstanceNormalization; an NHWC-fused one is wrapped in a
 * Transpose. Either way the features are that op's input.
 */
function normInput(g: GraphIndex, norm: Node): string {
  const tensor = norm.input![0];
  const before = g.producer(tensor);
  return before && (before.opType === 'Reshape' || before.opType === 'Transpose') ? before.input![0] : tensor;
}

/** The one data input of an elementwise op; for SiLU's x · sigmoid(x), x. */
function dataPredecessor(g: GraphIndex, node: Node): string | { ok: false; reason: string } {
  const op = node.opType ?? '';
  const inputs = (node.input ?? []).filter((i) => !!i && !g.isConstant(i));
  if (op === 'Mul' && inputs.length === 2) {
    const [a, b] = inputs;
    const sigmoidOfB = g.producer(a)?.opType === 'Sigmoid' && g.producer(a)!.input![0] === b;
    return sigmoidOfB ? b : a;
  }
  if (inputs.length !== 1) {
    return {
      ok: false,
      reason: `${op} with ${inputs.length} data inputs between the output normalisation and conv_out`,
    };
  }
  return inputs[0];
}

function addOutput(model: onnx.ModelProto, tensor: string, elemType: number): PassResult {
  const type = portType(elemType);
  if (!type) return { ok: false, reason: `the decoder features have element type ${elemType}, which no port carries` };
  const { model: out, graph } = editableCopy(model);
  graph.node.push(makeNode('Identity', [tensor], FEATURE_TAP_OUTPUT));
  graph.output.push(valueInfo(FEATURE_TAP_OUTPUT, elemType));
  const role = `decoder features entering the output normalisation (${tensor}): [B, C, h, w] at latent resolution`;
  return { ok: true, model: out, ports: { inputs: [], outputs: [{ name: FEATURE_TAP_OUTPUT, type, tensor, role }] } };
}
