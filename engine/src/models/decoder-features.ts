// The UNet's last decoder features as an extra graph output, for the correspondences of latent correction and mask
// smoothing (GenVideo §3.3 matches frames by these features; DIFT showed they carry semantic correspondence). An
// exported UNet does not output them, so the graph is rewritten in memory: the tensor entering the output
// normalisation (`conv_norm_out`, then SiLU, then `conv_out`) is the last up block's output at latent resolution
// — 320 channels at 64×64 for SD 1.x — and is added to the graph's outputs. Nothing is written to the model folder.
import { onnx } from 'onnx-proto';

export type FeatureRewrite = { ok: true; bytes: Uint8Array; tensor: string } | { ok: false; reason: string };

/** Ops between the decoder features and conv_out: the normalisation (whole or decomposed), SiLU, casts, layouts. */
const PASS_THROUGH = new Set(['Mul', 'Add', 'Sigmoid', 'Reshape', 'Cast', 'Identity', 'Transpose', 'Div', 'Sub']);
const NORMS = new Set(['GroupNormalization', 'InstanceNormalization', 'GroupNorm']);
/** Of these only the first input is data. */
const SINGLE_DATA_INPUT = new Set(['Reshape', 'Cast', 'Identity', 'Transpose', 'Sigmoid']);

/**
 * Finds the tensor that feeds the UNet's output normalisation, walking back from the node that writes the graph's
 * (first) output through the SiLU and the normalisation's own ops, and returns the graph with that tensor as an
 * extra output.
 */
export function exposeDecoderFeatures(modelBytes: Uint8Array): FeatureRewrite {
  let model: onnx.ModelProto;
  try {
    model = onnx.ModelProto.decode(modelBytes);
  } catch (err) {
    return { ok: false, reason: `the UNet graph could not be parsed (${(err as Error).message})` };
  }
  const graph = model.graph;
  if (!graph) return { ok: false, reason: 'the UNet file has no graph' };
  const producer = new Map<string, onnx.INodeProto>();
  for (const node of graph.node ?? []) for (const o of node.output ?? []) producer.set(o, node);
  const constant = new Set<string>((graph.initializer ?? []).map((t) => t.name ?? ''));
  for (const node of graph.node ?? []) if (node.opType === 'Constant') for (const o of node.output ?? []) constant.add(o);
  const isData = (name: string) => !!name && !constant.has(name);

  // From the output back to conv_out.
  const output = graph.output?.[0]?.name;
  if (!output) return { ok: false, reason: 'the UNet graph declares no output' };
  let tensor = output;
  let node = producer.get(tensor);
  while (node && (node.opType === 'Cast' || node.opType === 'Identity')) {
    tensor = node.input![0];
    node = producer.get(tensor);
  }
  if (node?.opType !== 'Conv') return { ok: false, reason: `the UNet output is not written by a Conv (conv_out) but by ${node?.opType ?? 'nothing'}` };
  // The features have conv_out's compute type, which its weight tells (an fp16-I/O graph may compute in float).
  const weight = (graph.initializer ?? []).find((t) => t.name === node!.input![1]);
  const elemType = weight?.dataType ?? onnx.TensorProto.DataType.FLOAT;
  tensor = node.input![0];

  // Back through SiLU and the normalisation to the normalisation's input.
  for (let hops = 0; hops < 16; hops++) {
    node = producer.get(tensor);
    if (!node) return { ok: false, reason: 'the walk back from conv_out reached a graph input before the output normalisation' };
    const op = node.opType ?? '';
    if (NORMS.has(op)) {
      tensor = node.input![0];
      // A decomposed GroupNorm reshapes to [N, G, -1] before InstanceNormalization; an NHWC-fused one is wrapped in a
      // Transpose. Either way the features are that op's input.
      const before = producer.get(tensor);
      if (before && (before.opType === 'Reshape' || before.opType === 'Transpose')) tensor = before.input![0];
      return addOutput(model, tensor, elemType);
    }
    if (!PASS_THROUGH.has(op)) return { ok: false, reason: `unexpected ${op} between the output normalisation and conv_out` };
    if (SINGLE_DATA_INPUT.has(op)) {
      // Reshape's shape may be computed from the data (torch writes Shape → Gather → Concat), so it is not a constant.
      tensor = node.input![0];
      continue;
    }
    const inputs = (node.input ?? []).filter(isData);
    if (op === 'Mul' && inputs.length === 2) {
      // SiLU written as x · sigmoid(x): follow x.
      const [a, b] = inputs;
      const sigA = producer.get(a)?.opType === 'Sigmoid' && producer.get(a)!.input![0] === b;
      tensor = sigA ? b : a;
      continue;
    }
    if (inputs.length !== 1) return { ok: false, reason: `${op} with ${inputs.length} data inputs between the output normalisation and conv_out` };
    tensor = inputs[0];
  }
  return { ok: false, reason: 'no normalisation found within 16 ops before conv_out' };
}

function addOutput(model: onnx.ModelProto, tensor: string, elemType: number): FeatureRewrite {
  const graph = model.graph!;
  if ((graph.input ?? []).some((i) => i.name === tensor)) return { ok: false, reason: 'the decoder features are a graph input' };
  if (!(graph.output ?? []).some((o) => o.name === tensor)) {
    graph.output = [...(graph.output ?? []), onnx.ValueInfoProto.create({ name: tensor, type: { tensorType: { elemType } } })];
  }
  return { ok: true, bytes: onnx.ModelProto.encode(model).finish(), tensor };
}
