// Long clips in overlapping chunks. Memory is bounded by the chunk (frames, trajectory, latents), so clip length is
// bounded only by time; but chunks edited independently disagree a little where they meet, and that shows as a
// jump at every seam. Each chunk after the first therefore starts with the last `overlap` source frames of the one
// before, and over those frames the two edits are crossfaded: the newer chunk's weight rises linearly,
// (j + 1)/(overlap + 1) for overlap frame j, so neither chunk's edge frames are used alone.
//
// With cross-frame attention every frame reads the keys and values of the clip's frame 0. Carrying those K/V from
// chunk to chunk would mean every step, site and branch of them (gigabytes at SD 1.5 sizes), and chunks run as
// separate worker tasks. What is carried instead is small: frame 0's inverted trajectory and its latent after every
// denoising step of the first chunk (2K latents, ~6.5 MB at 512 px and 50 steps) and its mask. Every later chunk runs
// frame 0 ahead of its own frames, only so that they can read its K/V: after each step its latent is set back to the
// first chunk's, so the UNet sees exactly what it saw there and gives the same K/V, whatever the consistency stages
// did to frame 0 beside its first-chunk neighbours. Its output is dropped. Cost per later chunk: K steps × the UNet
// items a frame takes, and one more VAE decode; no inversion, no automatic mask, no cache entry.
import { batches, type ImageBatch } from '../diffusion/images';
import { strengthSteps } from '../diffusion/scheduler';
import type { DiffusionModel } from '../models/sd-model';
import { denoiseFromInversion, invertFrames } from './loop/inversion-loop';
import { latentMask } from './masks/latent-mask';
import { ProgressTracker } from './loop/progress';
import { EditState, type EditContext, type EditStage } from './loop/stage';
import type { InversionEditParams } from './pipelines/inversion-edit';
import { editStages } from './stages';
import type {
  EditOutput,
  EditParams,
  InvertedTrajectory,
  MethodOutput,
  Progress,
  RunHooks,
  SourceSteps,
  TrajectoryStore,
} from './types';

export interface ChunkSpan {
  /** First frame of the chunk in the clip, overlap included. */
  start: number;
  count: number;
  /** Leading frames that repeat the previous chunk's last frames. */
  lead: number;
}

/** Chunks of `chunk` new frames each, every one after the first preceded by `overlap` frames of the previous. */
export function planChunks(total: number, chunk: number, overlap: number): ChunkSpan[] {
  if (!Number.isInteger(chunk) || chunk < 1) throw new Error(`chunk size must be a positive integer, got ${chunk}`);
  if (!Number.isInteger(overlap) || overlap < 0)
    throw new Error(`chunk overlap must be a non-negative integer, got ${overlap}`);
  const spans: ChunkSpan[] = [];
  for (let s = 0; s < total; s += chunk) {
    const lead = s === 0 ? 0 : Math.min(overlap, s);
    spans.push({ start: s - lead, count: Math.min(chunk, total - s) + lead, lead });
  }
  return spans;
}

/** Weight of the newer chunk at each of `lead` overlap frames. */
export function crossfadeWeights(lead: number): number[] {
  return Array.from({ length: lead }, (_, j) => (j + 1) / (lead + 1));
}

/** A batch of n frames of `per` values each (an ImageBatch's data, a [n, h, w] matte). */
interface Planes {
  n: number;
  per: number;
  data: Float32Array;
}

function tail(p: Planes, count: number): Planes {
  return { n: count, per: p.per, data: p.data.slice((p.n - count) * p.per) };
}

/**
 * Source side: prefixes each decoded chunk with the tail of the previous one. Holds only `overlap` frames. (A
 * user matte is sliced by frame range instead: it is already in memory for the whole range.)
 */
export class OverlapFeeder {
  private last?: ImageBatch;
  constructor(readonly overlap: number) {}

  next(chunk: ImageBatch): { frames: ImageBatch; lead: number } {
    const per = 3 * chunk.height * chunk.width;
    const lead = this.last ? Math.min(this.overlap, this.last.n) : 0;
    const data = new Float32Array((lead + chunk.n) * per);
    if (lead) data.set(this.last!.data.subarray((this.last!.n - lead) * per), 0);
    data.set(chunk.data, lead * per);
    const frames: ImageBatch = { n: lead + chunk.n, height: chunk.height, width: chunk.width, data };
    // A copy of the tail, so the caller may hand `frames` away (transfer it to the worker).
    const keep = Math.min(this.overlap, frames.n);
    this.last = { n: keep, height: chunk.height, width: chunk.width, data: data.slice((frames.n - keep) * per) };
    return { frames, lead };
  }
}

/**
 * Result side: crossfades each edited chunk's leading frames with the previous chunk's held-back tail and returns
 * the frames that are final. The last `overlap` frames of every chunk are held until the next chunk (or flush()).
 * An optional matte per frame ([n, per]) is stitched the same way.
 */
export class OverlapStitcher {
  private held?: { frames: ImageBatch; mask?: Planes };
  constructor(readonly overlap: number) {}

  push(
    edited: ImageBatch,
    lead: number,
    mask?: { data: Float32Array; per: number },
  ): { frames: ImageBatch; mask?: Float32Array } {
    const per = 3 * edited.height * edited.width;
    const data = Float32Array.from(edited.data);
    const m: Planes | undefined = mask && { n: edited.n, per: mask.per, data: Float32Array.from(mask.data) };
    if (lead > 0) {
      const held = this.held;
      if (!held || held.frames.n !== lead)
        throw new Error(`overlap stitcher: chunk repeats ${lead} frames but ${held?.frames.n ?? 0} are held`);
      crossfadeWeights(lead).forEach((wNew, j) => {
        blendInto(data, j * per, held.frames.data, j * per, per, wNew);
        if (m && held.mask) blendInto(m.data, j * m.per, held.mask.data, j * m.per, m.per, wNew);
      });
    }
    const hold = Math.min(this.overlap, edited.n);
    const ready = edited.n - hold;
    this.held = {
      frames: { n: hold, height: edited.height, width: edited.width, data: data.slice(ready * per) },
      mask: m && tail(m, hold),
    };
    return {
      frames: { n: ready, height: edited.height, width: edited.width, data: data.slice(0, ready * per) },
      mask: m && m.data.slice(0, ready * m.per),
    };
  }

  /** The held-back frames of the last chunk (none when nothing is held). */
  flush(): { frames: ImageBatch; mask?: Float32Array } | undefined {
    const held = this.held;
    this.held = undefined;
    if (!held || held.frames.n === 0) return undefined;
    return { frames: held.frames, mask: held.mask?.data };
  }
}

/** dst[d..d+len) ← w·dst + (1 − w)·old[o..o+len). */
function blendInto(dst: Float32Array, d: number, old: Float32Array, o: number, len: number, w: number): void {
  for (let i = 0; i < len; i++) dst[d + i] = w * dst[d + i] + (1 - w) * old[o + i];
}

/**
 * A whole in-memory clip edited chunk by chunk with overlap and crossfade: the same path the job runner takes with a
 * decoder and an encoder, for evaluation and tests. `edit` sees each chunk with its lead frames included, and the
 * first anchor an earlier chunk handed back (inversionChunk with `keep`), to carry.
 */
export async function editInChunks(
  frames: ImageBatch,
  chunk: number,
  overlap: number,
  edit: (
    chunk: ImageBatch,
    span: ChunkSpan,
    anchor: CarriedAnchor | undefined,
  ) => Promise<{ frames: ImageBatch; mask?: Float32Array; anchor?: CarriedAnchor }>,
): Promise<{ frames: ImageBatch; mask?: Float32Array }> {
  const per = 3 * frames.height * frames.width;
  const stitcher = new OverlapStitcher(overlap);
  const parts: ImageBatch[] = [];
  const masks: Float32Array[] = [];
  let maskPer = 0;
  const collect = (r: { frames: ImageBatch; mask?: Float32Array }) => {
    parts.push(r.frames);
    if (r.mask) masks.push(r.mask);
  };
  let anchor: CarriedAnchor | undefined;
  for (const span of planChunks(frames.n, chunk, overlap)) {
    const input: ImageBatch = {
      n: span.count,
      height: frames.height,
      width: frames.width,
      data: frames.data.slice(span.start * per, (span.start + span.count) * per),
    };
    const r = await edit(input, span, anchor);
    anchor ??= r.anchor;
    if (r.mask) maskPer = r.mask.length / r.frames.n;
    collect(stitcher.push(r.frames, span.lead, r.mask ? { data: r.mask, per: maskPer } : undefined));
  }
  const last = stitcher.flush();
  if (last) collect(last);
  const out = new Float32Array(frames.n * per);
  let at = 0;
  for (const p of parts) {
    out.set(p.data, at);
    at += p.data.length;
  }
  let mask: Float32Array | undefined;
  if (masks.length) {
    mask = new Float32Array(frames.n * maskPer);
    let mAt = 0;
    for (const m of masks) {
      mask.set(m, mAt);
      mAt += m.length;
    }
  }
  return { frames: { n: frames.n, height: frames.height, width: frames.width, data: out }, mask };
}

/** Listed among a chunk's stages when it ran the clip's anchor frame ahead of its own. */
export const CARRIED_ANCHOR_STAGE = 'cross-frame anchor carried from the first chunk';

/** The clip's anchor frames as the first chunk edited them: what a later chunk needs to run them again. */
export interface CarriedAnchor {
  /** Their inverted trajectory. */
  trajectory: InvertedTrajectory;
  /** Their latents after each denoising step but the last, [n, C, h, w] each: the UNet's input at the next step. */
  path: Float32Array[];
  /** Their latent mask [n, h, w] as the first chunk applied it; absent when it had none. */
  mask?: Float32Array;
}

/**
 * What a chunk of an edit with cross-frame attention takes and gives beside its frames: the first chunk hands back its
 * leading frames as the clip's anchor (`keep`), every later chunk runs them ahead of its own frames (`anchor`).
 */
export interface ChunkCarry {
  /** Hand back this many leading frames of the chunk as the anchor. */
  keep?: number;
  /** The clip's anchor, run ahead of the chunk's frames and left out of what comes back. */
  anchor?: CarriedAnchor;
}

export interface ChunkOutput extends MethodOutput {
  /** With `keep`: the anchor for the chunks after this one. */
  anchor?: CarriedAnchor;
}

/** Stages of this file's own that the result does not list (it lists CARRIED_ANCHOR_STAGE instead). */
const RECORD_STAGE = 'anchor path (recorded)';
const REPLAY_STAGE = 'anchor path (replayed)';

/**
 * The inversion edit of one chunk as the worker runs it (pipelines/inversion-edit.ts inversionMethod), with its carry.
 * The store holds the chunk's own trajectory only, keyed by its own frames as without a carry: the anchor frames are
 * prepended after it is read and never written back, so a cache entry means the same to whoever reads it.
 */
export async function inversionChunk(
  model: DiffusionModel,
  frames: ImageBatch,
  p: InversionEditParams,
  carry: ChunkCarry,
  hooks: RunHooks = {},
  store?: TrajectoryStore,
): Promise<ChunkOutput> {
  const anchor = carry.anchor;
  if (anchor && carry.keep) throw new Error('a chunk either keeps the anchor frames or carries them, not both');
  const lead = anchor?.trajectory.n ?? 0;
  const cached = store?.get();
  const K = strengthSteps(p.steps, p.strength);
  const inversionUnits = cached ? 0 : batches(frames.n, p.batchSize).length * (1 + K);
  const editUnits = batches(frames.n + lead, p.batchSize).length * (K + (p.reconstruct ? 2 : 1));
  // Progress counts the chunk's own frames: the edit's frame numbers are shifted past the anchor.
  let shift = 0;
  const track = new ProgressTracker(inversionUnits + editUnits, frames.n, {
    shouldStop: () => hooks.shouldStop?.() ?? false,
    onProgress: (q: Progress) => hooks.onProgress?.({ ...q, frame: Math.max(0, q.frame - shift) }),
  });
  const own = cached ?? (await invertFrames(model, frames, p, hooks, track));
  shift = lead;
  const keep = carry.keep ? Math.min(carry.keep, own.n) : 0;
  const recorder = keep ? recordPath(keep) : undefined;
  const traj = anchor ? withAnchor(anchor.trajectory, own) : own;
  const stages = anchor ? carriedAnchorStages(p, anchor) : [...editStages(p), ...(recorder ? [recorder.stage] : [])];
  // An explicit mask goes in through the replay stage, with the anchor's in front of it.
  const params = anchor ? { ...p, mask: undefined } : p;
  const { sourceSteps, ...edited } = await denoiseFromInversion(model, traj, params, stages, hooks, track);
  const ranStages = (edited.stages ?? []).filter((s) => s !== RECORD_STAGE && s !== REPLAY_STAGE);
  const hw = own.height * own.width;
  const out: ChunkOutput = {
    ...(lead ? withoutLeading(edited, lead, hw) : edited),
    stages: anchor ? [...ranStages, CARRIED_ANCHOR_STAGE] : ranStages,
    ...(recorder
      ? {
          anchor: {
            trajectory: framesOf(own, 0, keep, true),
            path: recorder.path,
            ...(edited.latentMask ? { mask: edited.latentMask.slice(0, keep * hw) } : {}),
          },
        }
      : {}),
  };
  const steps = sourceSteps && framesOfSteps(sourceSteps, own, lead, own.n);
  if (cached) {
    if (steps) store!.put({ ...cached, sourceSteps: steps });
    return { ...out, cacheHit: true };
  }
  const trajectory = { ...own, sourceSteps: steps };
  if (!store) return { ...out, trajectory };
  store.put(trajectory);
  return { ...out, cacheHit: false };
}

/** Frames [from, from + n) of a trajectory, without its source steps: views, or copies that own their buffers. */
function framesOf(t: InvertedTrajectory, from: number, n: number, copy: boolean): InvertedTrajectory {
  const per = t.channels * t.height * t.width;
  const cut = (l: Float32Array) =>
    copy ? l.slice(from * per, (from + n) * per) : l.subarray(from * per, (from + n) * per);
  const { sourceSteps: _steps, ...rest } = t;
  return { ...rest, n, latents: t.latents.map(cut) };
}

function framesOfSteps(s: SourceSteps, t: InvertedTrajectory, from: number, n: number): SourceSteps {
  const per = t.channels * t.height * t.width;
  return { guidance: s.guidance, levels: s.levels.map((l) => l.slice(from * per, (from + n) * per)) };
}

/** Why an anchor trajectory cannot run with a chunk's, or undefined. */
function anchorMismatch(a: InvertedTrajectory, t: InvertedTrajectory): string | undefined {
  if (a.modelDir !== t.modelDir) return `it was inverted with ${a.modelDir}, the chunk with ${t.modelDir}`;
  if (a.width !== t.width || a.height !== t.height || a.channels !== t.channels)
    return `its latents are ${a.channels}×${a.width}×${a.height}, the chunk's ${t.channels}×${t.width}×${t.height}`;
  if (a.sourcePrompt !== t.sourcePrompt || a.steps !== t.steps || a.strength !== t.strength)
    return 'it was inverted with another source prompt, steps or strength';
  if (a.latents.length !== t.latents.length || a.timesteps.some((v, k) => v !== t.timesteps[k]))
    return `its ${a.latents.length - 1} levels are not the chunk's ${t.latents.length - 1}`;
  return undefined;
}

/** The anchor's frames followed by the chunk's, as one trajectory to edit (without source steps: see below). */
function withAnchor(a: InvertedTrajectory, t: InvertedTrajectory): InvertedTrajectory {
  const problem = anchorMismatch(a, t);
  if (problem) throw new Error(`the carried anchor frame does not fit this chunk: ${problem}`);
  const per = t.channels * t.height * t.width;
  const latents = t.latents.map((l, k) => {
    const both = new Float32Array((a.n + t.n) * per);
    both.set(a.latents[k]);
    both.set(l, a.n * per);
    return both;
  });
  // Cross-frame attention changes the prediction: the loop would not use recorded source steps anyway.
  const { sourceSteps: _steps, ...rest } = t;
  return { ...rest, n: a.n + t.n, latents };
}

/** The edit's output without its first `lead` frames (the anchor ran only to be read). */
function withoutLeading<T extends Omit<EditOutput, 'sourceSteps'>>(o: T, lead: number, hw: number): T {
  const images = (b: ImageBatch): ImageBatch => ({
    n: b.n - lead,
    height: b.height,
    width: b.width,
    data: b.data.slice(lead * 3 * b.height * b.width),
  });
  return {
    ...o,
    frames: images(o.frames),
    ...(o.reconstruction ? { reconstruction: images(o.reconstruction) } : {}),
    ...(o.latentMask ? { latentMask: o.latentMask.slice(lead * hw) } : {}),
  };
}

/**
 * Last of the first chunk's stages: after every step but the last, the leading frames' latents as the step and every
 * stage before this one left them.
 */
function recordPath(frames: number): { stage: EditStage; path: Float32Array[] } {
  const path: Float32Array[] = [];
  let size = 0;
  let K = 0;
  const stage: EditStage = {
    name: RECORD_STAGE,
    plan(ctx) {
      size = frames * ctx.traj.channels * ctx.traj.height * ctx.traj.width;
      K = ctx.traj.latents.length - 1;
      return true;
    },
    afterStep(z, step) {
      if (step < K) path.push(z.slice(0, size));
    },
  };
  return { stage, path };
}

/**
 * First of a later chunk's stages: the anchor's frames get the first chunk's latents back after every step, before any
 * other stage reads them (anchor statistics takes frame 0's). It also sets an explicit mask: the anchor's, then the
 * chunk's own frames'.
 */
function replayPath(anchor: CarriedAnchor, mask: EditParams['mask']): EditStage {
  let K = 0;
  return {
    name: REPLAY_STAGE,
    plan({ traj, state }) {
      K = traj.latents.length - 1;
      if (anchor.path.length !== K - 1)
        throw new Error(`the carried anchor has ${anchor.path.length + 1} steps, this chunk's edit ${K}`);
      if (mask)
        state.mask = withAnchorMask(anchor, latentMask(mask, traj.n - anchor.trajectory.n, traj.height, traj.width));
      return true;
    },
    afterStep(z, step) {
      if (step < K) z.set(anchor.path[step - 1]);
    },
  };
}

/** The anchor's mask (the whole frame where the first chunk had none) in front of the chunk's own. */
function withAnchorMask(anchor: CarriedAnchor, own: Float32Array | undefined): Float32Array {
  const t = anchor.trajectory;
  const lead = anchor.mask ?? new Float32Array(t.n * t.height * t.width).fill(1);
  const out = new Float32Array(lead.length + (own?.length ?? 0)).fill(1);
  out.set(lead);
  if (own) out.set(own, lead.length);
  return out;
}

/**
 * Stages that run on the chunk's own frames only. Mask smoothing and latent correction pair each frame with the ones
 * beside it, and would pair frame 0 with the chunk's first frame, which may lie anywhere later in the clip; the
 * automatic mask and the decoder features would only spend UNet calls on a frame whose mask comes with it. On the
 * chunk's own frames they compute exactly what they would without the anchor.
 */
const CHUNK_ONLY_STAGES = ['decoder features', 'automatic mask', 'mask refinement', 'latent correction'];

/**
 * The edit's stages for a chunk that carries the clip's anchor in front of its own frames. The stages above run on the
 * chunk's own frames; every other one sees the anchor as the chunk's leading frames, as an unchunked edit shows frame
 * 0: cross-frame attention anchors on it, anchor statistics take its statistics, and the attention methods act on its
 * UNet calls as in the first chunk, so its K/V come out the same.
 */
export function carriedAnchorStages(p: EditParams, anchor: CarriedAnchor): EditStage[] {
  const stages = editStages(p);
  const own = new OwnFrames(anchor);
  for (const name of CHUNK_ONLY_STAGES) {
    const at = stages.findIndex((s) => s.name === name);
    if (at < 0) throw new Error(`carried anchors: the edit has no stage "${name}" to keep off them (long-clip.ts)`);
    stages[at] = own.wrap(stages[at]);
  }
  return [replayPath(anchor, p.mask), ...stages];
}

/** The chunk's own frames as an edit context of their own, over views of the chunk's arrays, shared by the wrapped stages. */
class OwnFrames {
  private ctx?: EditContext;
  /** The mask the chunk's state last got from here (or gave), to tell whether a stage made a new one. */
  private given?: Float32Array;
  constructor(private readonly anchor: CarriedAnchor) {}

  wrap(inner: EditStage): EditStage {
    if (inner.beforeUnet || inner.afterUnet || inner.partition || inner.passes?.length || inner.outputs?.length)
      throw new Error(`carried anchors: the stage "${inner.name}" hooks UNet calls and cannot run on part of a chunk`);
    const lead = this.anchor.trajectory.n;
    let active = false;
    return {
      name: inner.name,
      plan: async (ctx) => {
        const part = this.partOf(ctx);
        const planned = await inner.plan(part);
        this.push(part.state, ctx.state);
        active = planned === true;
        return planned;
      },
      afterStep: (z, step) => {
        if (active) inner.afterStep?.(z.subarray((z.length / (this.ctx!.traj.n + lead)) * lead), step);
      },
    };
  }

  private partOf(whole: EditContext): EditContext {
    if (this.ctx) return this.ctx;
    const lead = this.anchor.trajectory.n;
    const traj = framesOf(whole.traj, lead, whole.traj.n - lead, false);
    const state = new EditState(traj);
    const hw = traj.height * traj.width;
    state.mask = this.given = whole.state.mask?.subarray(lead * hw);
    this.ctx = { ...whole, traj, state };
    return this.ctx;
  }

  /** A mask the chunk's frames got here, into the chunk's state behind the anchor's; and what was matched by. */
  private push(part: EditState, whole: EditState): void {
    whole.correspondences ??= part.correspondences;
    if (part.mask === this.given) return;
    this.given = part.mask;
    whole.mask = withAnchorMask(this.anchor, part.mask);
  }
}
