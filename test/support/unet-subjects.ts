// UNet graphs the graph-pass tests rewrite and run on real ONNX Runtime sessions: the real-export fixtures and this
// project's generated tiny-sd, each with feeds for a batch of different latents and texts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { fromHalf, toHalf } from '../../engine/src/diffusion/half';
import * as ort from '../../engine/src/models/ort';
import { generateTinySd } from '../../engine/src/models/generate/tiny-sd';
import { findAttentionSites, type AttentionSite } from '../../engine/src/onnx/attention-sites';
import { maxDiff, wave } from './graph-checks';

export interface UnetSubject {
  model: onnx.ModelProto;
  sites: AttentionSite[];
  self: AttentionSite[];
  cross: AttentionSite[];
  /** `batch` items, each a different latent and text. */
  feeds(batch: number): Record<string, ort.Tensor>;
  fp16?: boolean;
  /** The graph's output. */
  out: string;
  /** Text tokens T. */
  tokens: number;
  /** Where the graph's external weights are: a graph opened from bytes resolves them from the working directory. */
  dataDir?: string;
}

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'real-export');

export const decodeModel = (file: string) => onnx.ModelProto.decode(fs.readFileSync(file));
export const encodeModel = (m: onnx.IModelProto) => onnx.ModelProto.encode(m).finish();

/** A subject from a graph: its attention sites found, split by kind. */
export function unetSubject(
  model: onnx.ModelProto,
  rest: Omit<UnetSubject, 'model' | 'sites' | 'self' | 'cross'>,
): UnetSubject {
  const sites = findAttentionSites(model).sites;
  return {
    model,
    sites,
    self: sites.filter((s) => s.kind === 'self'),
    cross: sites.filter((s) => s.kind === 'cross'),
    ...rest,
  };
}

/** A real-export fixture's UNet (optimum 1.16: int64 timestep [1]; optimum 1.24: float32 scalar). */
export function realExportSubject(name: 'sd15-tiny' | 'sd2v-tiny', [h, w]: [number, number]): UnetSubject {
  const timestep = () =>
    name === 'sd15-tiny'
      ? new ort.Tensor('int64', BigInt64Array.of(500n), [1])
      : new ort.Tensor('float32', Float32Array.of(500), []);
  return unetSubject(decodeModel(path.join(FIXTURES, name, 'unet', 'model.onnx')), {
    out: 'out_sample',
    tokens: 77,
    feeds: (batch) => ({
      sample: wave([batch, 4, h, w]),
      timestep: timestep(),
      encoder_hidden_states: wave([batch, 77, 32], 1),
    }),
  });
}

/** A generated tiny-sd's UNet, generated into `dir`. */
export function generatedSubject(
  dir: string,
  variant: 'optimum' | 'olive-fp16',
  [h, w]: [number, number],
): UnetSubject {
  generateTinySd(dir, variant);
  const hidden = (JSON.parse(fs.readFileSync(path.join(dir, 'unet', 'config.json'), 'utf8')) as Record<string, number>)
    .cross_attention_dim;
  const fp16 = variant === 'olive-fp16';
  const float = (t: ort.Tensor) => (fp16 ? new ort.Tensor('float16', toHalf(t.data as Float32Array), t.dims) : t);
  return unetSubject(decodeModel(path.join(dir, 'unet', 'model.onnx')), {
    out: 'out_sample',
    tokens: 77,
    fp16,
    dataDir: path.join(dir, 'unet'),
    feeds: (batch) => ({
      sample: float(wave([batch, 4, h, w])),
      timestep: fp16
        ? new ort.Tensor('float16', toHalf(new Array<number>(batch).fill(500)), [batch])
        : new ort.Tensor('float32', Float32Array.of(500), []),
      encoder_hidden_states: float(wave([batch, 77, hidden], 1)),
    }),
  });
}

/** Runs a (rewritten) graph of the subject once and releases the session. */
export async function runGraph(
  s: Pick<UnetSubject, 'dataDir'>,
  model: onnx.IModelProto | Uint8Array,
  feeds: Record<string, ort.Tensor>,
  fetch: string[],
): Promise<Record<string, ort.Tensor>> {
  const bytes = model instanceof Uint8Array ? model : encodeModel(model);
  const cwd = process.cwd();
  if (s.dataDir) process.chdir(s.dataDir);
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(bytes);
  } finally {
    process.chdir(cwd);
  }
  try {
    return await session.run(feeds, fetch);
  } finally {
    await session.release();
  }
}

/** Float32 values of a float32 or float16 tensor. */
export const values = (t: ort.Tensor) =>
  t.type === 'float16' ? fromHalf(t.data as Uint16Array) : (t.data as Float32Array);

export const tensorDiff = (a: ort.Tensor | Float32Array, b: ort.Tensor | Float32Array) =>
  maxDiff(a instanceof Float32Array ? a : values(a), b instanceof Float32Array ? b : values(b));

/**
 * One self-attention block computed in float16 throughout, as fp16 exports without upcast_attention have it (the
 * generated olive-fp16 tiny-sd casts to float32 before its blocks): to_q/to_k/to_v, heads split to [B, heads, N, d],
 * K transposed to Kᵀ before the scores, scale, softmax, ·V, heads merged. `module` names the site (diffusers path).
 */
export function fp16Attention(
  heads: number,
  headDim: number,
  module = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1',
): onnx.ModelProto {
  const DT = onnx.TensorProto.DataType;
  const c = heads * headDim;
  // diffusers' node names: module path segments with their indices, "/up_blocks.1/attentions.0/…/attn1".
  const p = '/' + module.replace(/\.(\d+)\./g, '.$1/');
  const nodes: onnx.INodeProto[] = [];
  const op = (type: string, inputs: string[], name: string, attribute: onnx.IAttributeProto[] = []) => {
    nodes.push({ name: `${p}/${name}`, opType: type, input: inputs, output: [`${p}/${name}_output_0`], attribute });
    return `${p}/${name}_output_0`;
  };
  const perm = (ints: number[]) => [{ name: 'perm', type: onnx.AttributeProto.AttributeType.INTS, ints }];
  const half = (name: string, dims: number[], data: number[]) =>
    onnx.TensorProto.create({ name, dataType: DT.FLOAT16, dims, rawData: new Uint8Array(toHalf(data).buffer) });
  const weight = (name: string, seed: number) =>
    half(
      name,
      [c, c],
      Array.from({ length: c * c }, (_, i) => 0.4 * Math.sin(i * 0.71 + seed)),
    );
  const split = onnx.TensorProto.create({
    name: 'split',
    dataType: DT.INT64,
    dims: [4],
    int64Data: [0, -1, heads, headDim],
  });
  const merge = onnx.TensorProto.create({ name: 'merge', dataType: DT.INT64, dims: [3], int64Data: [0, -1, c] });
  const heads4 = (x: string, w: string, name: string) =>
    op(
      'Transpose',
      [op('Reshape', [op('MatMul', ['x', w], `${name}/MatMul`), 'split'], `${name}/Reshape`)],
      `${name}/Transpose`,
      perm([0, 2, 1, 3]),
    );
  const q = heads4('x', 'wq', 'to_q');
  const k = heads4('x', 'wk', 'to_k');
  const v = heads4('x', 'wv', 'to_v');
  const scores = op('MatMul', [q, op('Transpose', [k], 'Transpose_kt', perm([0, 1, 3, 2]))], 'MatMul');
  const probs = op('Softmax', [op('Mul', [scores, 'scale'], 'Mul')], 'Softmax', [
    { name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: -1 },
  ]);
  const attention = op('MatMul', [probs, v], 'MatMul_1');
  const merged = op(
    'Reshape',
    [op('Transpose', [attention], 'Transpose_out', perm([0, 2, 1, 3])), 'merge'],
    'Reshape_out',
  );
  nodes.push({ name: `${p}/to_out/MatMul`, opType: 'MatMul', input: [merged, 'wo'], output: ['y'] });
  const io = (name: string) => onnx.ValueInfoProto.create({ name, type: { tensorType: { elemType: DT.FLOAT16 } } });
  return onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'fp16-attention',
      node: nodes,
      input: [io('x')],
      output: [io('y')],
      initializer: [
        weight('wq', 1),
        weight('wk', 2),
        weight('wv', 3),
        weight('wo', 4),
        half('scale', [], [1 / Math.sqrt(headDim)]),
        split,
        merge,
      ],
    },
  });
}

/** fp16Attention as a subject: `x` [batch, tokens, heads·headDim] of a float16 wave, output `y`. */
export function fp16AttentionSubject(heads: number, headDim: number, tokens: number, module?: string): UnetSubject {
  const x = (batch: number) => wave([batch, tokens, heads * headDim], 0.2);
  return unetSubject(fp16Attention(heads, headDim, module), {
    out: 'y',
    tokens,
    fp16: true,
    feeds: (batch: number) => ({
      x: new ort.Tensor('float16', toHalf(x(batch).data as Float32Array), x(batch).dims),
    }),
  });
}
