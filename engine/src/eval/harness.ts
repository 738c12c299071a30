// Runs every method combination on a suite of clips with ground truth and measures each result the same way:
// background fidelity outside the true object, edit accuracy inside it, the automatic mask against the truth,
// warp error against the source's flow, and cost. report.ts turns the numbers into report.md/report.json/pictures.
import { ConsistencySpec } from '../api/schemas';
import type { ImageBatch, MaskBatch } from '../diffusion/images';
import type { AutoMaskSource, ConsistencyParams, EditParams } from '../editing/types';
import { inversionEdit } from '../editing/pipelines/inversion-edit';
import { editInChunks, planChunks } from '../editing/long-clip';
import { sdedit } from '../editing/pipelines/sdedit';
import { ddimLevels, ddimSchedule } from '../diffusion/scheduler';
import { oracleEditPrediction } from '../models/generate/oracle-spec';
import type { DiffusionModel } from '../models/sd-model';
import {
  colourError,
  exactEditError,
  maskedPsnr,
  maskedSsim,
  maskIoU,
  meanColour,
  psnr,
  regionOcclusion,
  warpErrorPerPair,
} from './metrics';
import type { Rgb } from './synthetic-scene';

export interface MethodSpec {
  id: string;
  label: string;
  description: string;
  kind: 'sdedit' | 'inversion';
  autoMask: boolean;
  /** Without direct inversion (the plain DDIM edit); default false. */
  plainDdim?: boolean;
  consistency?: ConsistencyParams;
  /** Edited in chunks of the suite's chunk size with this many overlap frames; only on clips longer than a chunk. */
  chunkOverlap?: number;
  /** Edited with the clip's true object mask instead of the automatic one; only on clips with ground truth. */
  trueMask?: boolean;
  /** The automatic mask's threshold; default 0.5 (the job default). */
  threshold?: number;
  /** What the automatic mask is read from; default "difference" (the job default). */
  maskFrom?: AutoMaskSource;
  /**
   * Run on oracle-attn (the oracle written as one cross-attention block, docs/ORACLE.md) instead of the eval's model:
   * the attention methods need a UNet with attention, and on oracle-attn they have exact right answers.
   */
  model?: 'oracle-attn';
  /** Attention-level methods of the edit (off when absent). */
  attention?: Pick<EditParams, 'wordSwap' | 'reweight'>;
}

/** The job's default consistency settings (ConsistencySpec's defaults) as the editing code takes them. */
export function defaultConsistency(): ConsistencyParams {
  return ConsistencySpec.parse({});
}

export const SDEDIT_STRENGTH = 0.8;
const SDEDIT_SEED = 1;

/**
 * The method table: baselines, then the stages added one at a time, two ablations, the job default, and the default
 * in chunks without and with overlap. Ids are stable (report.json consumers key on them).
 */
export function methodTable(): { methods: MethodSpec[]; defaultId: string } {
  const d = defaultConsistency();
  const lc = d.latentCorrection ?? { steps: 10, weights: [0.25, 0.5, 0.25] as [number, number, number] };
  const smoothing = d.maskSmoothing || 0.25;
  const methods: MethodSpec[] = [
    {
      id: 'sdedit',
      label: 'SDEdit',
      description: `SDEdit baseline, strength ${SDEDIT_STRENGTH}, one shared noise for all frames, no mask`,
      kind: 'sdedit',
      autoMask: false,
    },
    {
      id: 'inversion',
      label: 'inversion',
      description: 'DDIM inversion + direct inversion, no mask',
      kind: 'inversion',
      autoMask: false,
    },
    {
      id: 'inversion+mask',
      label: '+ auto mask',
      description: 'inversion with the InvEdit automatic mask (threshold 0.5), hard edges',
      kind: 'inversion',
      autoMask: true,
    },
    {
      id: '+smoothing',
      label: '+ mask smoothing',
      description: `+ motion-compensated temporal smoothing of the mask score (a = ${smoothing})`,
      kind: 'inversion',
      autoMask: true,
      consistency: { maskSmoothing: smoothing },
    },
    {
      id: '+dilate',
      label: '+ dilate 1 (ablation)',
      description: '+ smoothing + mask dilated by 1 latent pixel',
      kind: 'inversion',
      autoMask: true,
      consistency: { maskSmoothing: smoothing, maskDilate: 1 },
    },
    {
      id: '+soft-edge',
      label: '+ soft edge',
      description: '+ smoothing + 1-pixel outward soft edge',
      kind: 'inversion',
      autoMask: true,
      consistency: { maskSmoothing: smoothing, softEdge: 1 },
    },
    {
      id: '+latent-correction',
      label: '+ latent correction',
      description: `+ smoothing + soft edge + latent correction (first ${lc.steps} steps, weights ${lc.weights.map((w) => +w.toFixed(3)).join('/')})`,
      kind: 'inversion',
      autoMask: true,
      consistency: { maskSmoothing: smoothing, softEdge: 1, latentCorrection: lc },
    },
    {
      id: '+mask-seeds',
      label: '+ mask seeds 0.8 (ablation)',
      description: '+ latent correction + hysteresis: mask regions kept only where the score reaches 0.8 somewhere',
      kind: 'inversion',
      autoMask: true,
      consistency: { ...d, maskSeed: 0.8 },
    },
    {
      id: '+anchor-stats',
      label: '+ anchor stats',
      description:
        '+ latent correction + per-frame latent mean/std aligned to the first frame inside the mask, every step',
      kind: 'inversion',
      autoMask: true,
      consistency: { maskSmoothing: smoothing, softEdge: 1, latentCorrection: lc, anchorStats: true },
    },
    {
      id: 'true-mask',
      label: 'true mask + latent correction (reference)',
      description:
        'the ground-truth object mask instead of the automatic one, + latent correction: the flicker left when the mask is perfect',
      kind: 'inversion',
      autoMask: false,
      trueMask: true,
      consistency: { latentCorrection: lc },
    },
    {
      id: 'correction-no-mask',
      label: 'correction, no mask (ablation)',
      description: 'inversion + latent correction over the whole frame, no mask',
      kind: 'inversion',
      autoMask: false,
      consistency: { latentCorrection: lc },
    },
    {
      id: 'threshold-0.7',
      label: 'default, mask threshold 0.7 (ablation)',
      description:
        'the job defaults with the automatic mask thresholded at 0.7 instead of 0.5 (`mask: {type: "auto", threshold: 0.7}`)',
      kind: 'inversion',
      autoMask: true,
      threshold: 0.7,
      consistency: d,
    },
    {
      id: 'default',
      label: 'job default',
      description: `the job's consistency defaults (ConsistencySpec) at the table's guidance 1 (the job's own guidance, steps and a saturated object on a user-sized clip are the "job defaults on a user-sized clip" check): ${describeConsistency(d)}`,
      kind: 'inversion',
      autoMask: true,
      consistency: d,
    },
    {
      id: 'attn-inversion',
      label: 'inversion on oracle-attn',
      description:
        'the inversion row on oracle-attn (the same distribution written as cross-attention): the baseline of the word-swap rows',
      kind: 'inversion',
      autoMask: false,
      model: 'oracle-attn',
    },
    {
      id: 'word-swap',
      label: 'word swap 0.8 (oracle-attn)',
      description:
        "prompt-to-prompt word swap: the target's cross-attention follows the source's maps for the first 80 % of the steps (the job's default), no mask",
      kind: 'inversion',
      autoMask: false,
      model: 'oracle-attn',
      attention: { wordSwap: { steps: 0.8 } },
    },
    {
      id: 'word-swap-1',
      label: 'word swap 1.0 (oracle-attn)',
      description: "word swap through every step: the closed form's own setting, no mask",
      kind: 'inversion',
      autoMask: false,
      model: 'oracle-attn',
      attention: { wordSwap: { steps: 1 } },
    },
    {
      id: 'default+word-swap',
      label: 'job default + word swap 0.8 (oracle-attn)',
      description: 'the job defaults (automatic mask, consistency stages) with word swap 0.8',
      kind: 'inversion',
      autoMask: true,
      consistency: d,
      model: 'oracle-attn',
      attention: { wordSwap: { steps: 0.8 } },
    },
    {
      id: 'attention-mask',
      label: 'job default, attention mask (oracle-attn)',
      description:
        "the job defaults with the automatic mask read from the changed words' cross-attention maps (FateZero) instead of the prompts' difference",
      kind: 'inversion',
      autoMask: true,
      maskFrom: 'attention',
      consistency: d,
      model: 'oracle-attn',
    },
    {
      id: 'both-mask',
      label: 'job default, difference + attention mask (oracle-attn)',
      description: 'the job defaults with the mean of the difference and attention scores as the mask score',
      kind: 'inversion',
      autoMask: true,
      maskFrom: 'both',
      consistency: d,
      model: 'oracle-attn',
    },
    {
      id: 'chunked',
      label: 'default, chunks, no overlap',
      description: 'the job defaults edited in independent chunks',
      kind: 'inversion',
      autoMask: true,
      consistency: d,
      chunkOverlap: 0,
    },
    {
      id: 'chunked+overlap',
      label: 'default, chunks + overlap',
      description: `the job defaults in chunks overlapping by ${d.chunkOverlap || 4} frames, crossfaded`,
      kind: 'inversion',
      autoMask: true,
      consistency: d,
      chunkOverlap: d.chunkOverlap || 4,
    },
  ];
  return { methods, defaultId: 'default' };
}

export function describeConsistency(c: ConsistencyParams): string {
  const lc = c.latentCorrection;
  return [
    lc
      ? `latent correction ${lc.steps} steps ${lc.weights.map((w) => +w.toFixed(3)).join('/')}`
      : 'no latent correction',
    `mask smoothing ${c.maskSmoothing ?? 0}`,
    c.maskSeed ? `mask seeds ${c.maskSeed}` : 'no mask seeds',
    `dilate ${c.maskDilate ?? 0}`,
    `soft edge ${c.softEdge ?? 0}`,
    c.anchorStats ? 'anchor stats' : 'no anchor stats',
    `chunk overlap ${c.chunkOverlap ?? 0}`,
  ].join(', ');
}

export interface EvalClip {
  name: string;
  description: string;
  frames: ImageBatch;
  sourcePrompt: string;
  prompt: string;
  /** Ground truth, when the clip has it (synthetic clips). */
  objectMask?: MaskBatch;
  target?: Rgb;
  /** The object's colour in the source (synthetic clips), for the exact edit. */
  sourceColour?: Rgb;
  /** Forward flow of the source [(n−1), 2, H, W] and occlusion; exact for synthetic clips, estimated for real ones. */
  flow: Float32Array;
  occlusion: MaskBatch;
  flowSource: 'exact' | 'lucas-kanade';
}

export interface MethodResult {
  method: string;
  clip: string;
  frames: number;
  /** Output of the method with prompt = source prompt, against the source (dB; 100 = identical). */
  roundTripPsnr?: number;
  autoMaskIoU?: number;
  /** Fraction of pixels the applied mask selects (> 0.5). */
  maskArea?: number;
  /** Outside the true object mask (or, without truth, outside the method's own mask). dB, 100 = identical. */
  backgroundPsnr?: number;
  backgroundSsim?: number;
  /** Mean distance to the target colour inside the true object mask, and the source's, in [-1, 1] RGB units. */
  colourError?: number;
  colourErrorBefore?: number;
  /**
   * Mean distance inside the true object to the exact edit on the oracle: the source moved by (1 − residual)·(target −
   * source colour), the residual of the edit's starting noise level (docs/ORACLE.md). Inversion edits only.
   */
  exactEditError?: number;
  objectMean?: Rgb;
  warpError: number;
  warpErrorSource: number;
  warpErrorRatio: number;
  /** Warp error over the true object only (pixels of frame t inside the object). */
  objectWarpErrorRatio?: number;
  /** Mean of the per-pair warp error ratios at chunk seams (pairs whose second frame starts a chunk's new frames). */
  seamWarpErrorRatio?: number;
  seamFrames?: number[];
  unetEvalsPerFrame: number;
  seconds: number;
  perPairWarpError: number[];
  perPairWarpErrorSource: number[];
  /** The result, kept for pictures (not serialised). */
  output?: ImageBatch;
  mask?: MaskBatch;
}

/** PSNR for JSON: identical inputs (Infinity) are reported as 100 dB. */
export function db(v: number): number {
  return Number.isFinite(v) ? v : 100;
}

function meanOf(xs: number[]): number {
  let s = 0;
  for (const x of xs) s += x;
  return xs.length ? s / xs.length : NaN;
}

export interface RunSettings {
  steps: number;
  chunk: number;
  batchSize: number;
}

async function runMethod(
  model: DiffusionModel,
  m: MethodSpec,
  frames: ImageBatch,
  prompt: string,
  sourcePrompt: string,
  s: RunSettings,
  truth?: MaskBatch,
): Promise<{ frames: ImageBatch; mask?: Float32Array }> {
  if (m.trueMask && !truth) throw new Error(`method ${m.id} needs a clip with a ground-truth object mask`);
  if (m.kind === 'sdedit') {
    const r = await sdedit(model, frames, {
      prompt,
      steps: s.steps,
      strength: SDEDIT_STRENGTH,
      guidance: 1,
      seed: SDEDIT_SEED,
      batchSize: s.batchSize,
    });
    return { frames: r.frames };
  }
  const edit = async (f: ImageBatch) => {
    const r = await inversionEdit(model, f, {
      sourcePrompt,
      prompt,
      steps: s.steps,
      strength: 1,
      guidance: 1,
      directInversion: !m.plainDdim,
      batchSize: s.batchSize,
      autoMask: m.autoMask ? { threshold: m.threshold ?? 0.5, from: m.maskFrom } : null,
      mask: m.trueMask ? truth : null,
      consistency: m.consistency ?? null,
      wordSwap: m.attention?.wordSwap ?? null,
      reweight: m.attention?.reweight,
    });
    return { frames: r.frames, mask: r.latentMask };
  };
  if (m.chunkOverlap === undefined) return edit(frames);
  return editInChunks(frames, s.chunk, m.chunkOverlap, (f) => edit(f));
}

/** Runs one method on one clip and measures it. */
export async function evaluateMethod(
  model: DiffusionModel,
  m: MethodSpec,
  clip: EvalClip,
  s: RunSettings,
  o: { roundTrip?: boolean } = {},
): Promise<MethodResult> {
  const { frames } = clip;
  const evals0 = model.stats.unetEvals;
  const t0 = performance.now();
  const r = await runMethod(model, m, frames, clip.prompt, clip.sourcePrompt, s, clip.objectMask);
  const seconds = (performance.now() - t0) / 1000;
  const unetEvalsPerFrame = (model.stats.unetEvals - evals0) / frames.n;
  const { n, height: H, width: W } = frames;
  // The oracle's latents are at pixel resolution; a coarser latent mask is compared at its own scale upsampled.
  const mask: MaskBatch | undefined =
    r.mask && r.mask.length === n * H * W ? { n, height: H, width: W, data: r.mask } : undefined;
  const perPair = warpErrorPerPair(r.frames, clip.flow, clip.occlusion);
  const perPairSource = warpErrorPerPair(frames, clip.flow, clip.occlusion);
  const warpError = meanOf(perPair);
  const warpErrorSource = meanOf(perPairSource);
  const res: MethodResult = {
    method: m.id,
    clip: clip.name,
    frames: n,
    warpError,
    warpErrorSource,
    warpErrorRatio: warpError / warpErrorSource,
    unetEvalsPerFrame,
    seconds,
    perPairWarpError: perPair,
    perPairWarpErrorSource: perPairSource,
    output: r.frames,
    mask,
  };
  if (mask) {
    let area = 0;
    for (const v of mask.data) if (v > 0.5) area++;
    res.maskArea = area / mask.data.length;
  }
  const truth = clip.objectMask;
  if (truth) {
    res.backgroundPsnr = db(maskedPsnr(r.frames, frames, truth, 'outside'));
    res.backgroundSsim = maskedSsim(r.frames, frames, truth, 'outside');
    if (mask) res.autoMaskIoU = maskIoU(mask, truth);
    const obj = regionOcclusion(clip.occlusion, truth);
    res.objectWarpErrorRatio =
      meanOf(warpErrorPerPair(r.frames, clip.flow, obj)) / meanOf(warpErrorPerPair(frames, clip.flow, obj));
  } else if (mask) {
    res.backgroundPsnr = db(maskedPsnr(r.frames, frames, mask, 'outside'));
    res.backgroundSsim = maskedSsim(r.frames, frames, mask, 'outside');
  }
  if (truth && clip.target) {
    res.colourError = colourError(r.frames, truth, clip.target, 'inside');
    res.colourErrorBefore = colourError(frames, truth, clip.target, 'inside');
    res.objectMean = meanColour(r.frames, truth, 'inside');
    if (clip.sourceColour && m.kind === 'inversion') {
      const start = ddimLevels(ddimSchedule(model.scheduler, s.steps)).alpha[s.steps];
      // The prediction for x₀ = 0 is the shift itself: μ_tgt − μ_src less the residual.
      const shift = oracleEditPrediction([0, 0, 0], clip.sourceColour, clip.target, start);
      res.exactEditError = exactEditError(r.frames, frames, truth, Array.from(shift));
    }
  }
  if (m.chunkOverlap !== undefined) {
    const seams = planChunks(n, s.chunk, m.chunkOverlap)
      .slice(1)
      .map((span) => span.start + span.lead);
    res.seamFrames = seams;
    res.seamWarpErrorRatio = seamRatio(perPair, perPairSource, seams);
  }
  if (o.roundTrip && m.kind === 'inversion') {
    const back = await runMethod(model, m, frames, clip.sourcePrompt, clip.sourcePrompt, s);
    res.roundTripPsnr = db(psnr(back.frames, frames));
  }
  return res;
}

/** Mean over seams b of E_{b−1}(edit) / E_{b−1}(source): the warp error ratio of the pairs that straddle a seam. */
export function seamRatio(perPair: number[], perPairSource: number[], seams: number[]): number | undefined {
  return seams.length ? meanOf(seams.map((b) => perPair[b - 1] / perPairSource[b - 1])) : undefined;
}

/** Means of the numeric fields over a method's clip results (NaN-free: absent fields are skipped). */
export function aggregate(results: MethodResult[]): Record<string, number> {
  const keys = [
    'roundTripPsnr',
    'autoMaskIoU',
    'maskArea',
    'backgroundPsnr',
    'backgroundSsim',
    'colourError',
    'colourErrorBefore',
    'exactEditError',
    'warpError',
    'warpErrorSource',
    'warpErrorRatio',
    'objectWarpErrorRatio',
    'seamWarpErrorRatio',
    'unetEvalsPerFrame',
    'seconds',
  ] as const;
  const out: Record<string, number> = { clips: results.length };
  for (const k of keys) {
    const vals = results.map((r) => r[k]).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
    if (vals.length) out[k] = meanOf(vals);
  }
  const frames = results.reduce((a, r) => a + r.frames, 0);
  const secs = results.reduce((a, r) => a + r.seconds, 0);
  if (frames) out.secondsPerFrame = secs / frames;
  return out;
}
