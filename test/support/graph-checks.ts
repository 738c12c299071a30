// Shared by the graph-pass tests: running a model (bytes or a file next to its external data) in ORT, exposing
// intermediate tensors, the neutral feeds of a pass's ports, attention computed by hand, and the attention sites
// diffusers builds from a UNet config — the independent truth the discovered sites are compared with.
import * as fs from 'node:fs';
import * as ort from '../../engine/src/models/ort';
import { onnx } from 'onnx-proto';
import { toHalf } from '../../engine/src/diffusion/half';
import type { InputPort } from '../../engine/src/onnx/pass';

export async function run(
  model: Uint8Array | string,
  feeds: Record<string, ort.Tensor>,
  fetch: string[],
): Promise<Record<string, ort.Tensor>> {
  const s = await ort.InferenceSession.create(model as Uint8Array);
  try {
    return await s.run(feeds, fetch);
  } finally {
    await s.release();
  }
}

/** A copy of the model with extra outputs (float32 unless told). */
export function withOutputs(model: onnx.IModelProto, names: string[], elemType = 1): Uint8Array {
  const copy = onnx.ModelProto.decode(onnx.ModelProto.encode(model).finish());
  for (const name of names)
    copy.graph!.output!.push(onnx.ValueInfoProto.create({ name, type: { tensorType: { elemType } } }));
  return onnx.ModelProto.encode(copy).finish();
}

export function neutralFeeds(ports: readonly InputPort[]): Record<string, ort.Tensor> {
  return Object.fromEntries(ports.map((p) => [p.name, filled(p.type, p.neutralShape, p.neutralValue)]));
}

export function filled(type: InputPort['type'], dims: readonly number[], value: number): ort.Tensor {
  const n = dims.reduce((a, b) => a * b, 1);
  if (type === 'float16') return new ort.Tensor('float16', toHalf(new Array(n).fill(value)), dims);
  if (type === 'int64') return new ort.Tensor('int64', new BigInt64Array(n).fill(BigInt(value)), dims);
  return new ort.Tensor('float32', new Float32Array(n).fill(value), dims);
}

/** Deterministic non-trivial float32 data. */
export function wave(dims: number[], phase = 0.3): ort.Tensor {
  const n = dims.reduce((a, b) => a * b, 1);
  return new ort.Tensor(
    'float32',
    Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + phase)),
    dims,
  );
}

export const floats = (t: ort.Tensor) => t.data as Float32Array;

export function maxDiff(a: ort.Tensor | Float32Array, b: ort.Tensor | Float32Array): number {
  const [x, y] = [a instanceof Float32Array ? a : floats(a), b instanceof Float32Array ? b : floats(b)];
  if (x.length !== y.length) return Infinity;
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m;
}

/** softmax(Q·Kᵀ/√d) over the last axis for [..., N, d] tensors (leading axes flattened). */
export function attentionProbs(q: ort.Tensor, k: ort.Tensor, d: number): Float32Array {
  const [nq, nk] = [q.dims[q.dims.length - 2], k.dims[k.dims.length - 2]];
  const [qd, kd] = [floats(q), floats(k)];
  const groups = qd.length / (nq * d);
  const out = new Float32Array(groups * nq * nk);
  const row = new Float64Array(nk);
  for (let b = 0; b < groups; b++) {
    for (let i = 0; i < nq; i++) {
      let max = -Infinity;
      for (let j = 0; j < nk; j++) {
        let s = 0;
        for (let c = 0; c < d; c++) s += qd[(b * nq + i) * d + c] * kd[(b * nk + j) * d + c];
        row[j] = s / Math.sqrt(d);
        max = Math.max(max, row[j]);
      }
      let z = 0;
      for (let j = 0; j < nk; j++) z += row[j] = Math.exp(row[j] - max);
      for (let j = 0; j < nk; j++) out[(b * nq + i) * nk + j] = row[j] / z;
    }
  }
  return out;
}

export interface ExpectedSite {
  module: string;
  kind: 'self' | 'cross';
  resolution: number;
  heads: number;
}

/** The keys of a diffusers UNet2DConditionModel config.json that decide where its attention sites are. */
export interface UnetConfig {
  block_out_channels: number[];
  layers_per_block: number;
  attention_head_dim: number | number[];
  down_block_types: string[];
  up_block_types: string[];
}

export function readUnetConfig(file: string): UnetConfig {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as UnetConfig;
}

/**
 * What diffusers builds from a UNet config: a transformer per layer of each cross-attention down block, one in the
 * mid block, one per layer + 1 in each cross-attention up block, in execution order; `attention_head_dim` is
 * (despite its name) the head count, per down block when a list, mirrored for the up blocks.
 */
export function expectedSites(config: UnetConfig): ExpectedSite[] {
  const n = config.block_out_channels.length;
  const L = config.layers_per_block;
  const perBlock = config.attention_head_dim;
  const heads = (i: number) => (Array.isArray(perBlock) ? perBlock[i] : perBlock);
  const out: ExpectedSite[] = [];
  const add = (block: string, count: number, level: number) => {
    for (let j = 0; j < count; j++) {
      for (const [attn, kind] of [
        ['attn1', 'self'],
        ['attn2', 'cross'],
      ] as const) {
        out.push({
          module: `${block}.attentions.${j}.transformer_blocks.0.${attn}`,
          kind,
          resolution: 2 ** level,
          heads: heads(level),
        });
      }
    }
  };
  config.down_block_types.forEach((t, i) => t.startsWith('CrossAttn') && add(`down_blocks.${i}`, L, i));
  add('mid_block', 1, n - 1);
  config.up_block_types.forEach((t, i) => t.startsWith('CrossAttn') && add(`up_blocks.${i}`, L + 1, n - 1 - i));
  return out;
}

/**
 * Protobuf's base-128 varint, written independently of the reader under test (onnx/graph-file.ts), for building
 * files byte by byte.
 */
export function varint(value: number): Buffer {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}
