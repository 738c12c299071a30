// Read-only index over a decoded ONNX graph for the passes and the attention-site finder: who writes and who reads
// each tensor, which tensors are constants (also when an exporter routes them through Identity or Cast nodes, as
// deduplicated initializers and fp16-stored weights are), small constants' values, element types and a
// topological order. Weight values are never needed: an initializer whose data is external still counts as a
// constant, it just has no readable value.
import { onnx } from 'onnx-proto';
import { halfBitsToFloat } from '../diffusion/half';

export type Node = onnx.INodeProto;
type Long = { toNumber(): number };

const DT = onnx.TensorProto.DataType;
const RANDOM_OPS = new Set([
  'RandomNormal',
  'RandomNormalLike',
  'RandomUniform',
  'RandomUniformLike',
  'Multinomial',
  'Bernoulli',
]);
/** Ops whose output element type is fixed regardless of their inputs. */
const FIXED_TYPE: Record<string, number> = {
  Shape: DT.INT64,
  Size: DT.INT64,
  NonZero: DT.INT64,
  ArgMax: DT.INT64,
  ArgMin: DT.INT64,
  Equal: DT.BOOL,
  Less: DT.BOOL,
  Greater: DT.BOOL,
  LessOrEqual: DT.BOOL,
  GreaterOrEqual: DT.BOOL,
  Not: DT.BOOL,
  And: DT.BOOL,
  Or: DT.BOOL,
  IsNaN: DT.BOOL,
  IsInf: DT.BOOL,
};

export function isRandomOp(op: string | null | undefined): boolean {
  return RANDOM_OPS.has(op ?? '');
}

export function toNumber(v: number | Long | null | undefined): number {
  if (v === null || v === undefined) return 0;
  return typeof v === 'number' ? v : v.toNumber();
}

export function attribute(node: Node, name: string): onnx.IAttributeProto | undefined {
  return (node.attribute ?? []).find((a) => a.name === name);
}

export function attrInt(node: Node, name: string): number | undefined {
  const a = attribute(node, name);
  return a && a.i !== null && a.i !== undefined ? toNumber(a.i) : undefined;
}

export function attrInts(node: Node, name: string): number[] | undefined {
  const a = attribute(node, name);
  return a?.ints?.length ? a.ints.map(toNumber) : undefined;
}

export function attrFloats(node: Node, name: string): number[] | undefined {
  const a = attribute(node, name);
  return a?.floats?.length ? [...a.floats] : undefined;
}

function elementCount(t: onnx.ITensorProto): number {
  return (t.dims ?? []).reduce<number>((n, d) => n * toNumber(d), 1);
}

/** Every element of a tensor stored inline, or undefined when its data is external, not numeric or above `max`. */
export function tensorValues(t: onnx.ITensorProto, max = 4096): number[] | undefined {
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) return undefined;
  const n = elementCount(t);
  if (n > max) return undefined;
  const raw = t.rawData;
  if (raw && raw.byteLength > 0) return rawValues(t.dataType ?? 0, raw, n);
  switch (t.dataType) {
    case DT.FLOAT:
    case DT.DOUBLE:
      return [...(t.dataType === DT.FLOAT ? (t.floatData ?? []) : (t.doubleData ?? []))];
    case DT.INT64:
      return (t.int64Data ?? []).map(toNumber);
    case DT.UINT64:
      return (t.uint64Data ?? []).map(toNumber);
    case DT.FLOAT16:
      return (t.int32Data ?? []).map(halfBitsToFloat);
    case DT.INT32:
    case DT.INT16:
    case DT.INT8:
    case DT.UINT16:
    case DT.UINT8:
    case DT.BOOL:
      return [...(t.int32Data ?? [])];
    default:
      return undefined;
  }
}

function rawValues(type: number, raw: Uint8Array, n: number): number[] | undefined {
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const read: Record<number, [number, (o: number) => number]> = {
    [DT.FLOAT]: [4, (o) => view.getFloat32(o, true)],
    [DT.DOUBLE]: [8, (o) => view.getFloat64(o, true)],
    [DT.FLOAT16]: [2, (o) => halfBitsToFloat(view.getUint16(o, true))],
    [DT.INT64]: [8, (o) => Number(view.getBigInt64(o, true))],
    [DT.UINT64]: [8, (o) => Number(view.getBigUint64(o, true))],
    [DT.INT32]: [4, (o) => view.getInt32(o, true)],
    [DT.UINT32]: [4, (o) => view.getUint32(o, true)],
    [DT.INT16]: [2, (o) => view.getInt16(o, true)],
    [DT.UINT16]: [2, (o) => view.getUint16(o, true)],
    [DT.INT8]: [1, (o) => view.getInt8(o)],
    [DT.UINT8]: [1, (o) => view.getUint8(o)],
    [DT.BOOL]: [1, (o) => view.getUint8(o)],
  };
  const entry = read[type];
  if (!entry || raw.byteLength < n * entry[0]) return undefined;
  return Array.from({ length: n }, (_, i) => entry[1](i * entry[0]));
}

/** The tensor a Constant node writes, whichever of its value attributes it uses. */
function constantNodeTensor(node: Node): onnx.ITensorProto | undefined {
  const a = (node.attribute ?? [])[0];
  if (!a) return undefined;
  switch (a.name) {
    case 'value':
      return a.t ?? undefined;
    case 'value_float':
      return { dataType: DT.FLOAT, dims: [], floatData: [a.f ?? 0] };
    case 'value_floats':
      return { dataType: DT.FLOAT, dims: [a.floats?.length ?? 0], floatData: [...(a.floats ?? [])] };
    case 'value_int':
      return { dataType: DT.INT64, dims: [], int64Data: [toNumber(a.i)] };
    case 'value_ints':
      return { dataType: DT.INT64, dims: [a.ints?.length ?? 0], int64Data: (a.ints ?? []).map(toNumber) };
    default:
      return undefined;
  }
}

export class GraphIndex {
  readonly nodes: readonly Node[];
  private readonly producers = new Map<string, Node>();
  private readonly readers = new Map<string, Node[]>();
  private readonly inits = new Map<string, onnx.ITensorProto>();
  private readonly declared = new Map<string, onnx.IValueInfoProto>();
  private readonly inputNames = new Set<string>();
  private readonly constants = new Set<string>();
  private readonly types = new Map<string, number | undefined>();
  private order?: Node[];

  constructor(readonly graph: onnx.IGraphProto) {
    this.nodes = graph.node ?? [];
    for (const t of graph.initializer ?? []) if (t.name) this.inits.set(t.name, t);
    for (const v of [...(graph.valueInfo ?? []), ...(graph.output ?? []), ...(graph.input ?? [])]) {
      if (v.name) this.declared.set(v.name, v);
    }
    for (const v of graph.input ?? []) if (v.name && !this.inits.has(v.name)) this.inputNames.add(v.name);
    for (const node of this.nodes) {
      for (const o of node.output ?? []) if (o) this.producers.set(o, node);
      for (const i of node.input ?? []) {
        if (!i) continue;
        const list = this.readers.get(i);
        if (list) list.push(node);
        else this.readers.set(i, [node]);
      }
    }
    this.markConstants();
  }

  /** Constants: initializers, Constant nodes, and anything computed from constants alone except random draws. */
  private markConstants(): void {
    for (const name of this.inits.keys()) this.constants.add(name);
    for (const node of this.topoOrder()) {
      const inputs = (node.input ?? []).filter(Boolean);
      const op = node.opType ?? '';
      const computed = inputs.length > 0 && !isRandomOp(op) && inputs.every((i) => this.constants.has(i));
      const constant = op === 'Constant' || computed;
      if (constant) for (const o of node.output ?? []) if (o) this.constants.add(o);
    }
  }

  producer(tensor: string): Node | undefined {
    return this.producers.get(tensor);
  }

  consumers(tensor: string): readonly Node[] {
    return this.readers.get(tensor) ?? [];
  }

  /** A graph input fed at run time (not an initializer listed among the inputs, as old exporters did). */
  isGraphInput(tensor: string): boolean {
    return this.inputNames.has(tensor);
  }

  isConstant(tensor: string): boolean {
    return this.constants.has(tensor);
  }

  /** Follows Identity nodes back to the tensor they copy. */
  source(tensor: string): string {
    let t = tensor;
    for (let node = this.producers.get(t); node?.opType === 'Identity'; node = this.producers.get(t)) {
      t = node.input![0];
    }
    return t;
  }

  /** The initializer or Constant-node tensor behind `tensor`, through Identity copies. */
  constantTensor(tensor: string): onnx.ITensorProto | undefined {
    const src = this.source(tensor);
    const init = this.inits.get(src);
    if (init) return init;
    const node = this.producers.get(src);
    return node?.opType === 'Constant' ? constantNodeTensor(node) : undefined;
  }

  /** Values of a small constant (through Identity, and Cast when the values survive it), else undefined. */
  constantValues(tensor: string, max = 4096): number[] | undefined {
    const src = this.source(tensor);
    const node = this.producers.get(src);
    if (node?.opType === 'Cast') return this.constantValues(node.input![0], max);
    const t = this.constantTensor(src);
    return t ? tensorValues(t, max) : undefined;
  }

  /** Static dims of a constant tensor (available even when its data is external). */
  constantDims(tensor: string): number[] | undefined {
    const src = this.source(tensor);
    const node = this.producers.get(src);
    if (node?.opType === 'Cast') return this.constantDims(node.input![0]);
    const t = this.constantTensor(src);
    return t ? (t.dims ?? []).map(toNumber) : undefined;
  }

  /** Declared dims of a graph input/output or value_info entry: numbers, or undefined where symbolic. */
  declaredDims(tensor: string): (number | undefined)[] | undefined {
    const shape = this.declared.get(tensor)?.type?.tensorType?.shape;
    if (!shape) return undefined;
    const known = (d: onnx.TensorShapeProto.IDimension) =>
      d.dimValue !== null && d.dimValue !== undefined && !d.dimParam;
    return (shape.dim ?? []).map((d) => (known(d) ? toNumber(d.dimValue) : undefined));
  }

  /** ONNX element type of a tensor, inferred from declarations, initializers and the ops that write it. */
  elemType(tensor: string): number | undefined {
    // Iterative: the chain back to a typed tensor can run through thousands of ops in a full-size UNet.
    const chain: string[] = [];
    const seen = new Set<string>();
    let t: string | undefined = tensor;
    let type: number | undefined;
    while (t !== undefined && !seen.has(t)) {
      if (this.types.has(t)) {
        type = this.types.get(t);
        break;
      }
      seen.add(t);
      chain.push(t);
      const step = this.typeStep(t);
      if (typeof step === 'number' || step === undefined) {
        type = step;
        break;
      }
      t = step.follow;
    }
    for (const c of chain) this.types.set(c, type);
    return type;
  }

  /** The type of `tensor` where its declaration or writer fixes it, else the input whose type it has. */
  private typeStep(tensor: string): number | { follow: string } | undefined {
    const declared = this.declared.get(tensor)?.type?.tensorType?.elemType;
    if (declared) return declared;
    const init = this.inits.get(tensor);
    if (init) return init.dataType ?? undefined;
    const node = this.producers.get(tensor);
    if (!node) return undefined;
    const op = node.opType ?? '';
    if (op in FIXED_TYPE) return FIXED_TYPE[op];
    const follow = (i: number) => (node.input?.[i] ? { follow: node.input[i] } : undefined);
    switch (op) {
      case 'Constant':
        return constantNodeTensor(node)?.dataType ?? undefined;
      case 'Cast':
        return attrInt(node, 'to');
      case 'CastLike':
      case 'Where':
        return follow(1);
      case 'ConstantOfShape':
        return attribute(node, 'value')?.t?.dataType ?? DT.FLOAT;
      case 'RandomNormal':
      case 'RandomUniform':
        return attrInt(node, 'dtype') ?? DT.FLOAT;
      case 'RandomNormalLike':
      case 'RandomUniformLike':
        return attrInt(node, 'dtype') ?? follow(0);
      default: {
        const first = (node.input ?? []).find(Boolean);
        return first ? { follow: first } : undefined;
      }
    }
  }

  /** Nodes in an order where every tensor is written before it is read (Kahn's algorithm, stable). */
  topoOrder(): Node[] {
    if (this.order) return this.order;
    const pending = new Map<Node, number>();
    const ready: Node[] = [];
    for (const node of this.nodes) {
      const written = (i: string) => !!i && this.producers.has(i) && this.producers.get(i) !== node;
      const waits = new Set((node.input ?? []).filter(written));
      pending.set(node, waits.size);
      if (waits.size === 0) ready.push(node);
    }
    const order: Node[] = [];
    const released = new Set<string>();
    for (let k = 0; k < ready.length; k++) {
      const node = ready[k];
      order.push(node);
      for (const o of node.output ?? []) {
        if (!o || released.has(o)) continue;
        released.add(o);
        for (const reader of new Set(this.readers.get(o) ?? [])) {
          const left = pending.get(reader)! - 1;
          pending.set(reader, left);
          if (left === 0) ready.push(reader);
        }
      }
    }
    // A cycle (invalid graph) leaves nodes behind; keep them in file order rather than lose them.
    if (order.length < this.nodes.length) for (const node of this.nodes) if (!order.includes(node)) order.push(node);
    this.order = order;
    return order;
  }

  /** Whether `target` is written by an ancestor of `tensor` within `maxDepth` ops (breadth-first). */
  reaches(tensor: string, target: (node: Node) => boolean, maxDepth = 64): Node | undefined {
    let frontier = [tensor];
    const seen = new Set<string>(frontier);
    for (let depth = 0; depth < maxDepth && frontier.length; depth++) {
      const next: string[] = [];
      for (const t of frontier) {
        const node = this.producers.get(t);
        if (!node) continue;
        if (target(node)) return node;
        for (const i of node.input ?? []) {
          if (i && !seen.has(i)) {
            seen.add(i);
            next.push(i);
          }
        }
      }
      frontier = next;
    }
    return undefined;
  }
}
