// Random-weight Stable Diffusion pipelines in the folder layout and tensor I/O of each exporter we must load
// (reference/onnx-stable-diffusion.md §2, §3): tiny-sd for tests, sd-bench for timing engine overhead against real
// compute. The graphs are SD-shaped (sd-graphs.ts) so loading, dtype adaptation, node-name taps and scheduling are
// exercised exactly as with a real export; only the pictures are meaningless.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { toHalf } from '../../diffusion/half';
import { buildClipVocab } from './clip-vocab';
import { writePipelineFolder, type GeneratedPipeline } from './folder';
import { GraphBuilder, WeightRng, elemTypeCode, type Dim, type ElemType, type SaveOptions, type SavedModel } from './onnx-builder';
import { SdBlocks } from './sd-graphs';

export interface SdVariant {
  name: string;
  /** text_encoder input_ids dtype. */
  idsType: 'int32' | 'int64';
  /** UNet timestep dtype and rank: [] | [1] | ['batch']. */
  timestep: { type: 'float32' | 'int64' | 'float16'; shape: 'scalar' | 'one' | 'batch' };
  unetOutput: 'out_sample' | 'latent';
  /** [B, 2C, h, w] mean‖logvar, or [B, C, h, w] (the mean here; real old exports sample it). */
  vaeEncoderOutput: 'latent_parameters' | 'latent_sample';
  vaeDecoderOutput: 'sample' | 'images';
  vaeDecoderInput: 'latent_sample' | 'latent';
  /** All graph I/O float16, weights stored float16. */
  fp16: boolean;
  /** External data file of the UNet, or null for weights inside model.onnx. */
  externalData: null | 'model.onnx_data' | 'weights.pb';
  latentChannels: number;
  /** VAE spatial factor. */
  vaeScale: 8 | 4 | 2 | 1;
  scalingFactor: number;
  predictionType: 'epsilon' | 'v_prediction';
  timestepSpacing: 'leading' | 'trailing';
  schedulerClass: string;
  pad: 'eos' | '!';
  tokenizerFormat: 'vocab+merges' | 'tokenizer.json';
  /** 0, or the width of LCM's timestep_cond input [B, timestepCond]. */
  timestepCond: number;
  /** Text encoder width = UNet cross_attention_dim. */
  hiddenSize: number;
  /** UNet block widths; latents must be multiples of 2^(length-1). */
  channels: number[];
  /** UNet config sample_size: the latent size the model "was trained at". */
  sampleSize: number;
  /** Attention heads in the UNet and text encoder (default 2). */
  heads?: number;
  /** GroupNorm groups (default 8); must divide every UNet and VAE width. */
  normGroups?: number;
  /** VAE block widths, length log2(vaeScale)+1 (default 16, 32, 32, ...). */
  vaeChannels?: number[];
  /** UNet resnets (+ transformers) per down block; up blocks get one more (diffusers layers_per_block, default 1). */
  layersPerBlock?: number;
}

/** What SD 1.5's own scheduler_config.json says (PNDM, scaled-linear betas), plus the keys newer diffusers write. */
const SD15_SCHEDULER = {
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  num_train_timesteps: 1000,
  clip_sample: false,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  trained_betas: null,
};

const OPTIMUM: SdVariant = {
  name: 'optimum',
  idsType: 'int64',
  timestep: { type: 'float32', shape: 'scalar' },
  unetOutput: 'out_sample',
  vaeEncoderOutput: 'latent_parameters',
  vaeDecoderOutput: 'sample',
  vaeDecoderInput: 'latent_sample',
  fp16: false,
  externalData: 'model.onnx_data',
  latentChannels: 4,
  vaeScale: 8,
  scalingFactor: 0.18215,
  predictionType: 'epsilon',
  timestepSpacing: 'leading',
  schedulerClass: 'PNDMScheduler',
  pad: 'eos',
  tokenizerFormat: 'vocab+merges',
  timestepCond: 0,
  hiddenSize: 32,
  channels: [32, 64],
  sampleSize: 16,
};

const preset = (name: string, changes: Partial<SdVariant>): SdVariant => ({ ...OPTIMUM, ...changes, name });

export const SD_VARIANTS: Record<string, SdVariant> = {
  // optimum ≥ 1.24: f32 scalar timestep, deterministic latent_parameters.
  optimum: OPTIMUM,
  // optimum < 1.24: int64 timestep of shape [1], sampled latent_sample.
  'optimum-legacy': preset('optimum-legacy', { timestep: { type: 'int64', shape: 'one' }, vaeEncoderOutput: 'latent_sample' }),
  // diffusers' convert_stable_diffusion_checkpoint_to_onnx.py.
  'diffusers-script': preset('diffusers-script', {
    idsType: 'int32',
    timestep: { type: 'float32', shape: 'batch' },
    vaeEncoderOutput: 'latent_sample',
    externalData: 'weights.pb',
  }),
  // Olive's optimized fp16 export (keep_io_types false).
  'olive-fp16': preset('olive-fp16', {
    idsType: 'int32',
    timestep: { type: 'float16', shape: 'batch' },
    vaeEncoderOutput: 'latent_sample',
    fp16: true,
    externalData: 'weights.pb',
  }),
  // onnxruntime's own SD demo naming.
  'ort-demo': preset('ort-demo', {
    idsType: 'int32',
    timestep: { type: 'float32', shape: 'one' },
    unetOutput: 'latent',
    vaeEncoderOutput: 'latent_sample',
    vaeDecoderInput: 'latent',
    vaeDecoderOutput: 'images',
    externalData: null,
  }),
  // SD 2.x 768-v: v-prediction, OpenCLIP text encoder ("!" padding, wider).
  'sd2-v': preset('sd2-v', {
    predictionType: 'v_prediction',
    schedulerClass: 'DDIMScheduler',
    pad: '!',
    hiddenSize: 48,
    tokenizerFormat: 'tokenizer.json',
  }),
  'sd-turbo': preset('sd-turbo', {
    timestep: { type: 'int64', shape: 'one' },
    schedulerClass: 'EulerDiscreteScheduler',
    timestepSpacing: 'trailing',
    pad: '!',
    hiddenSize: 48,
  }),
  // Latent consistency model: guidance is an input (w embedding) rather than a second batch row.
  lcm: preset('lcm', { schedulerClass: 'LCMScheduler', timestepCond: 256 }),
  // A VAE other than SD's (16 latent channels at 1/4 resolution, unscaled), as SD3/Flux-era VAEs and TAESD-likes are.
  'vae-f4-c16': preset('vae-f4-c16', { latentChannels: 16, vaeScale: 4, scalingFactor: 1.0 }),
};

/**
 * sd-bench: the optimum layout wide enough that one UNet call at batch 1 on a 64×64 latent costs ≥ 100 ms on one
 * CPU core: measured ~290 ms with intraOpNumThreads 1 (~155 ms on 2 threads) on a 2-core AVX2 Xeon, so a CPU twice
 * as fast still stays above the bar. The cost is dominated by the full-resolution self-attentions (4096 tokens) and
 * 3x3 convs at 64×64, which is also where real SD spends its time. ~18 MB on disk, generated in ~0.25 s.
 */
export const SD_BENCH_VARIANT: SdVariant = preset('sd-bench', {
  channels: [64, 128],
  hiddenSize: 128,
  sampleSize: 64,
  heads: 2,
  normGroups: 32,
  vaeChannels: [32, 32, 64, 64],
});

/**
 * sd15-shape: Stable Diffusion 1.5's sizes with random weights, for memory and time benchmarks at real scale. The UNet
 * is SD 1.5's (block widths 320/640/1280/1280, 2 resnets + transformers per down block and 3 per up block, none in
 * the last down / first up block, 8 heads, cross-attention width 768, sample_size 64, fp32 with optimum's
 * model.onnx_data): ~859.5M parameters, ~3.4 GB. Two parts are smaller than SD 1.5's, which barely matters for a
 * denoising step: the text encoder has one CLIP layer at width 768 (CLIP-L has 12) and the generated tokenizer's
 * small vocabulary, and the VAE has SD's widths (128/256/512/512, ×8) but one resnet per level (SD's has 2 in the
 * encoder and 3 in the decoder). Generated with generateSdModel, which streams the UNet's weights to disk; not in
 * the default set of scripts/generate-models.ts (`generate-models sd15-shape`).
 */
export const SD15_SHAPE_VARIANT: SdVariant = preset('sd15-shape', {
  channels: [320, 640, 1280, 1280],
  layersPerBlock: 2,
  hiddenSize: 768,
  sampleSize: 64,
  heads: 8,
  normGroups: 32,
  vaeScale: 8,
  vaeChannels: [128, 256, 512, 512],
  fp16: false,
  externalData: 'model.onnx_data',
});

/** The presets outside SD_VARIANTS (bigger models for benchmarks), by name. */
const BENCH_VARIANTS: Record<string, SdVariant> = { 'sd-bench': SD_BENCH_VARIANT, 'sd15-shape': SD15_SHAPE_VARIANT };

export function resolveVariant(variant: SdVariant | string): SdVariant {
  if (typeof variant !== 'string') return variant;
  const v = BENCH_VARIANTS[variant] ?? SD_VARIANTS[variant];
  if (!v) throw new Error(`unknown tiny-sd variant "${variant}"; choose from ${Object.keys(SD_VARIANTS).join(', ')}`);
  return v;
}

function layersPerBlockOf(v: SdVariant): number {
  const layers = v.layersPerBlock ?? 1;
  if (!Number.isInteger(layers) || layers < 1) throw new Error(`${v.name}: layersPerBlock must be a positive integer`);
  return layers;
}

function vaeChannelsOf(v: SdVariant): number[] {
  if (v.vaeChannels) {
    if (v.vaeChannels.length !== Math.log2(v.vaeScale) + 1) throw new Error(`${v.name}: vaeChannels must have log2(vaeScale)+1 entries`);
    return v.vaeChannels;
  }
  return Array.from({ length: Math.log2(v.vaeScale) + 1 }, (_, i) => Math.min(16 << i, 32));
}

const NO_VALUES = new Float32Array(0);

/**
 * A GraphBuilder that appends each float32 initializer of at least `minElements` to the external data file as it is
 * made, keeping only its offset, so building a model needs memory for one weight at a time rather than all of them
 * (and GraphBuilder.save's two copies). The file and the model it saves are byte-for-byte what GraphBuilder.save
 * with the same options writes: same order, same 4096-byte alignment, same float16 casts.
 *
 * It works through GraphBuilder's public surface: a streamed weight is registered as an empty placeholder (which
 * keeps its name, scope and place among the initializers), and save() turns the placeholders into external
 * references in the encoded model.
 */
class StreamingGraphBuilder extends GraphBuilder {
  private readonly streamed = new Map<string, { dims: number[]; offset: number; length: number }>();
  private readonly location: string;
  private readonly minElements: number;
  private fd: number | undefined;
  private offset = 0;

  constructor(
    name: string,
    dir: string,
    ext: { location: string; minElements?: number },
    private readonly half: boolean,
  ) {
    super(name);
    this.location = ext.location;
    this.minElements = ext.minElements ?? 1024;
    fs.mkdirSync(dir, { recursive: true });
    this.fd = fs.openSync(path.join(dir, ext.location), 'w');
  }

  override weight(name: string, values: ArrayLike<number>, dims: number[]): string {
    if (values.length < this.minElements) return super.weight(name, values, dims);
    const full = super.weight(name, NO_VALUES, dims);
    this.append(full, values, dims);
    return full;
  }

  override constant(values: ArrayLike<number>, dims: number[], type: ElemType = 'float32', name = 'const'): string {
    if (type !== 'float32' || values.length < this.minElements) return super.constant(values, dims, type, name);
    const full = super.constant(NO_VALUES, dims, type, name);
    this.append(full, values, dims);
    return full;
  }

  private append(name: string, values: ArrayLike<number>, dims: number[]): void {
    if (this.fd === undefined) throw new Error(`${this.name}: weight ${name} added after save`);
    let bytes: Uint8Array;
    if (this.half) bytes = new Uint8Array(toHalf(values).buffer);
    else {
      const floats = values instanceof Float32Array ? values : Float32Array.from(values);
      bytes = new Uint8Array(floats.buffer, floats.byteOffset, floats.byteLength);
    }
    const pad = (4096 - (this.offset % 4096)) % 4096;
    if (pad) fs.writeSync(this.fd, new Uint8Array(pad));
    this.offset += pad;
    for (let done = 0; done < bytes.byteLength; ) done += fs.writeSync(this.fd, bytes, done);
    this.streamed.set(name, { dims, offset: this.offset, length: bytes.byteLength });
    this.offset += bytes.byteLength;
  }

  /** The model with external references; the data is already in its file (SavedModel.data stays undefined). */
  override save(options: SaveOptions = {}): SavedModel {
    const ext = options.externalData;
    if (ext?.location !== this.location || (ext.minElements ?? 1024) !== this.minElements || !!options.halfWeights !== this.half)
      throw new Error(`${this.name}: save options differ from the ones the weights were streamed with`);
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
    // Every float32 initializer of minElements or more was streamed, so GraphBuilder.save externalizes nothing.
    const model = onnx.ModelProto.decode(super.save(options).model);
    const graph = model.graph!;
    const casts: onnx.INodeProto[] = [];
    graph.initializer = graph.initializer!.map((t) => {
      const s = this.streamed.get(t.name!);
      if (!s) return t;
      const stored = this.half ? `${t.name}_fp16` : t.name!;
      // GraphBuilder.save puts each weight's Cast in front of the nodes, so the last weight's comes first.
      if (this.half)
        casts.unshift({
          name: `${t.name}_cast`,
          opType: 'Cast',
          input: [stored],
          output: [t.name!],
          attribute: [{ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: elemTypeCode('float32') }],
        });
      return {
        name: stored,
        dims: s.dims,
        dataType: elemTypeCode(this.half ? 'float16' : 'float32'),
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [
          { key: 'location', value: this.location },
          { key: 'offset', value: String(s.offset) },
          { key: 'length', value: String(s.length) },
        ],
      };
    });
    graph.node = [...casts, ...graph.node!];
    return { model: onnx.ModelProto.encode(model).finish() };
  }
}

const TEXT_LENGTH = 77;

function timestepDims(v: SdVariant): Dim[] {
  return { scalar: [], one: [1], batch: ['batch'] }[v.timestep.shape];
}

function buildTextEncoder(v: SdVariant, vocabSize: number, rng: WeightRng): SavedModel {
  const g = new GraphBuilder('text_encoder');
  const b = new SdBlocks(g, rng, v.normGroups ?? 8);
  const d = v.hiddenSize;
  const heads = v.heads ?? 2;
  const ids = g.input('input_ids', v.idsType, ['batch', TEXT_LENGTH]);
  const lhsName = b.outName('last_hidden_state', v.fp16);
  const lhs = g.scope('text_model', () => {
    const emb = g.scope('embeddings', () => {
      const tok = g.scope('token_embedding', () => g.o('Gather', [g.weight('weight', rng.normal(vocabSize * d, 1), [vocabSize, d]), ids]));
      const pos = g.scope('position_embedding', () => {
        const table = g.weight('weight', rng.normal(TEXT_LENGTH * d, 0.5), [TEXT_LENGTH, d]);
        return g.o('Gather', [table, g.constant(Array.from({ length: TEXT_LENGTH }, (_, i) => i), [1, TEXT_LENGTH], 'int64', 'position_ids')]);
      });
      return g.o('Add', [tok, pos]);
    });
    const h = g.scope('encoder', () =>
      g.scope('layers.0', () => {
        // A large finite negative rather than -inf: fp16 weight storage keeps it exact and Softmax never sees inf-inf.
        const causal = Float32Array.from({ length: TEXT_LENGTH * TEXT_LENGTH }, (_, k) => (k % TEXT_LENGTH > Math.floor(k / TEXT_LENGTH) ? -1e4 : 0));
        const mask = g.constant(causal, [1, 1, TEXT_LENGTH, TEXT_LENGTH], 'float32', 'causal_attention_mask');
        const names = { q: 'q_proj', k: 'k_proj', v: 'v_proj', out: 'out_proj' };
        let x = g.o('Add', [emb, b.attention('self_attn', b.layerNorm('layer_norm1', emb, d), d, { heads, qkvBias: true, mask, names })]);
        const mlp = g.scope('mlp', () => b.linear('fc2', b.quickGelu(b.linear('fc1', b.layerNorm('layer_norm2', x, d), d, 4 * d)), 4 * d, d));
        x = g.o('Add', [x, mlp]);
        return x;
      }),
    );
    return b.layerNorm('final_layer_norm', h, d, 1e-5, lhsName);
  });
  b.finish(lhs, 'last_hidden_state', v.fp16);
  // CLIP pools at the EOS token, found as the largest id in each row (EOS is the last vocabulary entry).
  const pooled = g.scope('text_model', () => {
    const idx = g.o('ArgMax', [g.o('Cast', [ids], { to: elemTypeCode('int32') /* CLIP's export casts to int before argmax */ })], { axis: -1, keepdims: 1 });
    const gatherIdx = g.o('Expand', [g.o('Unsqueeze', [idx, g.ints([2])]), g.ints([1, 1, d])]);
    const picked = g.o('GatherElements', [lhs, gatherIdx], { axis: 1 });
    return g.o('Squeeze', [picked, g.ints([1])], {}, b.outName('pooler_output', v.fp16));
  });
  b.finish(pooled, 'pooler_output', v.fp16);
  const ft = v.fp16 ? 'float16' : 'float32';
  g.output('last_hidden_state', ft, ['batch', TEXT_LENGTH, d]);
  g.output('pooler_output', ft, ['batch', d]);
  return g.save({ halfWeights: v.fp16 });
}

/**
 * `dataDir`: the pipeline folder being generated; given one (and an external data file in the variant), the UNet's
 * large weights are written straight into its data file as they are drawn rather than held until save.
 */
function buildUnet(v: SdVariant, rng: WeightRng, dataDir?: string): SavedModel {
  const externalData = v.externalData ? { location: v.externalData, minElements: 1024 } : undefined;
  const g =
    dataDir && externalData
      ? new StreamingGraphBuilder('unet', path.join(dataDir, 'unet'), externalData, v.fp16)
      : new GraphBuilder('unet');
  const b = new SdBlocks(g, rng, v.normGroups ?? 8);
  const ft = v.fp16 ? 'float16' : 'float32';
  const C = v.latentChannels;
  const ch = v.channels;
  const n = ch.length;
  const heads = v.heads ?? 2;
  const layers = layersPerBlockOf(v);
  g.input('sample', ft, ['batch', C, 'height', 'width']);
  g.input('timestep', v.timestep.type, timestepDims(v));
  g.input('encoder_hidden_states', ft, ['batch', 'sequence', v.hiddenSize]);
  if (v.timestepCond) g.input('timestep_cond', ft, ['batch', v.timestepCond]);
  const sample = b.toFloat('sample', v.fp16);
  const context = { x: b.toFloat('encoder_hidden_states', v.fp16), dim: v.hiddenSize };
  const cond = v.timestepCond ? { x: b.toFloat('timestep_cond', v.fp16), dim: v.timestepCond } : undefined;

  const tdim = 4 * ch[0];
  const temb = { x: b.timeEmbedding(b.timeProj('timestep', ch[0]), ch[0], tdim, cond), dim: tdim };

  let h = b.conv('conv_in', sample, C, ch[0]);
  let c = ch[0];
  const skips: { x: string; c: number }[] = [{ x: h, c }];
  // As in SD 1.x, the lowest level (last down block, first up block) has resnets only.
  for (let i = 0; i < n; i++) {
    g.scope(`down_blocks.${i}`, () => {
      for (let j = 0; j < layers; j++) {
        h = b.resnet(`resnets.${j}`, h, c, ch[i], temb);
        c = ch[i];
        if (i < n - 1) h = b.transformer(`attentions.${j}`, h, c, context, heads);
        skips.push({ x: h, c });
      }
      if (i < n - 1) {
        h = b.downsample('downsamplers.0', h, c);
        skips.push({ x: h, c });
      }
    });
  }
  g.scope('mid_block', () => {
    h = b.resnet('resnets.0', h, c, c, temb);
    h = b.transformer('attentions.0', h, c, context, heads);
    h = b.resnet('resnets.1', h, c, c, temb);
  });
  for (let i = 0; i < n; i++) {
    const level = n - 1 - i;
    g.scope(`up_blocks.${i}`, () => {
      for (let j = 0; j < layers + 1; j++) {
        const skip = skips.pop()!;
        h = b.resnet(`resnets.${j}`, g.o('Concat', [h, skip.x], { axis: 1 }), c + skip.c, ch[level], temb);
        c = ch[level];
        if (level < n - 1) h = b.transformer(`attentions.${j}`, h, c, context, heads);
      }
      if (i < n - 1) h = b.upsample('upsamplers.0', h, c);
    });
  }
  h = g.scope('conv_act', () => b.silu(b.groupNorm('conv_norm_out', h, c)));
  const out = b.conv('conv_out', h, c, C, { out: b.outName(v.unetOutput, v.fp16) });
  b.finish(out, v.unetOutput, v.fp16);
  g.output(v.unetOutput, ft, ['batch', C, 'height', 'width']);
  return g.save({ halfWeights: v.fp16, externalData });
}

function buildVaeEncoder(v: SdVariant, rng: WeightRng): SavedModel {
  const g = new GraphBuilder('vae_encoder');
  const b = new SdBlocks(g, rng, v.normGroups ?? 8);
  const ft = v.fp16 ? 'float16' : 'float32';
  const vc = vaeChannelsOf(v);
  const C = v.latentChannels;
  g.input('sample', ft, ['batch', 3, 'height', 'width']);
  const x = b.toFloat('sample', v.fp16);
  const moments = g.scope('encoder', () => {
    let h = b.conv('conv_in', x, 3, vc[0]);
    let c = vc[0];
    for (let i = 0; i < vc.length; i++) {
      g.scope(`down_blocks.${i}`, () => {
        h = b.resnet('resnets.0', h, c, vc[i], undefined, 1e-6);
        c = vc[i];
        if (i < vc.length - 1) h = b.downsample('downsamplers.0', h, c, true);
      });
    }
    g.scope('mid_block', () => {
      h = b.resnet('resnets.0', h, c, c, undefined, 1e-6);
      h = b.spatialAttention('attentions.0', h, c);
      h = b.resnet('resnets.1', h, c, c, undefined, 1e-6);
    });
    h = g.scope('conv_act', () => b.silu(b.groupNorm('conv_norm_out', h, c, 1e-6)));
    return b.conv('conv_out', h, c, 2 * C);
  });
  const params = v.vaeEncoderOutput === 'latent_parameters';
  let out = b.conv('quant_conv', moments, 2 * C, 2 * C, { kernel: 1, out: params ? b.outName('latent_parameters', v.fp16) : undefined });
  if (!params) out = g.o('Slice', [out, g.ints([0]), g.ints([C]), g.ints([1])], {}, b.outName('latent_sample', v.fp16));
  b.finish(out, v.vaeEncoderOutput, v.fp16);
  g.output(v.vaeEncoderOutput, ft, ['batch', params ? 2 * C : C, 'height_latent', 'width_latent']);
  return g.save({ halfWeights: v.fp16 });
}

function buildVaeDecoder(v: SdVariant, rng: WeightRng): SavedModel {
  const g = new GraphBuilder('vae_decoder');
  const b = new SdBlocks(g, rng, v.normGroups ?? 8);
  const ft = v.fp16 ? 'float16' : 'float32';
  const vc = vaeChannelsOf(v);
  const C = v.latentChannels;
  const L = vc.length;
  g.input(v.vaeDecoderInput, ft, ['batch', C, 'height_latent', 'width_latent']);
  const z = b.conv('post_quant_conv', b.toFloat(v.vaeDecoderInput, v.fp16), C, C, { kernel: 1 });
  const out = g.scope('decoder', () => {
    let c = vc[L - 1];
    let h = b.conv('conv_in', z, C, c);
    g.scope('mid_block', () => {
      h = b.resnet('resnets.0', h, c, c, undefined, 1e-6);
      h = b.spatialAttention('attentions.0', h, c);
      h = b.resnet('resnets.1', h, c, c, undefined, 1e-6);
    });
    for (let i = 0; i < L; i++) {
      const level = L - 1 - i;
      g.scope(`up_blocks.${i}`, () => {
        h = b.resnet('resnets.0', h, c, vc[level], undefined, 1e-6);
        c = vc[level];
        if (i < L - 1) h = b.upsample('upsamplers.0', h, c);
      });
    }
    h = g.scope('conv_act', () => b.silu(b.groupNorm('conv_norm_out', h, c, 1e-6)));
    return b.conv('conv_out', h, c, 3, { out: b.outName(v.vaeDecoderOutput, v.fp16) });
  });
  b.finish(out, v.vaeDecoderOutput, v.fp16);
  g.output(v.vaeDecoderOutput, ft, ['batch', 3, 'height', 'width']);
  return g.save({ halfWeights: v.fp16 });
}

function schedulerConfig(v: SdVariant): Record<string, unknown> {
  const base: Record<string, unknown> = {
    _class_name: v.schedulerClass,
    _diffusers_version: '0.30.0',
    ...SD15_SCHEDULER,
    prediction_type: v.predictionType,
    timestep_spacing: v.timestepSpacing,
  };
  switch (v.schedulerClass) {
    case 'EulerDiscreteScheduler':
      return { ...base, interpolation_type: 'linear', use_karras_sigmas: false, sample_max_value: 1.0 };
    case 'LCMScheduler':
      return {
        ...base,
        set_alpha_to_one: true,
        original_inference_steps: 50,
        timestep_scaling: 10.0,
        clip_sample_range: 1.0,
        thresholding: false,
        dynamic_thresholding_ratio: 0.995,
        sample_max_value: 1.0,
        rescale_betas_zero_snr: false,
      };
    case 'DDIMScheduler':
      return { ...base, clip_sample_range: 1.0, thresholding: false, rescale_betas_zero_snr: false };
    default:
      return base;
  }
}

/**
 * The whole pipeline in memory; generateSdModel writes it. Each component has its own RNG stream so one's size never
 * shifts another's weights. `dataDir`: the folder the pipeline will be written to; given it, the UNet's external data
 * file is written there during the build (and left out of the returned pipeline) instead of held in memory.
 */
export function buildSdPipeline(variant: SdVariant | string, seed = 1, dataDir?: string): GeneratedPipeline {
  const v = resolveVariant(variant);
  if (v.channels.length < 1 || v.channels.some((c) => c <= 0)) throw new Error(`${v.name}: channels must be positive widths`);
  const layers = layersPerBlockOf(v);
  const tok = buildClipVocab(undefined, { pad: v.pad, format: v.tokenizerFormat, maxLength: TEXT_LENGTH });
  const vocabSize = Object.keys(tok.vocab).length;
  const rng = (k: number) => new WeightRng((Math.imul(seed, 0x9e3779b1) + k * 0x85ebca6b) >>> 0);
  const vc = vaeChannelsOf(v);
  const heads = v.heads ?? 2;
  const groups = v.normGroups ?? 8;
  const diffusersOnnx = v.name === 'diffusers-script' || v.name === 'olive-fp16';
  const component = (ortClass: string): [string, string] => (diffusersOnnx ? ['diffusers', 'OnnxRuntimeModel'] : ['optimum', ortClass]);
  const vaeConfig = {
    _class_name: 'AutoencoderKL',
    in_channels: 3,
    out_channels: 3,
    latent_channels: v.latentChannels,
    scaling_factor: v.scalingFactor,
    block_out_channels: vc,
    layers_per_block: 1,
    norm_num_groups: groups,
    sample_size: v.sampleSize * v.vaeScale,
    down_block_types: vc.map(() => 'DownEncoderBlock2D'),
    up_block_types: vc.map(() => 'UpDecoderBlock2D'),
  };
  const unetData = v.externalData ?? undefined;
  return {
    modelIndex: {
      _class_name: diffusersOnnx ? 'OnnxStableDiffusionPipeline' : 'ORTStableDiffusionPipeline',
      _diffusers_version: '0.30.0',
      text_encoder: component('ORTTextEncoder'),
      tokenizer: ['transformers', v.tokenizerFormat === 'tokenizer.json' ? 'CLIPTokenizerFast' : 'CLIPTokenizer'],
      unet: component('ORTUnet'),
      vae_encoder: component('ORTVaeEncoder'),
      vae_decoder: component('ORTVaeDecoder'),
      scheduler: ['diffusers', v.schedulerClass],
      safety_checker: [null, null],
      feature_extractor: [null, null],
      requires_safety_checker: false,
    },
    schedulerConfig: schedulerConfig(v),
    tokenizerFiles: tok.files,
    components: {
      text_encoder: {
        saved: buildTextEncoder(v, vocabSize, rng(0)),
        config: {
          architectures: ['CLIPTextModel'],
          model_type: 'clip_text_model',
          hidden_size: v.hiddenSize,
          intermediate_size: 4 * v.hiddenSize,
          num_attention_heads: heads,
          num_hidden_layers: 1,
          max_position_embeddings: TEXT_LENGTH,
          vocab_size: vocabSize,
          hidden_act: 'quick_gelu',
          bos_token_id: tok.bosId,
          eos_token_id: tok.eosId,
          pad_token_id: tok.padId,
          torch_dtype: v.fp16 ? 'float16' : 'float32',
        },
      },
      unet: {
        saved: buildUnet(v, rng(1), dataDir),
        dataFile: unetData,
        config: {
          _class_name: 'UNet2DConditionModel',
          in_channels: v.latentChannels,
          out_channels: v.latentChannels,
          sample_size: v.sampleSize,
          cross_attention_dim: v.hiddenSize,
          time_cond_proj_dim: v.timestepCond || null,
          block_out_channels: v.channels,
          layers_per_block: layers,
          attention_head_dim: heads,
          norm_num_groups: groups,
          flip_sin_to_cos: true,
          freq_shift: 0,
          down_block_types: v.channels.map((_, i) => (i < v.channels.length - 1 ? 'CrossAttnDownBlock2D' : 'DownBlock2D')),
          up_block_types: v.channels.map((_, i) => (i === 0 ? 'UpBlock2D' : 'CrossAttnUpBlock2D')),
        },
      },
      vae_encoder: { saved: buildVaeEncoder(v, rng(2)), config: vaeConfig },
      vae_decoder: { saved: buildVaeDecoder(v, rng(3)), config: vaeConfig },
    },
    extraFiles: {
      'README.md': readme(v, seed),
    },
  };
}

function readme(v: SdVariant, seed: number): string {
  return [
    `# ${BENCH_VARIANTS[v.name] ? v.name : `tiny-sd (${v.name})`}`,
    '',
    `A generated Stable-Diffusion-shaped pipeline with **random weights** (variant \`${v.name}\`, seed ${seed}), written by`,
    'Reshoot (engine/src/models/generate/tiny-sd.ts). It has the folder layout, tensor names and dtypes of that',
    'exporter variant so the engine loads it exactly like a real export, but its images are noise: use it for',
    'tests and benchmarks, never for editing. Regenerate it instead of committing it.',
    '',
    '```json',
    JSON.stringify(v, null, 2),
    '```',
    '',
  ].join('\n');
}

/**
 * Writes the pipeline into `dir`. The UNet's external data file (when the variant has one) is written while the UNet
 * is built, one weight at a time, so JS memory holds only the small weights and the other components: this is what
 * makes sd15-shape's 3.4 GB UNet possible. The files are byte-for-byte those buildSdPipeline + writePipelineFolder give.
 */
export function generateSdModel(dir: string, variant: SdVariant | string, seed = 1): void {
  writePipelineFolder(dir, buildSdPipeline(variant, seed, dir));
}

export function generateTinySd(dir: string, variantName = 'optimum', seed = 1): void {
  if (!SD_VARIANTS[variantName]) throw new Error(`unknown tiny-sd variant "${variantName}"; choose from ${Object.keys(SD_VARIANTS).join(', ')}`);
  generateSdModel(dir, SD_VARIANTS[variantName], seed);
}

export function generateSdBench(dir: string, seed = 1): void {
  generateSdModel(dir, SD_BENCH_VARIANT, seed);
}
