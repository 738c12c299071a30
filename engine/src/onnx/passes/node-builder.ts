// The nodes a pass adds for one site, all named under one prefix (so a rewritten graph says which pass and site each
// node belongs to), with the constants and shape arithmetic the passes share.
import { onnx } from 'onnx-proto';
import { floatToHalfBits } from '../../diffusion/half';
import { makeNode } from '../graph-edit';

const DT = onnx.TensorProto.DataType;
const HALF: number = DT.FLOAT16;

/** One float value as the raw bytes of a float16 or float32 tensor. */
function floatBytes(elemType: number, value: number): Uint8Array {
  const data = elemType === HALF ? Uint16Array.of(floatToHalfBits(value)) : Float32Array.of(value);
  return new Uint8Array(data.buffer);
}

export class NodeBuilder {
  nodes: onnx.NodeProto[] = [];
  constructor(readonly prefix: string) {}

  /** The nodes built since the last take. */
  take(): onnx.NodeProto[] {
    const out = this.nodes;
    this.nodes = [];
    return out;
  }

  op(opType: string, inputs: string[], name: string, attrs: onnx.IAttributeProto[] = []): string {
    const out = `${this.prefix}/${name}`;
    this.nodes.push(makeNode(opType, inputs, out, attrs));
    return out;
  }

  /** A 1-D int64 tensor (an empty one when `values` is). */
  ints(name: string, values: number[]): string {
    return this.constant(name, { dataType: DT.INT64, dims: [values.length], int64Data: values });
  }

  /** An int64 scalar. */
  int(name: string, value: number): string {
    return this.constant(name, { dataType: DT.INT64, dims: [], int64Data: [value] });
  }

  /** A scalar of a float type (float16 or float32). */
  scalar(elemType: number, value: number, name: string): string {
    return this.constant(name, { dataType: elemType, dims: [], rawData: floatBytes(elemType, value) });
  }

  /** A tensor of the shape `shape` holds, filled with `value` of a float type. */
  filled(shape: string, elemType: number, value: number, name: string): string {
    const t = { dataType: elemType, dims: [1], rawData: floatBytes(elemType, value) };
    return this.op('ConstantOfShape', [shape], name, [
      { name: 'value', type: onnx.AttributeProto.AttributeType.TENSOR, t },
    ]);
  }

  /** shape[start:end] as a 1-D int64 tensor. */
  slice(shape: string, start: number, end: number, name: string): string {
    const starts = this.ints(`${name}/start`, [start]);
    const ends = this.ints(`${name}/end`, [end]);
    return this.op('Slice', [shape, starts, ends, this.ints(`${name}/axes`, [0])], name);
  }

  private constant(name: string, t: onnx.ITensorProto): string {
    const out = `${this.prefix}/${name}`;
    const attribute = [{ name: 'value', type: onnx.AttributeProto.AttributeType.TENSOR, t }];
    this.nodes.push(onnx.NodeProto.create({ name: out, opType: 'Constant', output: [out], attribute }));
    return out;
  }
}
