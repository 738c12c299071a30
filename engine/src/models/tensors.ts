// Typed-tensor plumbing between Float32Array working buffers and whatever dtypes an exported graph declares.
import * as ort from './ort';
import { fromHalf, toHalf } from '../diffusion/half';

export type TensorMeta = { name: string; type: string; shape: ReadonlyArray<number | string> };

export function tensorMeta(list: readonly ort.InferenceSession.ValueMetadata[], name: string): TensorMeta | undefined {
  const m = list.find((x) => x.name === name);
  if (!m) return undefined;
  return m.isTensor ? { name: m.name, type: m.type, shape: m.shape } : { name: m.name, type: 'non-tensor', shape: [] };
}

/** A float feed in the dtype the graph wants (float16 graphs take raw half bits in a Uint16Array). */
export function floatFeed(type: string, data: Float32Array, dims: readonly number[]): ort.Tensor {
  if (type === 'float16') return new ort.Tensor('float16', toHalf(data), dims);
  if (type === 'float32') return new ort.Tensor('float32', data, dims);
  throw new Error(`expected a float32 or float16 input, the model declares ${type}`);
}

/** A float32 copy-free view (or converted copy) of an output tensor. */
export function floatOutput(t: ort.Tensor): Float32Array {
  if (t.type === 'float32') return t.data as Float32Array;
  if (t.type === 'float16') return fromHalf(t.data as Uint16Array);
  throw new Error(`expected a float output, got ${t.type}`);
}

/** A numeric feed (timestep etc.) of any scalar dtype the graph declares. */
export function numberFeed(type: string, values: number[], dims: readonly number[]): ort.Tensor {
  switch (type) {
    case 'float32':
      return new ort.Tensor('float32', Float32Array.from(values), dims);
    case 'float16':
      return new ort.Tensor('float16', toHalf(values), dims);
    case 'float64':
      return new ort.Tensor('float64', Float64Array.from(values), dims);
    case 'int64':
      return new ort.Tensor('int64', BigInt64Array.from(values, (v) => BigInt(Math.round(v))), dims);
    case 'int32':
      return new ort.Tensor('int32', Int32Array.from(values, (v) => Math.round(v)), dims);
    default:
      throw new Error(`unsupported numeric input type ${type}`);
  }
}
