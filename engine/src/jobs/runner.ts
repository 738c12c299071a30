// Runs one job end to end: probe → decode the range in chunks → edit each chunk in the compute worker (reusing a
// cached inversion when there is one) → encode → rename into place. Memory is bounded by the chunk, not the clip.
// Shared by the engine's queue and by `reshoot edit`, so both behave the same.
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  ConsistencySpec,
  type JobMemory,
  type JobProgress,
  type JobRequest,
  type JobResult,
  type JobTimings,
} from '../api/schemas';
import type { MaskBatch } from '../diffusion/images';
import { wordMapSites, wordMaskProblem } from '../editing/stages/auto-mask';
import { crossFrameSites } from '../editing/stages/cross-frame';
import { reweightProblem, reweightSites } from '../editing/stages/reweight';
import { structureSites } from '../editing/stages/structure-lock';
import { tokenFlowSites } from '../editing/stages/token-flow';
import { attentionConflict } from '../editing/stages';
import { wordSwapProblem, wordSwapSites } from '../editing/stages/word-swap';
import { CanceledError, type Progress } from '../editing/types';
import { decodeFrames, type DecodeOptions } from '../media/decode';
import { createEncoder } from '../media/encode';
import { loadMask, type MaskSpec, type MaskTarget } from '../media/mask-input';
import { checkFfmpegPaths, checkNotAnInput, checkOutputTarget, inputClash } from '../media/output-target';
import { hasAlpha, probeMedia, type MediaInfo } from '../media/probe';
import { selectFrames, type FrameSelection } from '../media/frame-times';
import { workingSize } from '../media/working-size';
import type { ModelInfo } from '../models/sd-model';
import type { PipelineWorker, RunningTask } from '../worker/pipeline-worker';
import type { TaskResult } from '../worker/protocol';
import { ChunkOverlap } from './chunk-overlap';
import {
  currentBudget,
  measuresMemory,
  planMemory,
  probeKey,
  tokenFlowChunkFrames,
  type PlanInput,
} from './memory-plan';
import { cachedMemoryCost, memoryCost } from '../models/memory-probe';
import { fullResOutput, workingSizeOutput, type OutputSink } from './full-res';
import { InversionCache } from '../store/inversion-cache';
import { matteFolderProblem } from './matte-output';
import { chunkTask } from './method-tasks';
import { latentPreviewPng } from './preview';
import { ProblemError } from './service';

/** Frames edited per chunk: bounds memory (frames, trajectory) whatever the clip length. */
export const CHUNK_FRAMES = 16;

/**
 * Frames per chunk for this job. With TokenFlow as many as its memory allows (memory-plan.ts tokenFlowChunkFrames),
 * up to 64: its keyframes carry one edit across the frames of a chunk, so a seam is where two independent edits meet.
 */
function chunkFramesFor(req: JobRequest, plan: JobPlan, model: ModelInfo, limitBytes: number | undefined): number {
  if (req.method !== 'inversion' || !req.attention?.tokenFlow) return CHUNK_FRAMES;
  return tokenFlowChunkFrames({
    req,
    model,
    latent: latentOf(model, plan),
    mediaBytes: 0,
    budget: currentBudget(limitBytes),
    frameCount: plan.frameCount,
    overlap: req.consistency?.chunkOverlap ?? 0,
  });
}

/** What a request resolves to against the actual media, computed before a job is queued. */
export interface JobPlan {
  info: MediaInfo;
  startFrame: number;
  frameCount: number;
  /** The first frame's time after the video stream's first frame, and the range's length: what the audio is cut to. */
  inSec: number;
  durationSec: number;
  /** Variable frame rate: the frames' own times and the decoder's seek (media/frame-times.ts). */
  variable?: FrameSelection['variable'];
  width: number;
  height: number;
  outWidth: number;
  outHeight: number;
  outputPath: string;
  strength: number;
  /** Wall time of the media probe, reported in the job's timings. */
  probeMs: number;
}

export interface RunContext {
  worker: PipelineWorker;
  cache?: InversionCache;
  seed: number;
  onProgress: (p: JobProgress) => void;
  onPreview?(png: Buffer): void;
  onWarning?(w: string): void;
  /** Set by the runner: cancels what is running now. */
  cancelHook?: { cancel(): void };
  /** `--max-memory`: the engine's peak may not exceed this (bytes), whatever is free. */
  memoryLimitBytes?: number;
  /**
   * Render nodes: the names the farm knows the source and the model by (the engine's path, the model's id), so nodes
   * that share an inversion cache find each other's entries though they mount the files and the models elsewhere.
   */
  cacheNames?: { source: string; model: string };
  /** Awaited just before the result is renamed into place: a render node records there that this try wrote it. */
  beforeCommit?(): Promise<void>;
}

/** The job's box or file mask as media/mask-input.ts takes it; undefined for none and for the automatic mask. */
export function maskSpecOf(mask: JobRequest['mask']): MaskSpec | undefined {
  if (mask.type === 'box') return { kind: 'box', x: mask.x, y: mask.y, w: mask.w, h: mask.h };
  if (mask.type === 'file') return { kind: 'file', path: mask.path };
  return undefined;
}

/** What a matte must match for this plan: the frames, the working size, the rate and the source's display size. */
export function maskTarget(plan: JobPlan): MaskTarget {
  return {
    frames: plan.frameCount,
    width: plan.width,
    height: plan.height,
    startFrame: plan.startFrame,
    fps: plan.info.video.fps,
    sourceWidth: plan.outWidth,
    sourceHeight: plan.outHeight,
  };
}

export function defaultStrength(req: JobRequest): number {
  return req.strength ?? (req.method === 'sdedit' ? 0.6 : req.method === 'fast' ? 0.5 : 1);
}

/** Pixel multiple the model needs: latents must survive the UNet's three 2× downsamplings. */
export function sizeMultiple(model: ModelInfo): number {
  return model.vaeScale === 1 ? 8 : model.vaeScale * 8;
}

export function defaultOutputPath(req: JobRequest, jobId: string, rendersDir: string): string {
  const ext = req.output?.codec === 'prores' ? '.mov' : '.mp4';
  if (req.output?.path) return path.resolve(req.output.path);
  let base = path.basename(req.source.path).replace(/\.[^.]+$/, '');
  // A long source name must still leave room for the job id and the engine's temporary names (255 bytes a name).
  // Cut whole characters: half of a surrogate pair (an emoji, rarer CJK) would name the file with U+FFFD on disk while
  // the job records the lone half, so the path reported back and the temp-file sweep would miss the real file.
  const chars = Array.from(base);
  while (Buffer.byteLength(chars.join('')) > 120) chars.pop();
  base = chars.join('');
  const folder = req.output?.folder ? path.resolve(req.output.folder) : rendersDir;
  return path.join(folder, `${base}.reshoot-${jobId}${ext}`);
}

/**
 * Checks a request against the media and the file system; throws ProblemError (4xx) with the field at fault. `media`:
 * the source as the caller has just probed it (the CLI probes first to know the clip's length).
 */
export async function planJob(
  req: JobRequest,
  model: ModelInfo,
  outputPath: string,
  media?: MediaInfo,
  memoryLimitBytes?: number,
): Promise<JobPlan> {
  const probeStart = performance.now();
  const info = media ?? (await probeMedia(req.source.path));
  const probeMs = performance.now() - probeStart;
  const range = await selectFrames(info, { in: req.source.in, out: req.source.out });
  let frameCount = range.frameCount;
  let durationSec = range.outSec - range.inSec;
  let variable = range.variable;
  let native = model.nativeSize;
  if (req.preview) {
    frameCount = Math.min(frameCount, req.preview.frames);
    if (variable && frameCount < range.frameCount) {
      durationSec = variable.times[frameCount];
      variable = { ...variable, times: variable.times.slice(0, frameCount) };
    } else if (!variable) {
      durationSec = (frameCount * info.video.fps.den) / info.video.fps.num;
    }
    native = Math.max(sizeMultiple(model), Math.round(native * req.preview.scale));
  }
  const size = workingSize(info.video.displayWidth, info.video.displayHeight, native, sizeMultiple(model));
  if (req.mask.type === 'auto' && req.method !== 'inversion') {
    throw ProblemError.of(
      422,
      'Mask not available',
      `the automatic mask is derived from the inversion; use method "inversion", or a "box" or "file" mask with ${req.method === 'fast' ? 'the fast preset' : 'SDEdit'}`,
      'mask.type',
    );
  }
  if (req.mask.type === 'auto' && req.mask.from && req.mask.from !== 'difference') {
    const sites = wordMapSites(model);
    if (typeof sites === 'string') throw ProblemError.of(422, 'Mask not available', sites, 'mask.from');
    const problem = wordMaskProblem(req.sourcePrompt);
    if (problem) throw ProblemError.of(422, 'Source prompt needed', problem, 'sourcePrompt');
  }
  const crossFrame = req.attention?.crossFrame;
  if (crossFrame) {
    const sites = req.method === 'inversion' ? crossFrameSites(model, crossFrame.layers) : undefined;
    if (typeof sites !== 'object')
      throw ProblemError.of(
        422,
        'Method not available',
        sites ?? `cross-frame attention is a stage of the inversion edit; use method "inversion" or turn it off`,
        'attention.crossFrame',
      );
  }
  const reweight = req.attention?.reweight ?? [];
  if (reweight.length) {
    const sites = req.method === 'inversion' ? reweightSites(model) : undefined;
    const problem =
      typeof sites === 'object'
        ? reweightProblem(req.prompt, reweight)
        : (sites ??
          'attention re-weighting is a stage of the inversion edit; use method "inversion" or leave it empty');
    const title = typeof sites === 'object' ? 'Word not in prompt' : 'Method not available';
    if (problem) throw ProblemError.of(422, title, problem, 'attention.reweight');
  }
  if (req.attention?.structure) {
    const sites = req.method === 'inversion' ? structureSites(model) : undefined;
    if (typeof sites !== 'object')
      throw ProblemError.of(
        422,
        'Method not available',
        sites ?? 'structure lock is a stage of the inversion edit; use method "inversion" or set it to 0',
        'attention.structure',
      );
  }
  if (req.attention?.tokenFlow) {
    const sites = req.method === 'inversion' ? tokenFlowSites(model) : undefined;
    if (typeof sites !== 'object')
      throw ProblemError.of(
        422,
        'Method not available',
        sites ?? 'TokenFlow is a stage of the inversion edit; use method "inversion" or turn it off',
        'attention.tokenFlow',
      );
  }
  const conflict = req.attention && attentionConflict(req.attention);
  if (conflict) throw ProblemError.of(422, 'Methods do not combine', conflict.detail, conflict.field);
  if (req.attention?.wordSwap) {
    const sites = req.method === 'inversion' ? wordSwapSites(model) : undefined;
    if (typeof sites !== 'object')
      throw ProblemError.of(
        422,
        'Method not available',
        sites ?? 'word swap is a stage of the inversion edit; use method "inversion" or turn it off',
        'attention.wordSwap',
      );
    const problem = wordSwapProblem(req.sourcePrompt);
    if (problem) throw ProblemError.of(422, 'Source prompt needed', problem, 'sourcePrompt');
  }
  if (req.fast && req.method !== 'fast') {
    throw ProblemError.of(
      400,
      'Option not used',
      `"fast" sets the fast preset's steps; it applies with method "fast", not "${req.method}"`,
      'fast',
    );
  }
  // A PNG-sequence pattern (matte_%06d.png, what mattePath returns) names no file of its own; loadMask checks its images.
  if (req.mask.type === 'file' && !/%0?\d*d/.test(path.basename(req.mask.path)) && !fs.existsSync(req.mask.path)) {
    throw ProblemError.of(
      422,
      'Mask file not found',
      `${req.mask.path} does not exist; give the path of a PNG matte, a matte video or a PNG sequence pattern`,
      'mask.path',
    );
  }
  // Never write over an input (the source, a matte) or into the engine's state, whatever output.overwrite says.
  const clash = inputClash(outputPath, {
    source: req.source.path,
    mask: req.mask.type === 'file' ? req.mask.path : undefined,
  });
  if (clash)
    throw ProblemError.of(
      422,
      'Output not allowed',
      clash,
      req.output?.folder && !req.output.path ? 'output.folder' : 'output.path',
      'output-not-allowed',
    );
  const matteProblem =
    req.method === 'inversion' && req.mask.type === 'auto'
      ? matteFolderProblem(outputPath, req.output?.overwrite ?? false)
      : undefined;
  if (matteProblem)
    throw ProblemError.of(
      409,
      'Matte folder exists',
      matteProblem,
      req.output?.folder && !req.output.path ? 'output.folder' : 'output.path',
      'output-exists',
    );
  const folder = path.dirname(outputPath);
  if (!fs.existsSync(folder)) {
    if (req.output?.path)
      throw ProblemError.of(
        422,
        'Output folder missing',
        `${folder} does not exist; create it or choose another output path`,
        'output.path',
      );
    fs.mkdirSync(folder, { recursive: true });
  }
  try {
    fs.accessSync(folder, fs.constants.W_OK);
  } catch {
    throw ProblemError.of(
      422,
      'Output not writable',
      `cannot write into ${folder}; choose a folder you can write to`,
      req.output?.path ? 'output.path' : 'output.folder',
    );
  }
  if (fs.existsSync(outputPath) && !req.output?.overwrite) {
    throw ProblemError.of(
      409,
      'Output exists',
      `${outputPath} already exists; choose another name or set output.overwrite`,
      'output.path',
    );
  }
  const plan: JobPlan = {
    info,
    startFrame: range.startFrame,
    frameCount,
    inSec: range.inSec,
    durationSec,
    ...(variable ? { variable } : {}),
    width: size.width,
    height: size.height,
    outWidth: info.video.displayWidth,
    outHeight: info.video.displayHeight,
    outputPath,
    strength: defaultStrength(req),
    probeMs,
  };
  // Where the model's cost at this size is known already, a job that cannot fit is refused now, not when it starts.
  const measured = measuresMemory(model) && cachedMemoryCost(memoryKey(model, plan));
  if (measured)
    memoryPlan(req, plan, model, measured, memoryLimitBytes, chunkFramesFor(req, plan, model, memoryLimitBytes));
  return plan;
}

const memoryKey = (model: ModelInfo, plan: JobPlan) => probeKey(model, latentOf(model, plan), CHUNK_FRAMES);

function latentOf(model: ModelInfo, plan: JobPlan): PlanInput['latent'] {
  return { height: plan.height / model.vaeScale, width: plan.width / model.vaeScale };
}

/**
 * The frames a job holds besides the model: the chunk being edited and the one decoded ahead, at working size (float
 * RGB), and at output size when compositing at full resolution (8 or 16 bits a channel).
 */
function mediaBytes(req: JobRequest, plan: JobPlan, chunkFrames: number): number {
  const working = plan.width * plan.height * 3 * 4;
  const full =
    (req.output?.composite ?? 'full') === 'full'
      ? plan.outWidth * plan.outHeight * 3 * (plan.info.video.bitDepth > 8 ? 2 : 1)
      : 0;
  return 2 * Math.min(plan.frameCount, chunkFrames) * (working + full);
}

/** The job's memory plan (memory-plan.ts), or the refusal as a 422 naming batchSize. */
function memoryPlan(
  req: JobRequest,
  plan: JobPlan,
  model: ModelInfo,
  cost: PlanInput['cost'],
  limitBytes: number | undefined,
  chunkFrames: number,
): JobMemory {
  const outcome = planMemory({
    req,
    model,
    latent: latentOf(model, plan),
    mediaBytes: mediaBytes(req, plan, chunkFrames),
    chunkFrames: Math.min(plan.frameCount, chunkFrames + (req.consistency?.chunkOverlap ?? 0)),
    ...(cost ? { cost } : {}),
    budget: currentBudget(limitBytes),
  });
  if (!outcome.ok) throw ProblemError.of(422, 'Not enough memory', outcome.detail, 'batchSize');
  return outcome.memory;
}

/** Where a result may be written (media/output-target.ts), resolved through links as the file system is now. */
function checkWriteTarget(req: JobRequest, plan: JobPlan): void {
  // Windows: the ffmpeg in use may have changed since the job was queued (FFMPEG_PATH, an engine restart).
  checkFfmpegPaths({
    source: req.source.path,
    mask: req.mask.type === 'file' ? req.mask.path : undefined,
    output: plan.outputPath,
  });
  checkNotAnInput(plan.outputPath, {
    source: req.source.path,
    mask: req.mask.type === 'file' ? req.mask.path : undefined,
  });
  checkOutputTarget(plan.outputPath, {
    overwrite: req.output?.overwrite ?? false,
    mayCreateFolder: false,
    videoName: !!req.output?.path,
  });
}

/**
 * How to decode exactly the plan's frames at a given size, `chunkFrames` at a time (the working-size and the
 * full-size decode share it).
 */
export function rangeDecodeOptions(
  plan: JobPlan,
  width: number,
  height: number,
  chunkFrames = CHUNK_FRAMES,
): DecodeOptions {
  const v = plan.info.video;
  return {
    startFrame: plan.startFrame,
    frameCount: plan.frameCount,
    fps: v.fps,
    originSec: v.originSec,
    streamStartSec: v.startTimeSec,
    byteSeeking: v.byteSeeking,
    ...(plan.variable ? { seek: plan.variable.seek } : {}),
    width,
    height,
    chunkFrames,
    colorMatrix: v.colorMatrix,
    bitDepth: v.bitDepth > 8 ? 16 : 8,
  };
}

/**
 * Maps the pipeline's per-chunk progress onto the whole job: 2 % before the first chunk, 96 % the chunks, 2 % writing.
 * Each chunk is weighted by the frames it edits (its overlap with the chunk before included), so a short last chunk
 * is a short stretch of the bar, and the fraction is held where it is rather than ever reported lower: a cache hit, a
 * stage the model skips or a chunk that counts its units differently cannot move the bar back.
 */
export class JobProgressMapper {
  private readonly work: number;
  private base = 0;
  private chunkWeight = 0;
  private last = 0;
  /** When the compute began and how far the job was then: the ETA is the whole job's rate since, not a chunk's. */
  private rateFrom?: { t: number; fraction: number };
  constructor(
    private readonly frames: number,
    overlap: number,
    chunkFrames: number,
    private readonly emit: (p: JobProgress) => void,
    private readonly now: () => number = Date.now,
  ) {
    const chunks = Math.max(1, Math.ceil(frames / chunkFrames));
    this.work = Math.max(1, frames + (chunks - 1) * Math.min(overlap, chunkFrames));
  }
  stage(stage: JobProgress['stage'], fraction: number): void {
    const f = this.hold(fraction);
    this.emit({ stage, fraction: f, frames: this.frames, ...this.eta(f) });
  }
  /** A chunk of `count` frames (from frame `chunkStart`, 0-based) is about to be edited. */
  startChunk(chunkStart: number, count: number): void {
    this.base += this.chunkWeight;
    this.chunkWeight = count / this.work;
    this.range = { first: chunkStart + 1, last: Math.min(this.frames, chunkStart + count) };
  }
  private range?: { first: number; last: number };
  chunk(chunkStart: number, p: Progress): void {
    const within = p.total > 0 ? Math.min(1, p.done / p.total) : 0;
    const f = this.hold(0.02 + 0.96 * Math.min(1, this.base + this.chunkWeight * within));
    this.rateFrom ??= { t: this.now(), fraction: f };
    this.emit({
      stage: p.stage,
      fraction: f,
      step: p.step,
      steps: p.steps,
      frame: chunkStart + p.frame,
      frames: this.frames,
      ...(this.range ? { frameRange: this.range } : {}),
      ...this.eta(f),
    });
  }
  private hold(fraction: number): number {
    this.last = Math.max(this.last, Math.min(1, fraction));
    return this.last;
  }
  private eta(fraction: number): { etaSec?: number } {
    const from = this.rateFrom;
    if (!from) return {};
    const seconds = (this.now() - from.t) / 1000;
    const gained = fraction - from.fraction;
    // Too little of the job behind it to say anything: the first batch also loads the model.
    if (gained < 0.01 || seconds < 0.5) return {};
    return { etaSec: Math.round((seconds / gained) * (1 - fraction)) };
  }
}

export async function runJob(req: JobRequest, plan: JobPlan, ctx: RunContext): Promise<JobResult> {
  const t0 = Date.now();
  const start = performance.now();
  const times = {
    decodeWaitMs: 0,
    vaeEncodeMs: 0,
    inversionMs: 0,
    editMs: 0,
    vaeDecodeMs: 0,
    encodeWaitMs: 0,
    textMs: 0,
    transferMs: 0,
    cacheMs: 0,
    finishMs: 0,
    workerOtherMs: 0,
    unetRuns: 0,
    unetMs: 0,
    vaeMs: 0,
  };
  const model = ctx.worker.info;
  const chunkFrames = chunkFramesFor(req, plan, model, ctx.memoryLimitBytes);
  const chunks = Math.ceil(plan.frameCount / chunkFrames);
  const overlap =
    req.method === 'inversion' ? (req.consistency?.chunkOverlap ?? ConsistencySpec.parse({}).chunkOverlap) : 0;
  const progress = new JobProgressMapper(plan.frameCount, overlap, chunkFrames, ctx.onProgress);
  let canceled = false;
  let running: RunningTask | undefined;
  let finishing: { abort(): Promise<void> } | undefined;
  let lastPreview = 0;
  // Stops both decoders at once, even while one waits on a file that stopped answering.
  const decoding = new AbortController();
  ctx.cancelHook = {
    cancel() {
      canceled = true;
      decoding.abort();
      running?.cancel();
      // The final write can take long (faststart rewrites the file); a cancel then must still leave no file.
      void finishing?.abort();
    },
  };
  const checkCanceled = () => {
    if (canceled) throw new CanceledError();
  };

  // The output rules again, now: the folder may have been swapped for a link while the job waited (or the engine
  // restarted), and once more just before the rename.
  const checkTarget = () => checkWriteTarget(req, plan);
  checkTarget();
  // The result is opaque: placed where a clip with transparency was, it would cover what lies under it with black.
  if (hasAlpha(plan.info.video.pixFmt))
    ctx.onWarning?.(
      `${path.basename(req.source.path)} has an alpha channel (${plan.info.video.pixFmt}) and the result has none: its transparent areas come back black. Key or mask the result again, or edit a version of the clip without transparency.`,
    );
  let cost: PlanInput['cost'];
  if (measuresMemory(model)) {
    const key = memoryKey(model, plan);
    cost = cachedMemoryCost(key);
    if (!cost) {
      progress.stage('measuring memory', 0.01);
      // The probe loads the model in a process of its own: the engine's copy is let go meanwhile (and reloaded by the
      // first chunk), so the machine never holds both.
      await ctx.worker.unload();
      // Canceling kills the probe; the job then ends as canceled, not with the probe's error.
      cost = await memoryCost(key, decoding.signal).catch((err: unknown) => {
        checkCanceled();
        // A probe that could not run (killed for memory, a broken install) must not cost the user the job: it runs
        // with the CPU's batch rule alone, and says so.
        ctx.onWarning?.(`${(err as Error).message}; the job runs without a memory plan`);
        return undefined;
      });
    }
  }
  const memory = memoryPlan(req, plan, model, cost, ctx.memoryLimitBytes, chunkFrames);
  progress.stage('decoding', 0.01);
  const maskSpec = maskSpecOf(req.mask);
  const fullMask: MaskBatch | undefined = maskSpec ? await loadMask(maskSpec, maskTarget(plan)) : undefined;

  // Full-resolution compositing (full-res.ts): the encoder gets display-size frames built from the source's pixels.
  const full = (req.output?.composite ?? 'full') === 'full';
  const encoder = await createEncoder({
    output: plan.outputPath,
    width: full ? plan.outWidth : plan.width,
    height: full ? plan.outHeight : plan.height,
    ...(full ? { inputBitDepth: plan.info.video.bitDepth > 8 ? (16 as const) : (8 as const) } : {}),
    outWidth: plan.outWidth,
    outHeight: plan.outHeight,
    fps: plan.info.video.fps,
    codec: req.output?.codec ?? 'h264',
    // The audio of the range is cut at the same instants as the frames, on the container's clock.
    audio:
      req.output?.audio && plan.info.audio.length
        ? { file: req.source.path, startSec: plan.info.video.originSec + plan.inSec, durationSec: plan.durationSec }
        : undefined,
    ...(plan.variable
      ? { frameTimes: plan.variable.times, endSec: plan.durationSec, timeBase: plan.info.video.timeBase }
      : {}),
    overwrite: req.output?.overwrite ?? false,
    colorMatrix: plan.info.video.colorMatrix,
    sampleAspect: plan.info.video.sampleAspect,
    beforeRename: async () => {
      checkTarget();
      await ctx.beforeCommit?.();
    },
  });
  const seams = new ChunkOverlap(req, { ...plan, vaeScale: model.vaeScale });
  let unetEvaluations = 0;
  let cacheHits = 0;
  let correspondences: JobResult['correspondences'];
  const stagesRan = new Set<string>();
  let sink: OutputSink | undefined;
  try {
    let done = 0;
    // Decode one chunk ahead and encode one chunk behind the compute, so ffmpeg's work overlaps the worker's.
    const decodeOpts = {
      ...rangeDecodeOptions(plan, plan.width, plan.height, chunkFrames),
      signal: decoding.signal,
    };
    // The full-size decode selects the same frames from the same options; only the size differs.
    sink = full
      ? fullResOutput({
          file: req.source.path,
          decode: { ...decodeOpts, width: plan.outWidth, height: plan.outHeight },
          encoder,
          mask: fullMask,
        })
      : workingSizeOutput(encoder);
    const frames = readAhead(decodeFrames(req.source.path, decodeOpts));
    let writing: Promise<void> = Promise.resolve();
    let waitFrom = performance.now();
    for await (const decoded of frames) {
      times.decodeWaitMs += performance.now() - waitFrom;
      checkCanceled();
      // Consistency: each chunk after the first starts with the previous chunk's last frames (chunk-overlap.ts).
      const { frames: chunk, lead } = seams.next(decoded);
      const chunkStart = done - lead;
      const mask = fullMask && sliceMask(fullMask, chunkStart, chunk.n);
      progress.startChunk(chunkStart, chunk.n);
      const onProgress = (p: Progress) => {
        progress.chunk(chunkStart, p);
        if (p.preview && ctx.onPreview && Date.now() - lastPreview > 1000) {
          lastPreview = Date.now();
          ctx.onPreview(
            latentPreviewPng(p.preview.latent, p.preview.channels, p.preview.height, p.preview.width, model.vaeScale),
          );
        }
      };
      const cacheStart = performance.now();
      const cache = ctx.cache && {
        dir: ctx.cache.dir,
        maxBytes: ctx.cache.maxBytes,
        key: () =>
          InversionCache.keyOf({
            file: req.source.path,
            ...(ctx.cacheNames ? { name: ctx.cacheNames.source } : {}),
            startFrame: plan.startFrame + chunkStart,
            frameCount: chunk.n,
            width: plan.width,
            height: plan.height,
            modelDir: ctx.cacheNames?.model ?? model.dir,
            sourcePrompt: req.sourcePrompt,
            steps: req.steps,
            strength: plan.strength,
          }),
      };
      const task = chunkTask({
        req,
        batchSize: memory.batchSize,
        frames: chunk,
        mask,
        strength: plan.strength,
        seed: ctx.seed,
        reconstruct: sink.reconstruct,
        consistency: seams.consistency,
        cache,
        carry: seams.carry(),
      });
      const sent = performance.now();
      times.cacheMs += sent - cacheStart;
      running = ctx.worker.run(task, { onProgress, transfer: true });
      const result = await running.result;
      seams.took(result);
      if (result.cacheHit) cacheHits++;
      correspondences ??= result.correspondences;
      result.stages?.forEach((s) => stagesRan.add(s));
      times.transferMs += performance.now() - sent - result.timings.taskMs;
      running = undefined;
      result.warnings.forEach((w) => ctx.onWarning?.(w));
      unetEvaluations += result.stats.unetEvals;
      addWorkerTimes(times, result);
      checkCanceled();
      const writeStart = performance.now();
      const ready = seams.stitch(sink.prepare(result), lead);
      // At most one chunk waits for the encoder: memory stays bounded and a failed write still stops the job.
      await writing;
      times.encodeWaitMs += performance.now() - writeStart;
      if (ready.n) writing = handled(sink.write(ready));
      done += decoded.n;
      waitFrom = performance.now();
    }
    const lastWrite = performance.now();
    await writing;
    times.encodeWaitMs += performance.now() - lastWrite;
    if (done !== plan.frameCount) throw new Error(`decoded ${done} frames, expected ${plan.frameCount}`);
    const tail = seams.flush();
    if (tail?.n) await sink.write(tail);
    await sink.finish();
    checkCanceled();
    progress.stage('writing', 0.99);
    finishing = encoder;
    const finishStart = performance.now();
    const written = await encoder.finish();
    times.finishMs = performance.now() - finishStart;
    const fps = plan.info.video.fps;
    return {
      path: written.path,
      frames: written.frames,
      fps,
      width: plan.outWidth,
      height: plan.outHeight,
      durationSec: written.frames === plan.frameCount ? plan.durationSec : (written.frames * fps.den) / fps.num,
      codec: req.output?.codec ?? 'h264',
      workingSize: { width: plan.width, height: plan.height },
      unetEvaluations,
      inversionCacheHit: cacheHits > 0 && cacheHits === chunks,
      ...(correspondences ? { correspondences } : {}),
      ...(stagesRan.size ? { stages: [...stagesRan] } : {}),
      seconds: (Date.now() - t0) / 1000,
      timings: jobTimings(plan.probeMs, performance.now() - start, times),
      memory,
      mattePath: seams.finish(),
    };
  } catch (err) {
    seams.abort();
    await sink?.abort();
    await encoder.abort();
    // A canceled encoder fails with its own error; the job was canceled all the same.
    throw canceled ? new CanceledError() : err;
  }
}

/** The promise, with its rejection marked as handled: it is awaited later, or the job has already failed. */
function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

/**
 * Keeps the next item of `source` in flight while the caller works on the current one. For the frame decoder this
 * means ffmpeg decodes chunk k+1 while the worker edits chunk k; one chunk ahead, so memory stays bounded.
 */
async function* readAhead<T>(source: AsyncIterable<T>): AsyncGenerator<T, void, undefined> {
  const it = source[Symbol.asyncIterator]();
  let next = handled(it.next());
  try {
    for (;;) {
      const r = await next;
      if (r.done) return;
      next = handled(it.next());
      yield r.value;
    }
  } finally {
    // Stops the source (kills ffmpeg) once the read in flight has settled.
    await it.return?.();
  }
}

type Times = Omit<JobTimings, 'probeMs' | 'otherMs' | 'totalMs'> & { workerOtherMs: number };

function addWorkerTimes(t: Times, r: TaskResult): void {
  t.vaeEncodeMs += r.timings.vaeEncodeMs;
  t.inversionMs += r.timings.inversionMs;
  t.editMs += r.timings.editMs;
  t.vaeDecodeMs += r.timings.vaeDecodeMs;
  t.textMs += r.timings.textMs;
  t.cacheMs += r.timings.cacheMs;
  t.workerOtherMs += r.timings.otherMs;
  t.unetRuns += r.stats.unetRuns;
  t.unetMs += r.stats.unetMs;
  t.vaeMs += r.stats.vaeMs;
}

/** Stage times plus "other" (everything else on the job's critical path), so the stages add up to the total. */
function jobTimings(probeMs: number, runMs: number, t: Times): JobTimings {
  const { workerOtherMs: _w, ...rest } = t;
  const totalMs = probeMs + runMs;
  const staged = probeMs + t.decodeWaitMs + t.vaeEncodeMs + t.inversionMs + t.editMs + t.vaeDecodeMs + t.encodeWaitMs;
  const round = (v: number) => Math.round(Math.max(0, v) * 10) / 10;
  const out = Object.fromEntries(Object.entries(rest).map(([k, v]) => [k, k === 'unetRuns' ? v : round(v)])) as Omit<
    JobTimings,
    'probeMs' | 'otherMs' | 'totalMs'
  >;
  return { ...out, probeMs: round(probeMs), otherMs: round(totalMs - staged), totalMs: round(totalMs) };
}

function sliceMask(mask: MaskBatch, start: number, count: number): MaskBatch {
  if (mask.n === 1) return mask;
  const per = mask.height * mask.width;
  return {
    n: count,
    height: mask.height,
    width: mask.width,
    data: mask.data.slice(start * per, (start + count) * per),
  };
}
