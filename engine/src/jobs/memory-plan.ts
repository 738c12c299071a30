// How many frames go into one UNet call, chosen per job so the edit fits in memory and runs at full speed. The
// request's batchSize is a maximum. For models of Stable Diffusion's size (a latent of 64×64 or more at their native
// size) the engine knows what a UNet batch item costs at the job's size (models/memory-probe.ts measures it once and
// caches it); it takes the largest batch that leaves a margin of the memory that is free, and refuses a job that does
// not fit even one frame at a time, before it starts. Small models are not measured: nothing they do comes near.
// What the attention methods add is not measured but sized from what they hold (attentionCost below): the UNet
// rewritten for them is a second session with its own weights, and cross-frame attention's bank comes on top.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { JobMemory, JobRequest } from '../api/schemas';
import { unetItemsPerFrame } from '../editing/loop/inversion-loop';
import { readsSourceBranch } from '../editing/stages';
import { crossFrameMemory, crossFrameSites, type BankMemory, type BankSite } from '../editing/stages/cross-frame';
import { tokenFlowMemory } from '../editing/stages/token-flow';
import type { CrossFrameParams } from '../editing/types';
import type { MemoryCost, MemoryProbeKey } from '../models/memory-probe';
import { vaeFramesPerCall, type ModelInfo } from '../models/sd-model';
import { findAttentionSites } from '../onnx/attention-sites';
import { graphIdentity, readGraphFile } from '../onnx/graph-file';

/**
 * Latent tokens per UNet call beyond which a CPU gains nothing from a bigger batch: on sd-bench (2-core Xeon) the time
 * per item fell from 1 to 4 items at 16² and 32² latents (4096 tokens at 32²) and rose with the batch at 64²
 * (docs/BENCHMARKS.md, "Memory plan"). GPUs keep the requested batch.
 */
export const CPU_TOKENS_PER_CALL = 4096;

/** Native latents of at least this many tokens make a model "large": measured and planned (as attention slicing). */
const PLANNED_LATENT_TOKENS = 64 * 64;

/**
 * A UNet with self-attention over a native latent of 64×64 or more: where scores grow with the square of the frame and
 * convolutions fill a CPU at one frame. The oracle (no attention; its "VAE" is the identity, so its latents are
 * frames) and the small generated test models are not planned.
 */
export function isPlannedModel(model: ModelInfo): boolean {
  const side = model.nativeSize / model.vaeScale;
  return side * side >= PLANNED_LATENT_TOKENS && model.attention.sites.some((s) => s.kind === 'self');
}

/** Whether jobs on this model are measured: a planned model on the CPU (the probe sees system memory, not a GPU's). */
export function measuresMemory(model: ModelInfo): boolean {
  return isPlannedModel(model) && model.provider === 'cpu';
}

/** What the plan needs to know about the machine: free memory, the engine's own, and the user's limit. */
export interface MemoryBudget {
  /** Memory the system can still give (bytes). */
  availableBytes: number;
  /** The engine process's resident memory now: the loaded model counts in both the cost and here. */
  processBytes: number;
  totalBytes: number;
  /** `--max-memory`: a ceiling on the engine's peak, whatever is free. */
  limitBytes?: number;
}

export function currentBudget(limitBytes?: number): MemoryBudget {
  // process.availableMemory (Node ≥ 20.13) also honours a container's memory limit; os.freemem is the fallback.
  const available = typeof process.availableMemory === 'function' ? process.availableMemory() : os.freemem();
  return {
    availableBytes: available,
    processBytes: process.memoryUsage().rss,
    totalBytes: os.totalmem(),
    ...(limitBytes ? { limitBytes } : {}),
  };
}

/** Room left for other applications (Premiere above all): a tenth of the machine, at least 512 MiB. */
export function marginBytes(totalBytes: number): number {
  return Math.max(512 * 2 ** 20, 0.1 * totalBytes);
}

export interface PlanInput {
  req: Pick<
    JobRequest,
    'batchSize' | 'method' | 'guidance' | 'prompt' | 'sourcePrompt' | 'directInversion' | 'attention'
  > &
    Partial<Pick<JobRequest, 'mask'>>;
  model: ModelInfo;
  /** Latent size of the job's working frames. */
  latent: { height: number; width: number };
  /** Frames, at working and at output size, the job holds besides the model (decode ahead, encode behind). */
  mediaBytes: number;
  /** Measured cost at this size; absent for small models. */
  cost?: MemoryCost;
  budget: MemoryBudget;
  /** With cross-frame attention: the bank's sites and the UNet's weights, when not read from the model's files. */
  bankSites?: BankSite[];
  /** Frames edited together (a chunk, its overlap included): TokenFlow draws its keyframes from them. */
  chunkFrames?: number;
  unetWeightsBytes?: number;
}

export type PlanOutcome = { ok: true; memory: JobMemory } | { ok: false; detail: string };

/** UNet batch items per frame in the job's widest step. */
export function itemsPerFrame(req: PlanInput['req']): number {
  if (req.method === 'inversion') return unetItemsPerFrame(req, readsSourceBranch(req.attention));
  // SDEdit adds an unconditional branch with guidance; the fast preset's UNet takes guidance as an input or not at all.
  return req.method === 'sdedit' && req.guidance !== 1 ? 2 : 1;
}

const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;

/**
 * What the attention methods add: the UNet rewritten for them, a session of its own with its weights, and cross-frame
 * attention's bank (none for the methods that gather inside the batch).
 */
interface CrossFrameCost {
  bank: BankMemory;
  weightsBytes: number;
  /** Who asks for it, for messages. */
  what: string;
}

const NO_BANK: BankMemory = { itemBytes: 0, heldBytes: 0 };

/** Whether the job's edit runs in a rewritten UNet (an attention method or an attention mask). */
function rewritesUnet(req: PlanInput['req']): boolean {
  const a = req.attention;
  const maskFrom = req.mask?.type === 'auto' ? req.mask.from : undefined;
  return (
    req.method === 'inversion' &&
    (!!a?.crossFrame || readsSourceBranch(a) || !!a?.reweight.length || (!!maskFrom && maskFrom !== 'difference'))
  );
}

/** The job's cost of a rewritten UNet; undefined without one, a sentence where it cannot be sized. */
function attentionCost(p: PlanInput, items: number): CrossFrameCost | string | undefined {
  if (!rewritesUnet(p.req)) return undefined;
  const cf = p.req.attention?.crossFrame;
  try {
    const weightsBytes = p.unetWeightsBytes ?? unetWeightsBytes(p.model);
    const tf = p.req.attention?.tokenFlow;
    if (tf) {
      const sites = p.bankSites ?? bankSites(p.model, 'all', p.latent);
      if (typeof sites === 'string') return sites;
      const frames = p.chunkFrames ?? tf.keyframeEvery;
      const memory = tokenFlowMemory(sites, frames, tf.keyframeEvery, items, p.model.attention.slices);
      return { bank: memory, weightsBytes, what: 'TokenFlow' };
    }
    if (!cf) return { bank: NO_BANK, weightsBytes, what: 'the attention methods' };
    const sites = p.bankSites ?? bankSites(p.model, cf.layers, p.latent);
    if (typeof sites === 'string') return sites;
    return {
      bank: crossFrameMemory(sites, cf, items, p.model.attention.slices),
      weightsBytes,
      what: 'cross-frame attention',
    };
  } catch (err) {
    return `the UNet's files could not be read for it (${(err as Error).message})`;
  }
}

/**
 * What the UNet holds at `frames` frames per call, beyond the model. Plain: one session, whose working memory grows
 * with the batch's items (inversion and edit share it). With cross-frame attention the edit runs in the rewritten
 * session, opened beside the base one (models/unet-variants.ts): a second copy of the weights and working memory of its
 * own for the edit's items, each with the bank on top, while the base session keeps what the inversion (one item a
 * frame) and the automatic mask (two) grew it to. The stage's anchors are held whatever the batch.
 */
function unetBytes(cost: MemoryCost, items: number, cf?: CrossFrameCost): (frames: number) => number {
  const item = cost.unetItemBytes;
  if (!cf) return (frames) => frames * items * item;
  return (frames) => {
    const edited = Math.min(frames, cf.bank.framesPerCall ?? frames);
    const base = frames * Math.min(items, 2) * item;
    const callItems = edited * items;
    // Joint attention pairs the frames of one branch. A joint call of its own (TokenFlow's keyframes) is counted on
    // top of the frames' calls, its own items too: an upper bound.
    const jointFrames = cf.bank.jointFrames ?? edited;
    const joint =
      items * jointFrames * (jointFrames - 1) * (cf.bank.pairBytes ?? 0) + items * (cf.bank.jointFrames ?? 0) * item;
    return base + cf.weightsBytes + callItems * (item + cf.bank.itemBytes) + cf.bank.heldBytes + joint;
  };
}

export function planMemory(p: PlanInput): PlanOutcome {
  const requested = p.req.batchSize;
  const tokens = p.latent.height * p.latent.width;
  const planned = isPlannedModel(p.model);
  let batch = requested;
  let reason =
    planned && p.model.provider !== 'cpu'
      ? `as requested (${p.model.provider} memory is not measured)`
      : 'as requested';
  if (planned && p.model.provider === 'cpu') {
    const fast = Math.max(1, Math.floor(CPU_TOKENS_PER_CALL / tokens));
    if (fast < batch) {
      batch = fast;
      reason = `a ${p.latent.width}×${p.latent.height} latent fills the CPU at ${fast} frame${fast > 1 ? 's' : ''} per call`;
    }
  }
  if (!p.cost) return { ok: true, memory: { batchSize: batch, requestedBatchSize: requested, reason } };
  const items = itemsPerFrame(p.req);
  const cf = attentionCost(p, items);
  const banked = typeof cf === 'object' ? cf : undefined;
  const unet = unetBytes(p.cost, items, banked);
  const peak = (frames: number) => p.cost!.baseBytes + unet(frames) + p.mediaBytes;
  const plainPeak = (frames: number) => p.cost!.baseBytes + frames * items * p.cost!.unetItemBytes + p.mediaBytes;
  const b = p.budget;
  const free = b.processBytes + b.availableBytes - marginBytes(b.totalBytes);
  const room = Math.min(free, b.limitBytes ?? Infinity);
  const limited = (b.limitBytes ?? Infinity) < free;
  const limitedBy = limited ? `the --max-memory limit of ${gib(b.limitBytes!)}` : 'free memory';
  const fits = (frames: number) => peak(frames) <= room;
  if (!fits(1)) {
    const what = limited
      ? `the --max-memory limit is ${gib(b.limitBytes!)}`
      : `${gib(b.availableBytes)} is free besides the engine's ${gib(b.processBytes)}, and ${gib(marginBytes(b.totalBytes))} is kept for other applications`;
    const crossFrame = banked?.what === 'cross-frame attention';
    const bank = banked
      ? `, and ${gib(peak(1) - plainPeak(1))} more for ${banked.what}: the UNet rewritten for ${crossFrame ? 'it' : 'them'} runs as a ` +
        'second session with its own copy of the weights' +
        (crossFrame ? ", and the anchor frames' keys and values and the wider attention scores come on top" : '')
      : '';
    return {
      ok: false,
      detail:
        `this edit needs about ${gib(peak(1))} at one frame per UNet call (the model ${gib(p.cost.baseBytes)}, ` +
        `${gib(items * p.cost.unetItemBytes)} per frame at ${p.latent.width}×${p.latent.height} latents${bank}) ` +
        `and ${what}; ` +
        (crossFrame ? `turn attention.crossFrame off or limit it to the decoder's layers (layers "decoder"), ` : '') +
        (banked && !crossFrame ? 'turn the attention methods off, ' : '') +
        'close other applications, raise the limit, use more attention slices (--attention-slices 16), ' +
        'or run the job on a machine with more memory',
    };
  }
  const fastest = batch;
  while (batch > 1 && !fits(batch)) batch--;
  if (batch < fastest) {
    const withBank = banked ? ` with ${banked.what}` : '';
    reason = `${batch} frame${batch > 1 ? 's' : ''} per call fit${batch > 1 ? '' : 's'} in ${limitedBy}${withBank}`;
  }
  if (typeof cf === 'string') reason += ` (the attention methods' own memory is not counted: ${cf})`;
  return {
    ok: true,
    memory: {
      batchSize: batch,
      requestedBatchSize: requested,
      reason,
      estimatedPeakBytes: Math.round(peak(batch)),
      budgetBytes: Math.round(room),
    },
  };
}

/** Chunk sizes a TokenFlow job may edit together, largest first (each capped at the range's frames). */
export const TOKEN_FLOW_CHUNKS = [64, 48, 32, 16] as const;

/**
 * Frames a TokenFlow job edits together: the largest of TOKEN_FLOW_CHUNKS whose own memory fits in a quarter of the
 * room the plan has (free memory less the margin, or the --max-memory limit): the keyframes' hidden states and outputs held
 * between calls, and the keyframe call, whose items all run at once (each branch's keyframes attend to each other, so
 * its joint attention grows with the square of the keyframes, and the memory plan's batch does not bound it). The
 * keyframes carry one edit across the frames they cover; smaller chunks only meet at more seams. The smallest when
 * nothing can be sized (the graph cannot be read). A quarter, because the estimate leaves out ONNX Runtime's own
 * working copies: on sd15-tiny at a 448×256 working size (a model the plan does not measure) a 45-frame edit with
 * TokenFlow and structure lock in 32-frame chunks peaked at 17.3 GB of RSS, against 7.0 GB for the plain edit.
 */
export function tokenFlowChunkFrames(p: PlanInput & { frameCount: number; overlap: number }): number {
  const tf = p.req.attention?.tokenFlow;
  const sizes = [...new Set(TOKEN_FLOW_CHUNKS.map((f) => Math.min(f, p.frameCount)))];
  const least = sizes[sizes.length - 1];
  if (!tf) return least;
  let sites: BankSite[] | string;
  try {
    sites = p.bankSites ?? bankSites(p.model, 'all', p.latent);
  } catch {
    return least;
  }
  if (typeof sites === 'string') return least;
  const items = itemsPerFrame(p.req);
  const b = p.budget;
  const room = Math.min(b.processBytes + b.availableBytes - marginBytes(b.totalBytes), b.limitBytes ?? Infinity) / 4;
  for (const frames of sizes) {
    const m = tokenFlowMemory(sites, frames + p.overlap, tf.keyframeEvery, items, p.model.attention.slices);
    const keyframes = m.jointFrames ?? 1;
    const call = items * keyframes * ((keyframes - 1) * (m.pairBytes ?? 0) + (p.cost?.unetItemBytes ?? 0));
    if (m.heldBytes + call <= room) return frames;
  }
  return least;
}

/** The probe's key for a job on this model at this latent size. */
export function probeKey(
  model: ModelInfo,
  latent: { height: number; width: number },
  chunkFrames: number,
): MemoryProbeKey {
  const pixels = latent.height * latent.width * model.vaeScale ** 2;
  return {
    modelDir: model.dir,
    provider: model.provider,
    slices: model.attention.slices,
    height: latent.height,
    width: latent.width,
    vaeFrames: Math.min(chunkFrames, vaeFramesPerCall(pixels)),
  };
}

/**
 * The self-attention sites cross-frame attention feeds a bank at, sized at this latent, or why they cannot be. The
 * sites' widths (heads × head width) come from the UNet's graph, read without its weights once per file.
 */
export function bankSites(
  model: ModelInfo,
  layers: CrossFrameParams['layers'],
  latent: { height: number; width: number },
): BankSite[] | string {
  const modules = crossFrameSites(model, layers);
  if (typeof modules === 'string') return modules;
  const widths = selfAttentionWidths(path.join(model.dir, 'unet', 'model.onnx'));
  const sites: BankSite[] = [];
  for (const module of modules) {
    const site = model.attention.sites.find((s) => s.module === module)!;
    const width = widths.get(module);
    if (!width) return `the graph does not say how wide ${module} is`;
    const tokens = Math.ceil(latent.height / site.resolution) * Math.ceil(latent.width / site.resolution);
    sites.push({ module, tokens, heads: site.heads, width });
  }
  return sites;
}

/** Self-attention widths by module, per graph file (by its identity: a file replaced in place is read again). */
const widthsByGraph = new Map<string, Map<string, number>>();

function selfAttentionWidths(file: string): Map<string, number> {
  const id = graphIdentity(file);
  let widths = widthsByGraph.get(id);
  if (!widths) {
    const sites = findAttentionSites(readGraphFile(file).model).sites.filter((s) => s.kind === 'self');
    widths = new Map(sites.map((s) => [s.module, s.heads * s.headDim]));
    widthsByGraph.set(id, widths);
  }
  return widths;
}

/** The UNet's weights on disk, which a session holds in memory: its graph file and external data. */
export function unetWeightsBytes(model: ModelInfo): number {
  const dir = path.join(model.dir, 'unet');
  const external = model.variant.externalData.unet;
  return ['model.onnx', ...(external ? [external] : [])].reduce(
    (sum, f) => sum + fs.statSync(path.join(dir, f)).size,
    0,
  );
}
