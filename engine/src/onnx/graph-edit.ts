// Building blocks for passes that must not mutate their input: a copy of the model whose node, input, output,
// initializer and value_info lists are new arrays (the messages in them, initializers above all, are shared, so
// copying costs nothing however large the weights), node constructors, and dead-code removal.
import { onnx } from 'onnx-proto';
import { GraphIndex } from './graph-index';
import type { PortType } from './pass';

const DT = onnx.TensorProto.DataType;
const PORT_TYPES: Record<number, PortType> = { [DT.FLOAT]: 'float32', [DT.FLOAT16]: 'float16', [DT.INT64]: 'int64' };

export function portType(elemType: number | undefined): PortType | undefined {
  return elemType === undefined ? undefined : PORT_TYPES[elemType];
}

export interface Editable {
  model: onnx.ModelProto;
  graph: onnx.GraphProto;
}

/** A model whose graph lists may be replaced or pushed to freely; everything else is shared with `model`. */
export function editableCopy(model: onnx.IModelProto): Editable {
  const src = model.graph ?? {};
  const graph = onnx.GraphProto.create({
    ...src,
    node: [...(src.node ?? [])],
    input: [...(src.input ?? [])],
    output: [...(src.output ?? [])],
    initializer: [...(src.initializer ?? [])],
    valueInfo: [...(src.valueInfo ?? [])],
  });
  return { model: onnx.ModelProto.create({ ...model, graph }), graph };
}

/** A tensor declaration; dims left out means any rank and shape (what port inputs want). */
export function valueInfo(name: string, elemType: number, dims?: (number | string)[]): onnx.IValueInfoProto {
  const shape = dims && { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) };
  return onnx.ValueInfoProto.create({ name, type: { tensorType: shape ? { elemType, shape } : { elemType } } });
}

export function makeNode(
  opType: string,
  inputs: string[],
  output: string,
  attrs: onnx.IAttributeProto[] = [],
): onnx.NodeProto {
  return onnx.NodeProto.create({ name: output, opType, input: inputs, output: [output], attribute: attrs });
}

export function intsAttr(name: string, ints: number[]): onnx.IAttributeProto {
  return { name, type: onnx.AttributeProto.AttributeType.INTS, ints };
}

export function intAttr(name: string, i: number): onnx.IAttributeProto {
  return { name, type: onnx.AttributeProto.AttributeType.INT, i };
}

/** A copy of `node` reading `from` as `to` wherever it did. */
export function rewire(node: onnx.INodeProto, from: string, to: string): onnx.NodeProto {
  return onnx.NodeProto.create({ ...node, input: (node.input ?? []).map((i) => (i === from ? to : i)) });
}

/** Tensors a node reads, including outer-scope names its subgraphs (If/Loop bodies) use. */
function reads(node: onnx.INodeProto): string[] {
  const names = [...(node.input ?? [])];
  for (const a of node.attribute ?? []) {
    for (const g of [a.g, ...(a.graphs ?? [])]) for (const n of g?.node ?? []) names.push(...reads(n));
  }
  return names.filter(Boolean);
}

/** Drops nodes no graph output depends on, and the initializers only they read. Inputs are the interface: kept. */
export function pruneDead(graph: onnx.GraphProto): void {
  const live = new Set((graph.output ?? []).map((o) => o.name ?? ''));
  const keep = new Set<onnx.INodeProto>();
  const order = new GraphIndex(graph).topoOrder();
  // In topological order one backward sweep settles liveness.
  for (let i = order.length - 1; i >= 0; i--) {
    if (!(order[i].output ?? []).some((o) => live.has(o))) continue;
    keep.add(order[i]);
    for (const r of reads(order[i])) live.add(r);
  }
  graph.node = (graph.node ?? []).filter((n) => keep.has(n));
  graph.initializer = (graph.initializer ?? []).filter((t) => live.has(t.name ?? ''));
  graph.valueInfo = (graph.valueInfo ?? []).filter((v) => live.has(v.name ?? ''));
}
