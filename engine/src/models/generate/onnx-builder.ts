// A small graph builder over onnx-proto, used to write the project's own ONNX models (tiny-sd, oracle, sd-bench).
// Node and value names follow the torch exporter's scoped style (`/down_blocks.0/attentions.0/.../attn2/MatMul`,
// output `..._output_0`) so the generated graphs look like real Stable Diffusion exports to anything that reads
// them by name.
import { onnx } from 'onnx-proto';
import { toHalf } from '../../diffusion/half';

export type ElemType = 'float32' | 'float16' | 'int64' | 'int32' | 'bool';
export type Dim = number | string;

const ELEM: Record<ElemType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  float16: onnx.TensorProto.DataType.FLOAT16,
  int64: onnx.TensorProto.DataType.INT64,
  int32: onnx.TensorProto.DataType.INT32,
  bool: onnx.TensorProto.DataType.BOOL,
};

export function elemTypeCode(t: ElemType): number {
  return ELEM[t];
}

/** Forces a float attribute even when the value is integral (e.g. alpha = 1). */
export class FloatAttr {
  constructor(readonly value: number) {}
}
export const f = (v: number) => new FloatAttr(v);

export type AttrValue = number | FloatAttr | string | number[] | FloatAttr[] | onnx.ITensorProto;

function attribute(name: string, v: AttrValue): onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (v instanceof FloatAttr) return { name, type: T.FLOAT, f: v.value };
  if (typeof v === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(v) };
  if (typeof v === 'number') return Number.isInteger(v) ? { name, type: T.INT, i: v } : { name, type: T.FLOAT, f: v };
  if (Array.isArray(v)) {
    if (v.length > 0 && v[0] instanceof FloatAttr) return { name, type: T.FLOATS, floats: (v as FloatAttr[]).map((x) => x.value) };
    const nums = v as number[];
    if (nums.every((x) => Number.isInteger(x))) return { name, type: T.INTS, ints: nums };
    return { name, type: T.FLOATS, floats: nums };
  }
  return { name, type: T.TENSOR, t: v };
}

export interface SaveOptions {
  /** ONNX opset of the default domain; ORT 1.30 accepts 18 and 21-26. */
  opset?: number;
  /** Move float initializers of at least this many elements into one external data file. */
  externalData?: { location: string; minElements?: number };
  /** Store float32 initializers as float16 with a Cast in front (how fp16 exports ship their weights). */
  halfWeights?: boolean;
}

export interface SavedModel {
  model: Uint8Array;
  /** Contents of the external data file, when SaveOptions.externalData was given. */
  data?: Uint8Array;
}

export class GraphBuilder {
  private readonly nodes: onnx.INodeProto[] = [];
  private readonly inits: { name: string; dims: number[]; type: ElemType; values: ArrayLike<number> | bigint[] }[] = [];
  private readonly inputs: onnx.IValueInfoProto[] = [];
  private readonly outputs: onnx.IValueInfoProto[] = [];
  private readonly used = new Set<string>();
  private scopeStack: string[] = [];
  private counter = 0;

  constructor(readonly name: string) {}

  /** Runs fn with nodes named under `/prefix` (nested scopes join with '/'), as torch's exporter names them. */
  scope<T>(prefix: string, fn: () => T): T {
    this.scopeStack.push(prefix);
    try {
      return fn();
    } finally {
      this.scopeStack.pop();
    }
  }

  private scoped(base: string): string {
    const prefix = this.scopeStack.length ? '/' + this.scopeStack.join('/') + '/' : '/';
    let candidate = prefix + base;
    let k = 1;
    while (this.used.has(candidate)) candidate = `${prefix}${base}_${k++}`;
    this.used.add(candidate);
    return candidate;
  }

  input(name: string, type: ElemType, dims: Dim[]): string {
    this.inputs.push(valueInfo(name, type, dims));
    return name;
  }

  output(name: string, type: ElemType, dims: Dim[]): void {
    this.outputs.push(valueInfo(name, type, dims));
  }

  /** A float32 initializer (weights). */
  weight(name: string, values: ArrayLike<number>, dims: number[]): string {
    const full = this.scopedInit(name);
    this.inits.push({ name: full, dims, type: 'float32', values });
    return full;
  }

  /** A small constant initializer of any type; int64 values are plain numbers. */
  constant(values: ArrayLike<number>, dims: number[], type: ElemType = 'float32', name = 'const'): string {
    const full = this.scopedInit(`${name}_${this.counter++}`);
    this.inits.push({ name: full, dims, type, values });
    return full;
  }

  scalar(v: number, type: ElemType = 'float32'): string {
    return this.constant([v], [], type, 'scalar');
  }

  ints(values: number[]): string {
    return this.constant(values, [values.length], 'int64', 'ints');
  }

  private scopedInit(base: string): string {
    const scope = this.scopeStack.join('.');
    const name = scope ? `${scope}.${base}` : base;
    if (this.used.has(name)) throw new Error(`duplicate initializer ${name}`);
    this.used.add(name);
    return name;
  }

  /** Adds a node; returns its output names (one unless `outputs` says otherwise). */
  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, outputs: number | string[] = 1, domain = ''): string[] {
    const nodeName = this.scoped(opType);
    const outNames = Array.isArray(outputs) ? outputs : Array.from({ length: outputs }, (_, i) => `${nodeName}_output_${i}`);
    this.nodes.push({
      name: nodeName,
      opType,
      domain,
      input: inputs,
      output: outNames,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return outNames;
  }

  /** Single-output shorthand. */
  o(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, outName?: string): string {
    return this.op(opType, inputs, attrs, outName ? [outName] : 1)[0];
  }

  save(options: SaveOptions = {}): SavedModel {
    const opset = options.opset ?? 21;
    const nodes = [...this.nodes];
    const initializers: onnx.ITensorProto[] = [];
    const chunks: Uint8Array[] = [];
    let offset = 0;
    const ext = options.externalData;
    for (const init of this.inits) {
      const big = init.type === 'float32' && init.values.length >= (ext?.minElements ?? 1024);
      const half = options.halfWeights && init.type === 'float32' && big;
      const storedName = half ? `${init.name}_fp16` : init.name;
      const raw = half ? new Uint8Array(toHalf(init.values as ArrayLike<number>).buffer) : rawBytes(init.type, init.values);
      const tensor: onnx.ITensorProto = { name: storedName, dims: init.dims, dataType: ELEM[half ? 'float16' : init.type] };
      if (ext && big) {
        // ONNX external data is read by offset; keep each tensor 4096-aligned as onnx's own writer does.
        const pad = (4096 - (offset % 4096)) % 4096;
        if (pad) chunks.push(new Uint8Array(pad));
        offset += pad;
        tensor.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
        tensor.externalData = [
          { key: 'location', value: ext.location },
          { key: 'offset', value: String(offset) },
          { key: 'length', value: String(raw.byteLength) },
        ];
        chunks.push(raw);
        offset += raw.byteLength;
      } else {
        tensor.rawData = raw;
      }
      initializers.push(tensor);
      if (half) nodes.unshift({ name: `${init.name}_cast`, opType: 'Cast', input: [storedName], output: [init.name], attribute: [attribute('to', ELEM.float32)] });
    }
    const graph = onnx.GraphProto.create({ name: this.name, node: nodes, initializer: initializers, input: this.inputs, output: this.outputs });
    const model = onnx.ModelProto.create({ irVersion: 8, producerName: 'reshoot', producerVersion: '1', opsetImport: [{ domain: '', version: opset }], graph });
    const err = onnx.ModelProto.verify(model);
    if (err) throw new Error(`invalid ONNX model ${this.name}: ${err}`);
    const bytes = onnx.ModelProto.encode(model).finish();
    if (!ext) return { model: bytes };
    const data = new Uint8Array(offset);
    let p = 0;
    for (const c of chunks) {
      data.set(c, p);
      p += c.byteLength;
    }
    return { model: bytes, data };
  }
}

function valueInfo(name: string, type: ElemType, dims: Dim[]): onnx.IValueInfoProto {
  return onnx.ValueInfoProto.create({
    name,
    type: { tensorType: { elemType: ELEM[type], shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  });
}

function rawBytes(type: ElemType, values: ArrayLike<number> | bigint[]): Uint8Array {
  switch (type) {
    case 'float32':
      return new Uint8Array(Float32Array.from(values as ArrayLike<number>).buffer);
    case 'float16':
      return new Uint8Array(toHalf(values as ArrayLike<number>).buffer);
    case 'int64':
      return new Uint8Array(BigInt64Array.from(Array.from(values as ArrayLike<number>, (v) => BigInt(v))).buffer);
    case 'int32':
      return new Uint8Array(Int32Array.from(values as ArrayLike<number>).buffer);
    case 'bool':
      return Uint8Array.from(values as ArrayLike<number>, (v) => (v ? 1 : 0));
  }
}

// Module-local copies: Jest's sandbox makes every global lookup slow, and weight generation calls these millions
// of times (18x slower generation under Jest without this).
const { imul, sqrt, log, cos, max, PI } = Math;

/** Deterministic weights from a seed (mulberry32 + Box-Muller), so generated models are reproducible. */
export class WeightRng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  uniform(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = imul(t ^ (t >>> 15), t | 1);
    t ^= t + imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  normal(n: number, std = 1): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const u = max(this.uniform(), 1e-12);
      out[i] = std * sqrt(-2 * log(u)) * cos(2 * PI * this.uniform());
    }
    return out;
  }
}
