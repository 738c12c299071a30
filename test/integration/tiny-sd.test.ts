// Every generated exporter variant must load in real onnxruntime-node with the I/O that exporter has, and compute
// something finite that depends on its inputs: these models stand in for real Stable Diffusion exports everywhere else.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from '../../engine/src/models/ort';
import { onnx } from 'onnx-proto';
import { fromHalf, toHalf } from '../../engine/src/diffusion/half';
import {
  SD_BENCH_VARIANT,
  SD_VARIANTS,
  generateSdBench,
  generateTinySd,
  type SdVariant,
} from '../../engine/src/models/generate/tiny-sd';

const COMPONENTS = ['text_encoder', 'unet', 'vae_encoder', 'vae_decoder'] as const;
type Component = (typeof COMPONENTS)[number];
type Sessions = Record<Component, ort.InferenceSession>;

const tmpDirs: string[] = [];
function tempDir(prefix: string): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tmpDirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

// Generation is the slow part under Jest, so each (variant, seed) is generated once and shared between tests.
const generatedDirs = new Map<string, string>();
function generated(variant: string, seed = 1): string {
  const key = `${variant}@${seed}`;
  let d = generatedDirs.get(key);
  if (!d) {
    d = tempDir(`tiny-sd-${variant}-${seed}-`);
    generateTinySd(d, variant, seed);
    generatedDirs.set(key, d);
  }
  return d;
}

async function openAll(dir: string): Promise<Sessions> {
  const entries = await Promise.all(
    COMPONENTS.map(async (c) => [c, await ort.InferenceSession.create(path.join(dir, c, 'model.onnx'))] as const),
  );
  return Object.fromEntries(entries) as Sessions;
}

async function releaseAll(s: Sessions | undefined): Promise<void> {
  if (s) await Promise.all(Object.values(s).map((x) => x.release()));
}

function readJson(file: string): unknown {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

// The fields of the generated configs that the tests read: types only, the assertions check the values.
interface TextConfig {
  bos_token_id: number;
  eos_token_id: number;
  pad_token_id: number;
  vocab_size: number;
}
interface SchedulerConfig {
  _class_name: string;
  prediction_type: string;
  timestep_spacing: string;
  original_inference_steps?: number;
}
interface VaeConfig {
  block_out_channels: number[];
}

function meta(
  list: readonly ort.InferenceSession.ValueMetadata[],
  name: string,
): { type: string; shape: readonly (number | string)[] } {
  const m = list.find((x) => x.name === name);
  if (!m) throw new Error(`no ${name} in ${list.map((x) => x.name).join(', ')}`);
  if (!m.isTensor) throw new Error(`${name} is not a tensor`);
  return { type: m.type, shape: m.shape };
}

function floatTensor(v: SdVariant, data: ArrayLike<number>, dims: number[]): ort.Tensor {
  return v.fp16
    ? new ort.Tensor('float16', toHalf(data), dims)
    : new ort.Tensor('float32', Float32Array.from(data), dims);
}

function floats(t: ort.Tensor): Float32Array {
  return t.type === 'float16' ? fromHalf(t.data as Uint16Array) : (t.data as Float32Array);
}

function idsTensor(v: SdVariant, rows: number[][]): ort.Tensor {
  const flat = rows.flat();
  const dims = [rows.length, 77];
  return v.idsType === 'int64'
    ? new ort.Tensor(
        'int64',
        BigInt64Array.from(flat, (x) => BigInt(x)),
        dims,
      )
    : new ort.Tensor('int32', Int32Array.from(flat), dims);
}

function timestepTensor(v: SdVariant, t: number, batch: number): ort.Tensor {
  const dims = { scalar: [], one: [1], batch: [batch] }[v.timestep.shape];
  const n = dims.length ? dims[0] : 1;
  const values = new Array<number>(n).fill(t);
  switch (v.timestep.type) {
    case 'int64':
      return new ort.Tensor(
        'int64',
        BigInt64Array.from(values, (x) => BigInt(x)),
        dims,
      );
    case 'float16':
      return new ort.Tensor('float16', toHalf(values), dims);
    case 'float32':
      return new ort.Tensor('float32', Float32Array.from(values), dims);
  }
}

/** Deterministic, varied test data. */
function wave(n: number, phase: number): number[] {
  return Array.from({ length: n }, (_, i) => Math.sin(i * 0.731 + phase) * 0.9 + Math.cos(i * 0.117) * 0.3);
}

function expectFiniteAndVaried(a: Float32Array): void {
  let min = Infinity;
  let max = -Infinity;
  for (const x of a) {
    expect(Number.isFinite(x)).toBe(true);
    if (x < min) min = x;
    if (x > max) max = x;
  }
  expect(max - min).toBeGreaterThan(1e-3);
  // O(1): random weights scaled by fan-in must not blow up or vanish.
  expect(Math.max(Math.abs(min), Math.abs(max))).toBeLessThan(100);
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function nodeNames(file: string): Set<string> {
  const m = onnx.ModelProto.decode(fs.readFileSync(file));
  return new Set((m.graph?.node ?? []).map((n) => n.name ?? ''));
}

describe.each(Object.keys(SD_VARIANTS))('tiny-sd %s', (name) => {
  const v = SD_VARIANTS[name];
  const ft = v.fp16 ? 'float16' : 'float32';
  const C = v.latentChannels;
  let dir: string;
  let s: Sessions | undefined;
  let textConfig: TextConfig;

  beforeAll(async () => {
    dir = generated(name);
    textConfig = readJson(path.join(dir, 'text_encoder', 'config.json')) as TextConfig;
    s = await openAll(dir);
  });
  afterAll(() => releaseAll(s));

  const ids = (words: number[]): number[] => {
    const row = [textConfig.bos_token_id, ...words, textConfig.eos_token_id];
    while (row.length < 77) row.push(textConfig.pad_token_id);
    return row;
  };

  it('writes the pipeline folder with the variant configs', () => {
    const index = readJson(path.join(dir, 'model_index.json')) as Record<string, unknown>;
    const onnxClass = name === 'diffusers-script' || name === 'olive-fp16';
    expect(index._class_name).toBe(onnxClass ? 'OnnxStableDiffusionPipeline' : 'ORTStableDiffusionPipeline');
    for (const c of [...COMPONENTS, 'tokenizer', 'scheduler']) expect(index[c]).toBeDefined();

    const sched = readJson(path.join(dir, 'scheduler', 'scheduler_config.json')) as SchedulerConfig;
    expect(sched._class_name).toBe(v.schedulerClass);
    expect(sched.prediction_type).toBe(v.predictionType);
    expect(sched.timestep_spacing).toBe(v.timestepSpacing);
    expect(sched).toMatchObject({
      num_train_timesteps: 1000,
      beta_schedule: 'scaled_linear',
      beta_start: 0.00085,
      beta_end: 0.012,
    });
    if (name === 'sd2-v')
      expect(sched).toMatchObject({ prediction_type: 'v_prediction', set_alpha_to_one: false, steps_offset: 1 });
    if (name === 'lcm') expect(sched.original_inference_steps).toBe(50);

    const tok = fs.readdirSync(path.join(dir, 'tokenizer'));
    if (v.tokenizerFormat === 'tokenizer.json') expect(tok).toContain('tokenizer.json');
    else expect(tok).toEqual(expect.arrayContaining(['vocab.json', 'merges.txt']));
    if (v.tokenizerFormat === 'vocab+merges') {
      const vocab = readJson(path.join(dir, 'tokenizer', 'vocab.json')) as Record<string, number>;
      expect(textConfig.vocab_size).toBe(Object.keys(vocab).length);
    }
    expect(textConfig).toMatchObject({ hidden_size: v.hiddenSize, max_position_embeddings: 77 });
    // CLIP pools at the largest id, so EOS must be the last vocabulary entry.
    expect(textConfig.eos_token_id).toBe(textConfig.vocab_size - 1);
    expect(textConfig.pad_token_id).toBe(v.pad === 'eos' ? textConfig.eos_token_id : 0);

    const unet = readJson(path.join(dir, 'unet', 'config.json'));
    expect(unet).toMatchObject({
      in_channels: C,
      out_channels: C,
      sample_size: v.sampleSize,
      cross_attention_dim: v.hiddenSize,
      time_cond_proj_dim: v.timestepCond ? v.timestepCond : null,
      block_out_channels: v.channels,
    });
    for (const c of ['vae_encoder', 'vae_decoder']) {
      const vae = readJson(path.join(dir, c, 'config.json')) as VaeConfig;
      expect(vae).toMatchObject({ latent_channels: C, scaling_factor: v.scalingFactor });
      expect(2 ** (vae.block_out_channels.length - 1)).toBe(v.vaeScale);
    }

    const unetFiles = fs.readdirSync(path.join(dir, 'unet')).sort();
    if (v.externalData) {
      expect(unetFiles).toEqual(['config.json', 'model.onnx', v.externalData].sort());
      // The weights live in the data file, not in model.onnx.
      expect(fs.statSync(path.join(dir, 'unet', v.externalData)).size).toBeGreaterThan(
        4 * fs.statSync(path.join(dir, 'unet', 'model.onnx')).size,
      );
    } else {
      expect(unetFiles).toEqual(['config.json', 'model.onnx']);
    }
    expect(fs.readFileSync(path.join(dir, 'README.md'), 'utf8')).toContain(`random weights** (variant \`${name}\``);
  });

  it("declares the exporter's tensor names, dtypes and ranks", () => {
    const te = s!.text_encoder;
    expect(te.inputNames).toEqual(['input_ids']);
    expect(meta(te.inputMetadata, 'input_ids')).toEqual({ type: v.idsType, shape: ['batch', 77] });
    expect(te.outputNames).toEqual(['last_hidden_state', 'pooler_output']);
    expect(meta(te.outputMetadata, 'last_hidden_state')).toEqual({ type: ft, shape: ['batch', 77, v.hiddenSize] });
    expect(meta(te.outputMetadata, 'pooler_output')).toEqual({ type: ft, shape: ['batch', v.hiddenSize] });

    const unet = s!.unet;
    expect(unet.inputNames).toEqual([
      'sample',
      'timestep',
      'encoder_hidden_states',
      ...(v.timestepCond ? ['timestep_cond'] : []),
    ]);
    expect(meta(unet.inputMetadata, 'sample')).toEqual({ type: ft, shape: ['batch', C, 'height', 'width'] });
    expect(meta(unet.inputMetadata, 'timestep')).toEqual({
      type: v.timestep.type,
      shape: { scalar: [], one: [1], batch: ['batch'] }[v.timestep.shape],
    });
    expect(meta(unet.inputMetadata, 'encoder_hidden_states')).toEqual({
      type: ft,
      shape: ['batch', 'sequence', v.hiddenSize],
    });
    if (v.timestepCond) expect(meta(unet.inputMetadata, 'timestep_cond')).toEqual({ type: ft, shape: ['batch', 256] });
    expect(unet.outputNames).toEqual([v.unetOutput]);
    expect(meta(unet.outputMetadata, v.unetOutput)).toEqual({ type: ft, shape: ['batch', C, 'height', 'width'] });

    const enc = s!.vae_encoder;
    expect(enc.inputNames).toEqual(['sample']);
    expect(meta(enc.inputMetadata, 'sample')).toEqual({ type: ft, shape: ['batch', 3, 'height', 'width'] });
    expect(enc.outputNames).toEqual([v.vaeEncoderOutput]);
    const encOut = meta(enc.outputMetadata, v.vaeEncoderOutput);
    expect(encOut.type).toBe(ft);
    expect(encOut.shape).toHaveLength(4);
    expect(encOut.shape[1]).toBe(v.vaeEncoderOutput === 'latent_parameters' ? 2 * C : C);

    const dec = s!.vae_decoder;
    expect(dec.inputNames).toEqual([v.vaeDecoderInput]);
    expect(meta(dec.inputMetadata, v.vaeDecoderInput)).toMatchObject({ type: ft });
    expect(meta(dec.inputMetadata, v.vaeDecoderInput).shape).toHaveLength(4);
    expect(dec.outputNames).toEqual([v.vaeDecoderOutput]);
    expect(meta(dec.outputMetadata, v.vaeDecoderOutput)).toEqual({ type: ft, shape: ['batch', 3, 'height', 'width'] });
  });

  it('text encoder depends on the ids and pools at the EOS token', async () => {
    const rows = [ids([3, 5, 7]), ids([4, 9])];
    const out = await s!.text_encoder.run({ input_ids: idsTensor(v, rows) });
    const h = out.last_hidden_state;
    const p = out.pooler_output;
    expect(h.dims).toEqual([2, 77, v.hiddenSize]);
    expect(p.dims).toEqual([2, v.hiddenSize]);
    expect(h.type).toBe(ft);
    const hf = floats(h);
    const pf = floats(p);
    expectFiniteAndVaried(hf);
    expectFiniteAndVaried(pf);
    const D = v.hiddenSize;
    // Position 1 holds a different word in each row.
    expect(maxAbsDiff(hf.subarray(D, 2 * D), hf.subarray(77 * D + D, 77 * D + 2 * D))).toBeGreaterThan(1e-3);
    const eosPos = [4, 3];
    for (let r = 0; r < 2; r++) {
      const at = hf.subarray((r * 77 + eosPos[r]) * D, (r * 77 + eosPos[r] + 1) * D);
      expect(maxAbsDiff(pf.subarray(r * D, (r + 1) * D), at)).toBeLessThan(1e-6);
    }
  });

  it('unet output has the latent shape and depends on timestep and encoder_hidden_states', async () => {
    const [B, H, W] = [2, 8, 16];
    const text = new ort.Tensor('float32', Float32Array.from(wave(B * 77 * v.hiddenSize, 0.5)), [B, 77, v.hiddenSize]);
    const other = new ort.Tensor('float32', Float32Array.from(wave(B * 77 * v.hiddenSize, 2.1)), [B, 77, v.hiddenSize]);
    const ehs = (t: ort.Tensor) => floatTensor(v, t.data as Float32Array, [...t.dims]);
    const run = async (t: number, e: ort.Tensor, cond = 0.2) => {
      const feeds: Record<string, ort.Tensor> = {
        sample: floatTensor(v, wave(B * C * H * W, 0), [B, C, H, W]),
        timestep: timestepTensor(v, t, B),
        encoder_hidden_states: ehs(e),
      };
      if (v.timestepCond) feeds.timestep_cond = floatTensor(v, wave(B * v.timestepCond, cond), [B, v.timestepCond]);
      const out = (await s!.unet.run(feeds))[v.unetOutput];
      expect(out.dims).toEqual([B, C, H, W]);
      expect(out.type).toBe(ft);
      return floats(out);
    };
    const base = await run(500, text);
    expectFiniteAndVaried(base);
    expect(maxAbsDiff(base, await run(500, text))).toBe(0);
    expect(maxAbsDiff(base, await run(20, text))).toBeGreaterThan(1e-3);
    expect(maxAbsDiff(base, await run(500, other))).toBeGreaterThan(1e-3);
    if (v.timestepCond) expect(maxAbsDiff(base, await run(500, text, 1.7))).toBeGreaterThan(1e-3);
  });

  it('vae encoder and decoder map between image and latent sizes', async () => {
    const f = v.vaeScale;
    const [h, w] = [4, 6];
    const enc = (
      await s!.vae_encoder.run({ sample: floatTensor(v, wave(3 * h * f * w * f, 1), [1, 3, h * f, w * f]) })
    )[v.vaeEncoderOutput];
    expect(enc.dims).toEqual([1, v.vaeEncoderOutput === 'latent_parameters' ? 2 * C : C, h, w]);
    expectFiniteAndVaried(floats(enc));
    const dec = (
      await s!.vae_decoder.run({ [v.vaeDecoderInput]: floatTensor(v, wave(2 * C * h * w, 3), [2, C, h, w]) })
    )[v.vaeDecoderOutput];
    expect(dec.dims).toEqual([2, 3, h * f, w * f]);
    expectFiniteAndVaried(floats(dec));
  });
});

describe('tiny-sd generation', () => {
  it('is deterministic per seed', () => {
    const a = generated('optimum', 1);
    const b = tempDir('tiny-sd-again-');
    generateTinySd(b, 'optimum', 1);
    const c = generated('optimum', 2);
    for (const comp of COMPONENTS) {
      expect(
        fs.readFileSync(path.join(a, comp, 'model.onnx')).equals(fs.readFileSync(path.join(b, comp, 'model.onnx'))),
      ).toBe(true);
    }
    const data = (d: string) => fs.readFileSync(path.join(d, 'unet', 'model.onnx_data'));
    expect(data(a).equals(data(b))).toBe(true);
    expect(data(a).equals(data(c))).toBe(false);
  });

  it('names nodes like a torch export of the diffusers modules', () => {
    const dir = generated('optimum');
    const unet = nodeNames(path.join(dir, 'unet', 'model.onnx'));
    for (const n of [
      '/conv_in/Conv',
      '/time_embedding/linear_1/MatMul',
      '/down_blocks.0/resnets.0/norm1/GroupNormalization',
      '/down_blocks.0/attentions.0/transformer_blocks.0/attn1/Softmax',
      '/down_blocks.0/attentions.0/transformer_blocks.0/attn2/to_k/MatMul',
      '/down_blocks.0/downsamplers.0/conv/Conv',
      '/mid_block/attentions.0/transformer_blocks.0/attn2/Softmax',
      '/up_blocks.0/upsamplers.0/Resize',
      '/up_blocks.1/attentions.0/transformer_blocks.0/attn2/Softmax',
      '/conv_out/Conv',
    ]) {
      expect(unet).toContain(n);
    }
    expect(nodeNames(path.join(dir, 'text_encoder', 'model.onnx'))).toContain(
      '/text_model/encoder/layers.0/self_attn/Softmax',
    );
  });

  it('stores fp16 weights at half the size', () => {
    const [f32, f16] = [generated('diffusers-script'), generated('olive-fp16')];
    const size = (d: string) => fs.statSync(path.join(d, 'unet', 'weights.pb')).size;
    expect(size(f16) / size(f32)).toBeGreaterThan(0.4);
    expect(size(f16) / size(f32)).toBeLessThan(0.6);
  });

  it('rejects an unknown variant with the list of presets', () => {
    expect(() => generateTinySd(tempDir('tiny-sd-bad-'), 'nope')).toThrow(/optimum-legacy/);
  });
});

describe('sd-bench', () => {
  it('writes a loadable SD-shaped model that runs at a small size', async () => {
    const dir = tempDir('sd-bench-');
    generateSdBench(dir);
    let total = 0;
    for (const c of COMPONENTS)
      for (const f of fs.readdirSync(path.join(dir, c))) total += fs.statSync(path.join(dir, c, f)).size;
    expect(total).toBeLessThan(60e6);
    const v = SD_BENCH_VARIANT;
    const s = await openAll(dir);
    try {
      expect(meta(s.unet.inputMetadata, 'encoder_hidden_states').shape).toEqual(['batch', 'sequence', v.hiddenSize]);
      const out = await s.unet.run({
        sample: new ort.Tensor('float32', Float32Array.from(wave(v.latentChannels * 64, 0)), [
          1,
          v.latentChannels,
          8,
          8,
        ]),
        timestep: timestepTensor(v, 300, 1),
        encoder_hidden_states: new ort.Tensor('float32', Float32Array.from(wave(77 * v.hiddenSize, 1)), [
          1,
          77,
          v.hiddenSize,
        ]),
      });
      expect(out.out_sample.dims).toEqual([1, v.latentChannels, 8, 8]);
      expectFiniteAndVaried(out.out_sample.data as Float32Array);
    } finally {
      await releaseAll(s);
    }
  });
});
