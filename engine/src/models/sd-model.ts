// Loads a Stable Diffusion pipeline exported to ONNX in the diffusers/optimum folder layout and adapts to the
// exporter it came from by reading each session's metadata (input dtypes and shapes, output names), never by
// guessing from the folder name. Every failure at load names the file and what was expected.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from './ort';
import { batches, type ImageBatch } from '../diffusion/images';
import { parseSchedulerConfig, type SchedulerConfig } from '../diffusion/scheduler';
import { dataDir } from '../config/paths';
import { rewriteGraph, type PassRequest } from '../onnx/graph-cache';
import { vaeMean } from '../onnx/passes/vae-mean';
import { ClipTokenizer, idsTensorData } from './tokenizer';
import { openSession, type OpenedSession, type ProviderName, type SessionSettings } from './providers';
import { floatFeed, floatOutput, numberFeed, tensorMeta, type TensorMeta } from './tensors';
import { BASE_VARIANT, UnetVariants, type AttentionInfo, type Slicing, type DecoderFeatureInfo, type VariantResult } from './unet-variants';

export class ModelLoadError extends Error {
  override name = 'ModelLoadError';
}

const COMPONENTS = ['text_encoder', 'unet', 'vae_encoder', 'vae_decoder'] as const;
type Component = (typeof COMPONENTS)[number];

/** What the loader found out about the model: exporter variant, shapes, numbers that drive the pipeline. */
export interface ModelInfo {
  dir: string;
  name: string;
  provider: ProviderName;
  providerFallbacks: string[];
  latentChannels: number;
  vaeScale: number;
  scalingFactor: number;
  hiddenSize: number;
  sequenceLength: number;
  /** Image size the model was trained at (unet sample_size × vae scale). */
  nativeSize: number;
  /** LCM-style guidance embedding input width, 0 when absent. */
  timestepCondDim: number;
  /**
   * The UNet tensor exposed as decoder features (the last up block's output), or null with the reason in
   * `decoderFeaturesNote`: correspondences then come from the latents.
   */
  decoderFeatures: string | null;
  decoderFeaturesNote?: string;
  /** The UNet's attention sites as the graph passes see them, or the pattern and why none is usable. */
  attention: AttentionInfo;
  /** Set when the exported VAE encoder drew a random sample and the engine rewrote it to output the mean. */
  vaeEncoderNote?: string;
  fp16: boolean;
  variant: {
    inputIds: string;
    timestep: string;
    unetOutput: string;
    vaeEncoderOutput: string;
    vaeDecoderInput: string;
    vaeDecoderOutput: string;
    externalData: Partial<Record<Component, string>>;
  };
}

export interface PromptEmbeddings {
  /** [prompts, sequenceLength, hiddenSize] */
  data: Float32Array;
  count: number;
  warnings: string[];
}

export interface ModelStats {
  unetRuns: number;
  /** Batch items evaluated by the UNet: the hardware-free cost figure. */
  unetEvals: number;
  unetMs: number;
  vaeMs: number;
  textMs: number;
}

export interface DiffusionModel {
  readonly info: ModelInfo;
  readonly scheduler: SchedulerConfig;
  readonly tokenizer: ClipTokenizer;
  readonly stats: ModelStats;
  encodePrompts(prompts: string[]): Promise<PromptEmbeddings>;
  /**
   * One UNet evaluation over a batch: sample [batch, C, h, w], embeddings [batch, S, D] (row i conditions item i).
   * `call` adds LCM's guidance embedding, extra inputs and outputs of the variant's ports (model.variant).
   */
  predict(sample: Float32Array, batch: number, h: number, w: number, timestep: number, embeddings: Float32Array, call?: UnetCall): Promise<UnetResult>;
  /** A UNet variant with these graph passes (after the base ones), opened once; refused with the reason. */
  variant(passes: PassRequest[]): Promise<VariantResult>;
  /** Scaled latent means [n, C, H/s, W/s]. */
  encodeImages(images: ImageBatch): Promise<Float32Array>;
  decodeLatents(latents: Float32Array, n: number, h: number, w: number): Promise<ImageBatch>;
  release(): Promise<void>;
}

/** A tensor for a port: plain data and dims, so callers never touch ONNX Runtime (converted to the port's dtype). */
export interface PortTensor {
  data: Float32Array;
  dims: readonly number[];
}

export interface UnetCall {
  /** LCM's guidance embedding input (timestep_cond), when the graph has one: the CFG scale − 1. */
  guidanceEmbedding?: number;
  /** The variant (model.variant) whose session runs the call; the base one by default. */
  variant?: string;
  /** Values for the variant's input ports; ports left out get their neutral values. */
  feeds?: Readonly<Record<string, PortTensor>>;
  /** Output ports to return besides the noise prediction. */
  outputs?: readonly string[];
}

export interface UnetResult {
  eps: Float32Array;
  outputs: Record<string, PortTensor>;
}

const ALIASES = {
  unetOutput: ['out_sample', 'latent'],
  vaeEncoderOutput: ['latent_parameters', 'latent_sample', 'latent_dist', 'latent'],
  vaeDecoderInput: ['latent_sample', 'latent'],
  vaeDecoderOutput: ['sample', 'images'],
  textOutput: ['last_hidden_state'],
};

/**
 * Self-attention is sliced by default where the model's native latent has at least 64×64 tokens (SD 1.x/2.x at 512²
 * and up): its scores dominate memory there, and 8 slices gave a byte-identical edit at a third of the peak memory
 * and no slower (docs/BENCHMARKS.md). An explicit `attentionSlices` (1 = whole) wins.
 */
const AUTO_SLICING_TOKENS = 64 * 64;
const AUTO_SLICES = 8;

function slicingFor(settings: SessionSettings, unetConfig: Record<string, unknown>): Slicing {
  if (settings.attentionSlices !== undefined) return { slices: settings.attentionSlices, asked: true };
  const side = num(unetConfig.sample_size) ?? 64;
  return { slices: side * side >= AUTO_SLICING_TOKENS ? AUTO_SLICES : 1, asked: false };
}

export async function loadDiffusionModel(dir: string, settings: SessionSettings = {}): Promise<DiffusionModel> {
  const root = path.resolve(dir);
  checkLayout(root);
  const readJson = (rel: string, required: boolean): Record<string, unknown> => {
    const file = path.join(root, rel);
    if (!fs.existsSync(file)) {
      if (required) throw new ModelLoadError(`${file}: missing; an exported Stable Diffusion folder has ${rel}`);
      return {};
    }
    try {
      const v: unknown = JSON.parse(fs.readFileSync(file, 'utf8'));
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not a JSON object');
      return v as Record<string, unknown>;
    } catch (err) {
      throw new ModelLoadError(`${file}: not valid JSON (${(err as Error).message}); re-export or re-download the model`);
    }
  };
  const schedulerFile = path.join(root, 'scheduler', 'scheduler_config.json');
  let scheduler: SchedulerConfig;
  try {
    scheduler = parseSchedulerConfig(readJson('scheduler/scheduler_config.json', true), schedulerFile);
  } catch (err) {
    if (err instanceof ModelLoadError) throw err;
    throw new ModelLoadError((err as Error).message);
  }
  let tokenizer: ClipTokenizer;
  try {
    tokenizer = ClipTokenizer.fromFolder(path.join(root, 'tokenizer'));
  } catch (err) {
    throw new ModelLoadError((err as Error).message);
  }
  const configs = Object.fromEntries(COMPONENTS.map((c) => [c, readJson(`${c}/config.json`, false)])) as Record<Component, Record<string, unknown>>;

  const sessions = {} as Record<Component, ort.InferenceSession>;
  let unet: UnetVariants | undefined;
  let vaeNote: string | undefined;
  const fallbacks = new Set<string>();
  const cacheDir = settings.graphCache === undefined ? path.join(dataDir(), 'graph-cache') : settings.graphCache;
  const failed = (err: Error) => {
    throw new ModelLoadError(err.message);
  };
  try {
    for (const c of COMPONENTS) {
      const file = path.join(root, c, 'model.onnx');
      let opened: OpenedSession;
      if (c === 'unet') {
        unet = await UnetVariants.open(file, settings, cacheDir, slicingFor(settings, configs.unet)).catch(failed);
        opened = unet.opened;
      } else if (c === 'vae_encoder') {
        ({ opened, note: vaeNote } = await openVaeEncoder(file, settings, cacheDir).catch(failed));
      } else opened = await openSession(file, settings).catch(failed);
      sessions[c] = opened.session;
      opened.fallbacks.forEach((f) => fallbacks.add(f));
    }
    const reopen: VaeOpeners = {
      encoder: async () => (await openVaeEncoder(path.join(root, 'vae_encoder', 'model.onnx'), settings, cacheDir)).opened.session,
      decoder: async () => (await openSession(path.join(root, 'vae_decoder', 'model.onnx'), settings)).session,
    };
    const model = new OnnxDiffusionModel(root, sessions, unet!, configs, scheduler, tokenizer, [...fallbacks], vaeNote, reopen);
    const blocks = configs.vae_decoder.block_out_channels ?? configs.vae_encoder.block_out_channels;
    if (!Array.isArray(blocks) || blocks.length === 0) await model.measureVaeScale();
    return model;
  } catch (err) {
    await Promise.all(Object.values(sessions).map((s) => s.release().catch(() => undefined)));
    await unet?.release();
    throw err;
  }
}

/**
 * The VAE encoder, rewritten to output the posterior mean when the export samples from it inside the graph (the
 * vae-mean pass refuses every other graph, which then opens as it is).
 */
async function openVaeEncoder(file: string, settings: SessionSettings, cacheDir: string | null): Promise<{ opened: OpenedSession; note?: string }> {
  const mean = await rewriteGraph(file, [{ pass: vaeMean }], { cacheDir });
  if (!mean.ok) return { opened: await openSession(file, settings) };
  const note = 'the exported encoder draws a random sample inside the graph (RandomNormalLike); rewritten to output the mean, so encoding is deterministic';
  return { opened: await openSession({ bytes: mean.bytes, dir: mean.dir, file }, settings), note };
}

function checkLayout(root: string): void {
  if (!fs.existsSync(root)) throw new ModelLoadError(`${root}: model folder does not exist; pass a folder exported with optimum-cli or the diffusers ONNX script`);
  if (!fs.statSync(root).isDirectory()) throw new ModelLoadError(`${root}: not a folder; pass the exported model's top folder (the one holding model_index.json)`);
  const missing = [
    ...COMPONENTS.map((c) => `${c}/model.onnx`),
    'scheduler/scheduler_config.json',
  ].filter((rel) => !fs.existsSync(path.join(root, rel)));
  if (!fs.existsSync(path.join(root, 'tokenizer'))) missing.push('tokenizer/');
  if (missing.length) {
    throw new ModelLoadError(
      `${root}: incomplete model folder, missing ${missing.join(', ')}; expected the diffusers/optimum ONNX layout ` +
        '(text_encoder/, unet/, vae_encoder/, vae_decoder/ each with model.onnx, plus scheduler/ and tokenizer/)',
    );
  }
}

function pickName(available: readonly string[], aliases: string[], file: string, role: string): string {
  const found = aliases.find((a) => available.includes(a));
  if (found) return found;
  if (available.length === 1) return available[0];
  throw new ModelLoadError(`${file}: no ${role} named ${aliases.join(' or ')} (the graph has ${available.join(', ') || 'none'})`);
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

function staticDim(meta: TensorMeta | undefined, axis: number): number | undefined {
  const d = meta?.shape[axis];
  return typeof d === 'number' && d > 0 ? d : undefined;
}

function externalDataFile(dir: string): string | undefined {
  return fs.readdirSync(dir).find((f) => f !== 'model.onnx' && f !== 'config.json' && (f.endsWith('_data') || f.endsWith('.pb') || f.endsWith('.data')));
}

/** How the timestep is fed: dtype, and whether it is a scalar, a [1] tensor or one value per batch item. */
type TimestepForm = { type: string; form: 'scalar' | 'one' | 'batch' };

/** Opens a VAE half again after vaeHalf closed it. */
interface VaeOpeners {
  encoder(): Promise<ort.InferenceSession>;
  decoder(): Promise<ort.InferenceSession>;
}

class OnnxDiffusionModel implements DiffusionModel {
  readonly info: ModelInfo;
  readonly stats: ModelStats = { unetRuns: 0, unetEvals: 0, unetMs: 0, vaeMs: 0, textMs: 0 };
  private readonly ids: { name: string; type: 'int32' | 'int64' };
  private readonly textOutput: string;
  private readonly unet: { sample: TensorMeta; timestep: TimestepForm; hidden: TensorMeta; cond?: TensorMeta; output: string; fixedBatch?: number };
  private readonly vaeEnc: { input: TensorMeta; output: string; parameters: boolean };
  private readonly vaeDec: { input: TensorMeta; output: string };
  /** The VAE halves' sessions; one is closed while the other works (vaeHalf). */
  private readonly vae: { encoder?: ort.InferenceSession; decoder?: ort.InferenceSession };

  constructor(
    root: string,
    private readonly sessions: Record<Component, ort.InferenceSession>,
    private readonly unetVariants: UnetVariants,
    configs: Record<Component, Record<string, unknown>>,
    readonly scheduler: SchedulerConfig,
    readonly tokenizer: ClipTokenizer,
    fallbacks: string[],
    vaeEncoderNote: string | undefined,
    private readonly reopen: VaeOpeners,
  ) {
    const provider: ProviderName = unetVariants.opened.provider;
    const features: DecoderFeatureInfo = unetVariants.features;
    const file = (c: Component) => path.join(root, c, 'model.onnx');
    const { text_encoder: te, unet, vae_encoder: ve, vae_decoder: vd } = sessions;
    this.vae = { encoder: ve, decoder: vd };

    // Text encoder.
    const idsName = pickName(te.inputNames, ['input_ids'], file('text_encoder'), 'input');
    const idsMeta = tensorMeta(te.inputMetadata, idsName)!;
    if (idsMeta.type !== 'int32' && idsMeta.type !== 'int64') {
      throw new ModelLoadError(`${file('text_encoder')}: input_ids must be int32 or int64, the graph declares ${idsMeta.type}`);
    }
    this.ids = { name: idsName, type: idsMeta.type };
    this.textOutput = pickName(te.outputNames, ALIASES.textOutput, file('text_encoder'), 'output');
    const textOutMeta = tensorMeta(te.outputMetadata, this.textOutput);

    // UNet.
    const required = ['sample', 'timestep', 'encoder_hidden_states'];
    const missing = required.filter((n) => !unet.inputNames.includes(n));
    if (missing.length) {
      throw new ModelLoadError(`${file('unet')}: missing input ${missing.join(', ')}; a Stable Diffusion UNet takes sample, timestep, encoder_hidden_states (has ${unet.inputNames.join(', ')})`);
    }
    const extra = unet.inputNames.filter((n) => !required.includes(n) && n !== 'timestep_cond');
    if (extra.length) {
      throw new ModelLoadError(
        `${file('unet')}: unexpected input ${extra.join(', ')}; supported are SD 1.x/2.x, SD-Turbo and LCM UNets ` +
          '(SDXL-style text_embeds/time_ids and ControlNet residual inputs are not supported yet)',
      );
    }
    const sample = tensorMeta(unet.inputMetadata, 'sample')!;
    const hidden = tensorMeta(unet.inputMetadata, 'encoder_hidden_states')!;
    const ts = tensorMeta(unet.inputMetadata, 'timestep')!;
    if (sample.shape.length !== 0 && sample.shape.length !== 4) {
      throw new ModelLoadError(`${file('unet')}: sample must be [batch, channels, height, width], the graph declares [${sample.shape.join(', ')}]`);
    }
    const tsForm: TimestepForm = {
      type: ts.type,
      form: ts.shape.length === 0 ? 'scalar' : ts.shape.length === 1 && ts.shape[0] === 1 ? 'one' : 'batch',
    };
    if (!['float32', 'float16', 'float64', 'int64', 'int32'].includes(ts.type)) {
      throw new ModelLoadError(`${file('unet')}: timestep must be a float or integer tensor, the graph declares ${ts.type}`);
    }
    const cond = unet.inputNames.includes('timestep_cond') ? tensorMeta(unet.inputMetadata, 'timestep_cond') : undefined;
    this.unet = {
      sample,
      timestep: tsForm,
      hidden,
      cond,
      output: pickName(unet.outputNames, ALIASES.unetOutput, file('unet'), 'output'),
      fixedBatch: staticDim(sample, 0),
    };

    // VAE.
    const vaeEncIn = tensorMeta(ve.inputMetadata, pickName(ve.inputNames, ['sample'], file('vae_encoder'), 'input'))!;
    const vaeEncOut = pickName(ve.outputNames, ALIASES.vaeEncoderOutput, file('vae_encoder'), 'output');
    const vaeDecIn = tensorMeta(vd.inputMetadata, pickName(vd.inputNames, ALIASES.vaeDecoderInput, file('vae_decoder'), 'input'))!;
    const vaeDecOut = pickName(vd.outputNames, ALIASES.vaeDecoderOutput, file('vae_decoder'), 'output');

    // Numbers the pipeline depends on, read from the graphs first and the configs second.
    const channelCandidates = [staticDim(sample, 1), staticDim(vaeDecIn, 1), num(configs.unet.in_channels), num(configs.vae_decoder.latent_channels)];
    const latentChannels = channelCandidates.find((c) => c !== undefined) ?? 4;
    const graphChannels = [staticDim(sample, 1), staticDim(vaeDecIn, 1)].filter((c): c is number => c !== undefined);
    if (graphChannels.some((c) => c !== latentChannels)) {
      throw new ModelLoadError(`${root}: the UNet takes ${staticDim(sample, 1)} latent channels but the VAE decoder takes ${staticDim(vaeDecIn, 1)}; the parts come from different models`);
    }
    const encOutMeta = tensorMeta(ve.outputMetadata, vaeEncOut);
    const encChannels = staticDim(encOutMeta, 1);
    const parameters = vaeEncOut === 'latent_parameters' || vaeEncOut === 'latent_dist' || encChannels === 2 * latentChannels;
    this.vaeEnc = { input: vaeEncIn, output: vaeEncOut, parameters };
    this.vaeDec = { input: vaeDecIn, output: vaeDecOut };

    const blocks = configs.vae_decoder.block_out_channels ?? configs.vae_encoder.block_out_channels;
    const vaeScale = Array.isArray(blocks) && blocks.length > 0 ? 2 ** (blocks.length - 1) : 8;
    const scalingFactor = num(configs.vae_decoder.scaling_factor) ?? num(configs.vae_encoder.scaling_factor) ?? 0.18215;
    const hiddenSize = staticDim(hidden, 2) ?? staticDim(textOutMeta, 2) ?? num(configs.text_encoder.hidden_size) ?? num(configs.unet.cross_attention_dim) ?? 768;
    const textHidden = staticDim(textOutMeta, 2);
    if (textHidden !== undefined && staticDim(hidden, 2) !== undefined && textHidden !== staticDim(hidden, 2)) {
      throw new ModelLoadError(`${root}: the text encoder outputs width ${textHidden} but the UNet expects encoder_hidden_states of width ${staticDim(hidden, 2)}`);
    }
    const sequenceLength = staticDim(idsMeta, 1) ?? tokenizer.maxLength;
    if (sequenceLength !== tokenizer.maxLength) {
      throw new ModelLoadError(`${root}: the text encoder takes ${sequenceLength} tokens but the tokenizer pads to ${tokenizer.maxLength}`);
    }
    const condDim = cond ? staticDim(cond, 1) ?? num(configs.unet.time_cond_proj_dim) ?? 256 : 0;
    const externalData: Partial<Record<Component, string>> = {};
    for (const c of COMPONENTS) {
      const ext = externalDataFile(path.join(root, c));
      if (ext) externalData[c] = ext;
    }
    this.info = {
      dir: root,
      name: path.basename(root),
      provider,
      providerFallbacks: fallbacks,
      latentChannels,
      vaeScale,
      scalingFactor,
      hiddenSize,
      sequenceLength,
      nativeSize: (num(configs.unet.sample_size) ?? 64) * vaeScale,
      timestepCondDim: condDim,
      decoderFeatures: features.tensor,
      ...(features.tensor ? {} : { decoderFeaturesNote: features.note }),
      attention: unetVariants.attention,
      ...(vaeEncoderNote ? { vaeEncoderNote } : {}),
      fp16: sample.type === 'float16',
      variant: {
        inputIds: `${idsName}:${this.ids.type}`,
        timestep: `${ts.type}${tsForm.form === 'scalar' ? '[]' : tsForm.form === 'one' ? '[1]' : '[batch]'}`,
        unetOutput: this.unet.output,
        vaeEncoderOutput: `${vaeEncOut}${parameters ? ' (mean of mean‖logvar)' : ''}`,
        vaeDecoderInput: vaeDecIn.name,
        vaeDecoderOutput: vaeDecOut,
        externalData,
      },
    };
  }

  /**
   * Without a VAE config saying how many 2× stages the decoder has, decode a small latent once and read the
   * factor off the output, rather than assuming SD's 8.
   */
  async measureVaeScale(): Promise<void> {
    const probe = 8;
    const img = await this.decodeLatents(new Float32Array(this.info.latentChannels * probe * probe), 1, probe, probe);
    const scale = img.height / probe;
    if (!Number.isInteger(scale) || scale < 1 || img.width / probe !== scale) {
      throw new ModelLoadError(`${path.join(this.info.dir, 'vae_decoder', 'model.onnx')}: decoding an ${probe}x${probe} latent gave ${img.width}x${img.height}; expected a whole-number upscaling factor`);
    }
    const info = this.info as { vaeScale: number; nativeSize: number };
    info.nativeSize = (info.nativeSize / info.vaeScale) * scale;
    info.vaeScale = scale;
  }

  async encodePrompts(prompts: string[]): Promise<PromptEmbeddings> {
    const t0 = performance.now();
    const warnings: string[] = [];
    const rows = prompts.map((p) => {
      const enc = this.tokenizer.encode(p);
      if (enc.truncated) {
        const kept = this.tokenizer.decode(enc.ids);
        warnings.push(`prompt is longer than ${this.tokenizer.maxLength - 2} tokens; ${enc.droppedTokens} tokens were cut, the model sees: "${kept}"`);
      }
      return enc.ids;
    });
    const len = this.info.sequenceLength;
    const ids = new ort.Tensor(this.ids.type, idsTensorData(rows, this.ids.type), [rows.length, len]);
    const out = await this.sessions.text_encoder.run({ [this.ids.name]: ids }, [this.textOutput]);
    const data = floatOutput(out[this.textOutput]);
    this.stats.textMs += performance.now() - t0;
    const expected = rows.length * len * this.info.hiddenSize;
    if (data.length !== expected) {
      throw new Error(`text encoder returned ${data.length} values, expected ${rows.length}×${len}×${this.info.hiddenSize}`);
    }
    return { data, count: rows.length, warnings };
  }

  async predict(sample: Float32Array, batch: number, h: number, w: number, timestep: number, embeddings: Float32Array, call: UnetCall = {}): Promise<UnetResult> {
    const variant = this.unetVariants.session(call.variant ?? BASE_VARIANT);
    const known = new Set(variant.ports.outputs.map((o) => o.name));
    const unknown = (call.outputs ?? []).filter((o) => !known.has(o));
    if (unknown.length) throw new Error(`the UNet variant has no output port ${unknown.join(', ')}; ask model.variant for the pass that adds it`);
    const feeds: Record<string, ort.Tensor> = {};
    for (const port of variant.ports.inputs) {
      const given = call.feeds?.[port.name];
      const count = port.neutralShape.reduce((a, d) => a * d, 1);
      const data = given?.data ?? new Float32Array(count).fill(port.neutralValue);
      feeds[port.name] = port.type === 'int64' ? numberFeed('int64', Array.from(data), given?.dims ?? port.neutralShape) : floatFeed(port.type, data, given?.dims ?? port.neutralShape);
    }
    const extra = Object.keys(call.feeds ?? {}).filter((name) => !(name in feeds));
    if (extra.length) throw new Error(`the UNet variant has no input port ${extra.join(', ')}`);
    const fixed = this.unet.fixedBatch;
    const step = fixed ?? batch;
    const run = (s: Float32Array, e: Float32Array, n: number) => this.unetChunk(variant.session, s, n, h, w, timestep, e, call.guidanceEmbedding ?? 0, feeds, call.outputs ?? []);
    if (step === batch) return run(sample, embeddings, batch);
    // Index ports (structure lock, word swap) gather one item of the call into another; in chunks they would point
    // past their chunk or at the wrong item.
    const indexed = variant.ports.inputs.filter((p) => p.type === 'int64' && call.feeds?.[p.name]);
    if (indexed.length)
      throw new Error(
        `this UNet was exported with a fixed batch of ${fixed}, so a call of ${batch} items runs in pieces, and ${indexed[0].name} reads across the whole call; re-export the UNet with a dynamic batch axis, or turn off structure lock and word swap`,
      );
    // Graphs exported with a fixed batch dimension are fed in chunks of exactly that size, padding the last one;
    // extra outputs are split along their first axis like the noise prediction.
    const C = this.info.latentChannels;
    const per = C * h * w;
    const perEmb = embeddings.length / batch;
    const eps = new Float32Array(batch * per);
    const outputs: Record<string, PortTensor> = {};
    for (let start = 0; start < batch; start += step) {
      const n = Math.min(step, batch - start);
      const s = new Float32Array(step * per);
      const e = new Float32Array(step * perEmb);
      s.set(sample.subarray(start * per, (start + n) * per));
      e.set(embeddings.subarray(start * perEmb, (start + n) * perEmb));
      const r = await run(s, e, step);
      eps.set(r.eps.subarray(0, n * per), start * per);
      for (const [name, t] of Object.entries(r.outputs)) {
        const itemSize = t.data.length / step;
        outputs[name] ??= { data: new Float32Array(batch * itemSize), dims: [batch, ...t.dims.slice(1)] };
        outputs[name].data.set(t.data.subarray(0, n * itemSize), start * itemSize);
      }
    }
    return { eps, outputs };
  }

  variant(passes: PassRequest[]): Promise<VariantResult> {
    return this.unetVariants.variant(passes);
  }

  private async unetChunk(session: ort.InferenceSession, sample: Float32Array, batch: number, h: number, w: number, timestep: number, embeddings: Float32Array, guidanceEmbedding: number, extra: Record<string, ort.Tensor>, outputs: readonly string[]): Promise<UnetResult> {
    const C = this.info.latentChannels;
    const S = embeddings.length / (batch * this.info.hiddenSize);
    const feeds: Record<string, ort.Tensor> = {
      ...extra,
      sample: floatFeed(this.unet.sample.type, sample, [batch, C, h, w]),
      encoder_hidden_states: floatFeed(this.unet.hidden.type, embeddings, [batch, S, this.info.hiddenSize]),
      timestep: timestepFeed(this.unet.timestep, timestep, batch),
    };
    if (this.unet.cond) {
      feeds.timestep_cond = floatFeed(this.unet.cond.type, guidanceScaleEmbedding(guidanceEmbedding, this.info.timestepCondDim, batch), [batch, this.info.timestepCondDim]);
    }
    const t0 = performance.now();
    const out = await session.run(feeds, [this.unet.output, ...outputs]);
    this.stats.unetMs += performance.now() - t0;
    this.stats.unetRuns++;
    this.stats.unetEvals += batch;
    const eps = floatOutput(out[this.unet.output]);
    if (eps.length !== sample.length) {
      throw new Error(`UNet returned ${eps.length} values for a sample of ${sample.length}; the graph's output shape does not match its input`);
    }
    const extraOut: Record<string, PortTensor> = {};
    for (const name of outputs) extraOut[name] = { data: floatOutput(out[name]), dims: out[name].dims };
    return { eps, outputs: extraOut };
  }

  async encodeImages(images: ImageBatch): Promise<Float32Array> {
    const { n, height, width } = images;
    const s = this.info.vaeScale;
    if (height % s || width % s) throw new Error(`frame size ${width}x${height} must be a multiple of the VAE factor ${s}`);
    const C = this.info.latentChannels;
    const hw = (height / s) * (width / s);
    const latents = new Float32Array(n * C * hw);
    const k = this.info.scalingFactor;
    const per = 3 * height * width;
    const encoder = await this.vaeHalf('encoder');
    for (const { start, count } of batches(n, vaeFramesPerCall(height * width))) {
      const t0 = performance.now();
      const pixels = images.data.subarray(start * per, (start + count) * per);
      const out = await encoder.run({ [this.vaeEnc.input.name]: floatFeed(this.vaeEnc.input.type, pixels, [count, 3, height, width]) }, [this.vaeEnc.output]);
      this.stats.vaeMs += performance.now() - t0;
      const raw = floatOutput(out[this.vaeEnc.output]);
      const outC = raw.length / (count * hw);
      if (!Number.isInteger(outC) || (outC !== C && outC !== 2 * C)) {
        throw new Error(`VAE encoder returned ${raw.length} values for ${count} frames of ${width}x${height}; expected ${C} or ${2 * C} channels at 1/${s} resolution`);
      }
      for (let f = 0; f < count; f++) {
        // latent_parameters is mean ‖ logvar along channels: the first C channels are the mean we invert from.
        const src = raw.subarray(f * outC * hw, f * outC * hw + C * hw);
        const dst = (start + f) * C * hw;
        for (let i = 0; i < C * hw; i++) latents[dst + i] = src[i] * k;
      }
    }
    return latents;
  }

  /**
   * One half of the VAE, with the other one closed. They run at different times of a chunk (encode first, decode last),
   * and ONNX Runtime's arena keeps each session's largest call for the session's life: with only one open, the peak
   * holds one VAE's working memory instead of both (docs/BENCHMARKS.md, "Memory plan"). Reopening costs a session
   * creation per chunk, which on the CPU is a fraction of a frame's VAE time; GPU providers (CoreML compiles a model
   * when its session is created) keep both open.
   */
  private async vaeHalf(half: keyof VaeOpeners): Promise<ort.InferenceSession> {
    const other = half === 'encoder' ? 'decoder' : 'encoder';
    if (this.info.provider === 'cpu' && this.vae[other]) {
      const closing = this.vae[other];
      this.vae[other] = undefined;
      await closing.release();
    }
    this.vae[half] ??= await this.reopen[half]();
    return this.vae[half];
  }

  async decodeLatents(latents: Float32Array, n: number, h: number, w: number): Promise<ImageBatch> {
    const decoder = await this.vaeHalf('decoder');
    const C = this.info.latentChannels;
    const s = this.info.vaeScale;
    const inv = 1 / this.info.scalingFactor;
    const per = C * h * w;
    let frames: ImageBatch | undefined;
    for (const { start, count } of batches(n, vaeFramesPerCall(h * w * s * s))) {
      const scaled = new Float32Array(count * per);
      for (let i = 0; i < scaled.length; i++) scaled[i] = latents[start * per + i] * inv;
      const t0 = performance.now();
      const out = await decoder.run({ [this.vaeDec.input.name]: floatFeed(this.vaeDec.input.type, scaled, [count, C, h, w]) }, [this.vaeDec.output]);
      this.stats.vaeMs += performance.now() - t0;
      const tensor = out[this.vaeDec.output];
      const dims = tensor.dims;
      if (dims.length !== 4 || dims[0] !== count || dims[1] !== 3) throw new Error(`VAE decoder returned shape [${dims.join(', ')}], expected [${count}, 3, H, W]`);
      frames ??= { n, height: dims[2], width: dims[3], data: new Float32Array(n * 3 * dims[2] * dims[3]) };
      frames.data.set(floatOutput(tensor), start * 3 * frames.height * frames.width);
    }
    if (!frames) throw new Error('decodeLatents: no frames to decode');
    return frames;
  }

  async release(): Promise<void> {
    // The UNet's sessions belong to its variants; the others are released here.
    const { encoder, decoder } = this.vae;
    this.vae.encoder = this.vae.decoder = undefined;
    await Promise.all([this.unetVariants.release(), this.sessions.text_encoder.release(), encoder?.release(), decoder?.release()]);
  }
}

/**
 * Pixels one VAE call covers at most: frames beyond one 512×512 frame per call are decoded (and encoded) in further
 * calls, as diffusers' enable_vae_slicing does. At SD's sizes the VAE's activations are hundreds of MB per frame and
 * ONNX Runtime's arena keeps the largest call's; on CPU a batch of 512² frames was no faster than one at a time
 * (docs/BENCHMARKS.md, "Memory plan"). Small frames still go together. Results do not depend on the split.
 */
const VAE_PIXELS_PER_CALL = 512 * 512;

export const vaeFramesPerCall = (pixelsPerFrame: number) => Math.max(1, Math.floor(VAE_PIXELS_PER_CALL / pixelsPerFrame));

function timestepFeed(form: TimestepForm, t: number, batch: number): ort.Tensor {
  switch (form.form) {
    case 'scalar':
      return numberFeed(form.type, [t], []);
    case 'one':
      return numberFeed(form.type, [t], [1]);
    case 'batch':
      return numberFeed(form.type, new Array<number>(batch).fill(t), [batch]);
  }
}

/**
 * LCM's guidance embedding (diffusers get_guidance_scale_embedding): sinusoidal features of w·1000, sin half then
 * cos half, repeated per batch item.
 */
export function guidanceScaleEmbedding(w: number, dim: number, batch: number): Float32Array {
  const half = dim / 2;
  const out = new Float32Array(batch * dim);
  const scale = Math.log(10000) / (half - 1);
  for (let i = 0; i < half; i++) {
    const arg = w * 1000 * Math.exp(-scale * i);
    for (let b = 0; b < batch; b++) {
      out[b * dim + i] = Math.sin(arg);
      out[b * dim + half + i] = Math.cos(arg);
    }
  }
  return out;
}
