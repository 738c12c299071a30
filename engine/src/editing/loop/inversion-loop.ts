// The inversion edit's two loops, written out in one place as diffusers does: VAE-encode (mean) → DDIM-invert under
// the source prompt, recording every level; then denoise under the target prompt with classifier-free guidance,
// optionally with direct inversion and a mask, → VAE-decode. Everything else an edit does (the automatic mask, its
// refinement, cross-frame correspondences, latent correction, anchor statistics, and the attention methods to come)
// is an EditStage the pipeline hands in; this file knows stages only by that interface.
import type { ImageBatch } from '../../diffusion/images';
import { ddimLevels, ddimMove, ddimSchedule, guidance, strengthSteps, toX0Eps } from '../../diffusion/scheduler';
import type { DiffusionModel, PortTensor } from '../../models/sd-model';
import { blendOutsideMask, latentMask } from '../masks/latent-mask';
import type { EditOutput, EditParams, InversionParams, InvertedTrajectory, RunHooks } from '../types';
import { batches } from '../../diffusion/images';
import { decodeAll, embedRows, repeatEmbeddings, validateFrames } from './batching';
import { ProgressTracker } from './progress';
import { EditState, type EditContext, type EditStage, type FrameBatch, type UnetCallInfo } from './stage';

/** VAE-encodes all frames and DDIM-inverts them under the source prompt, keeping every level. */
export async function invertFrames(
  model: DiffusionModel,
  frames: ImageBatch,
  p: InversionParams,
  hooks: RunHooks = {},
  tracker?: ProgressTracker,
): Promise<InvertedTrajectory> {
  validateFrames(model, frames);
  const schedule = ddimSchedule(model.scheduler, p.steps);
  const levels = ddimLevels(schedule);
  const K = strengthSteps(p.steps, p.strength);
  const C = model.info.latentChannels;
  const h = frames.height / model.info.vaeScale;
  const w = frames.width / model.info.vaeScale;
  const per = C * h * w;
  const parts = batches(frames.n, p.batchSize);
  const track = tracker ?? new ProgressTracker(parts.length * (1 + K), frames.n, hooks);
  const warnings: string[] = [];
  const source = (await embedRows(model, [p.sourcePrompt], warnings)).get(p.sourcePrompt)!;

  const latents = Array.from({ length: K + 1 }, () => new Float32Array(frames.n * per));
  const pixelsPer = 3 * frames.height * frames.width;
  for (const { start, count } of parts) {
    track.checkStop();
    const batch = {
      n: count,
      height: frames.height,
      width: frames.width,
      data: frames.data.subarray(start * pixelsPer, (start + count) * pixelsPer),
    };
    let z = await model.encodeImages(batch);
    latents[0].set(z, start * per);
    track.advance('encoding latents', start);
    const emb = repeatEmbeddings([source], count);
    for (let k = 1; k <= K; k++) {
      track.checkStop();
      // Inversion evaluates the model at the noisier timestep on the current, less noisy latent (diffusers
      // DDIMInverseScheduler); the same DDIM move then carries it up one level.
      const { eps } = await model.predict(z, count, h, w, levels.timestep[k], emb);
      z = ddimMove(eps, z, levels.alpha[k - 1], levels.alpha[k], model.scheduler.predictionType);
      latents[k].set(z, start * per);
      track.advance('inverting', start, { step: k, steps: K });
    }
  }
  return {
    modelDir: model.info.dir,
    sourcePrompt: p.sourcePrompt,
    steps: p.steps,
    strength: p.strength,
    n: frames.n,
    channels: C,
    height: h,
    width: w,
    imageHeight: frames.height,
    imageWidth: frames.width,
    alphas: levels.alpha.slice(0, K + 1),
    timesteps: levels.timestep.slice(0, K + 1),
    latents,
  };
}

type Branch = { latent: 'source' | 'target'; prompt: string };

/**
 * The UNet evaluations one denoising step needs, deduplicated: with guidance 1 there is no unconditional branch,
 * when the source prompt is empty the source branch's conditional and unconditional evaluations coincide, and
 * when the source branch's steps are already known (a re-edit) it does not run at all.
 */
function planBranches(
  p: Pick<EditParams, 'guidance' | 'prompt' | 'sourcePrompt'>,
  sourceBranch: boolean,
): { branches: Branch[]; tgtU: number; tgtC: number; srcU: number; srcC: number } {
  const branches: Branch[] = [];
  const idx = (b: Branch) => {
    let i = branches.findIndex((x) => x.latent === b.latent && x.prompt === b.prompt);
    if (i < 0) i = branches.push(b) - 1;
    return i;
  };
  const cfg = p.guidance !== 1;
  const tgtC = idx({ latent: 'target', prompt: p.prompt });
  const tgtU = cfg ? idx({ latent: 'target', prompt: '' }) : -1;
  const srcC = sourceBranch ? idx({ latent: 'source', prompt: p.sourcePrompt }) : -1;
  const srcU = sourceBranch && cfg ? idx({ latent: 'source', prompt: '' }) : -1;
  return { branches, tgtU, tgtC, srcU, srcC };
}

/**
 * UNet batch items per frame in one step of a first edit (the source branch runs too): the memory plan's multiplier.
 * `readsSource`: a stage of the edit reads the source branch (it then runs without direct inversion as well).
 */
export function unetItemsPerFrame(
  p: Pick<EditParams, 'guidance' | 'prompt' | 'sourcePrompt' | 'directInversion'>,
  readsSource = false,
): number {
  return planBranches(p, p.directInversion || readsSource).branches.length;
}

/** What the source branch's steps depend on besides the trajectory: the guidance scale, unless nothing can use it. */
function sourceStepsGuidance(model: DiffusionModel, p: EditParams): number | null {
  return p.sourcePrompt === '' && model.info.timestepCondDim === 0 ? null : p.guidance;
}

/** The stages' extra inputs for one call, merged; two stages feeding the same port is a programming error. */
function stageFeeds(stages: EditStage[], call: UnetCallInfo): Record<string, PortTensor> | undefined {
  let feeds: Record<string, PortTensor> | undefined;
  for (const s of stages) {
    const f = s.beforeUnet?.(call);
    if (!f) continue;
    for (const name of Object.keys(f))
      if (feeds && name in feeds) throw new Error(`two stages feed the UNet port ${name}`);
    feeds = { ...feeds, ...f };
  }
  return feeds;
}

/** Denoises from the inverted trajectory under the target prompt, with the given stages, and decodes the frames. */
export async function denoiseFromInversion(
  model: DiffusionModel,
  traj: InvertedTrajectory,
  p: EditParams,
  allStages: EditStage[],
  hooks: RunHooks = {},
  tracker?: ProgressTracker,
): Promise<EditOutput> {
  if (traj.modelDir !== model.info.dir)
    throw new Error(
      `this inversion was made with ${traj.modelDir}, not ${model.info.dir}; invert again with the current model`,
    );
  const { n, channels: C, height: h, width: w } = traj;
  const K = traj.latents.length - 1;
  const hw = h * w;
  const per = C * hw;
  const type = model.scheduler.predictionType;
  const parts = batches(n, p.batchSize);
  const track = tracker ?? new ProgressTracker(parts.length * (K + (p.reconstruct ? 2 : 1)), n, hooks);
  const warnings: string[] = [];
  const rows = await embedRows(model, [p.prompt, p.sourcePrompt, ...(p.guidance !== 1 ? [''] : [])], warnings);

  // Stages plan in order, each seeing what the ones before it decided (the mask, correspondences).
  const state = new EditState(traj);
  if (p.mask) state.mask = latentMask(p.mask, n, h, w);
  const ctx: EditContext = { model, traj, params: p, embeddings: rows, checkStop: () => track.checkStop(), state };
  const stages: EditStage[] = [];
  const ran: string[] = [];
  for (const s of allStages) {
    const planned = await s.plan(ctx);
    if (planned) ran.push(s.name);
    if (planned === true) stages.push(s);
  }
  // Source steps belong to the UNet that made them: with a stage that changes the prediction the source branch runs
  // with it, and what it computes is not kept for a later edit that may run without it. A stage that reads the source
  // branch in the same call needs it to run even where its steps are known, with or without direct inversion.
  const plainUnet = !stages.some((s) => s.changesPrediction);
  const readsSource = stages.some((s) => s.readsSourceBranch);
  const stepsKey = sourceStepsGuidance(model, p);
  const steps = traj.sourceSteps;
  const known =
    p.directInversion && plainUnet && !readsSource && steps?.guidance === stepsKey && steps.levels.length === K
      ? steps.levels
      : undefined;
  const plan = planBranches(p, (p.directInversion && !known) || readsSource);
  const recorded =
    p.directInversion && plan.srcC >= 0 ? Array.from({ length: K }, () => new Float32Array(n * per)) : undefined;
  // Stages that share a pass with the same options (word swap and re-weighting both rewrite the cross-attention
  // maps) share one application of it: a pass refuses to rewrite a site twice.
  const passes = [
    ...new Map(
      stages.flatMap((s) => s.passes ?? []).map((r) => [JSON.stringify([r.pass.name, r.options]), r]),
    ).values(),
  ];
  const variant = await model.variant(passes);
  if (!variant.ok)
    throw new Error(
      `the UNet cannot be rewritten for ${stages
        .filter((s) => s.passes?.length)
        .map((s) => s.name)
        .join(', ')}: ${variant.reason}`,
    );
  const outputsOf = (call: UnetCallInfo) => [
    ...new Set(stages.flatMap((s) => (typeof s.outputs === 'function' ? s.outputs(call) : (s.outputs ?? [])))),
  ];
  const calls = stages.reduce<FrameBatch[]>((ps, s) => s.partition?.(ps) ?? ps, parts);
  // Progress was counted in the loop's own batches; a stage that runs more, smaller calls advances it by less each.
  const unitsPerCall = parts.length / calls.length;
  const lockstep = stages.some((s) => s.afterStep);
  if (!lockstep && stages.some((s) => s.keyframes))
    throw new Error('a stage with keyframe calls must step all frames in lockstep (give it an afterStep hook)');
  const mask = state.mask;

  // Every frame's current latent; each batch steps its own slice in place.
  const out = Float32Array.from(traj.latents[K]);
  // Embeddings and UNet input depend on the batch size only, and there are few sizes (full, last, keyframes).
  const embFor = new Map<number, Float32Array>();
  const inputFor = new Map<number, Float32Array>();
  const embeddings = (count: number) => {
    let emb = embFor.get(count);
    if (!emb) {
      emb = repeatEmbeddings(
        plan.branches.map((b) => rows.get(b.prompt)!),
        count,
      );
      embFor.set(count, emb);
    }
    return emb;
  };

  /** One UNet call on `frames` (in batch order) at level k: every branch's items, the stages' feeds and outputs. */
  const unet = async (frames: readonly number[], k: number, keyframes: boolean) => {
    const count = frames.length;
    const sz = count * per;
    let input = inputFor.get(count);
    if (!input) inputFor.set(count, (input = new Float32Array(plan.branches.length * sz)));
    plan.branches.forEach((b, i) => {
      const from = b.latent === 'target' ? out : traj.latents[k];
      frames.forEach((f, j) => input.set(from.subarray(f * per, (f + 1) * per), i * sz + j * per));
    });
    const call: UnetCallInfo = {
      step: K - k + 1,
      level: k,
      timestep: traj.timesteps[k],
      start: frames[0],
      count,
      branches: plan.branches,
      ...(keyframes ? { keyframes: frames } : {}),
    };
    track.checkStop();
    const result = await model.predict(
      input,
      plan.branches.length * count,
      h,
      w,
      traj.timesteps[k],
      embeddings(count),
      {
        guidanceEmbedding: p.guidance - 1,
        variant: variant.id,
        feeds: stageFeeds(stages, call),
        outputs: outputsOf(call),
      },
    );
    for (const s of stages) s.afterUnet?.(call, result.outputs);
    return result.eps;
  };

  const step = async ({ start, count }: FrameBatch, k: number) => {
    const sz = count * per;
    const at = (level: number) => traj.latents[level].subarray(start * per, start * per + sz);
    const batchMask = mask?.subarray(start * hw, (start + count) * hw);
    const z = out.subarray(start * per, start * per + sz);
    const src = at(k);
    const pred = await unet(
      Array.from({ length: count }, (_, j) => start + j),
      k,
      false,
    );
    const part = (i: number) => pred.subarray(i * sz, (i + 1) * sz);
    const epsT = plan.tgtU >= 0 ? guidance(part(plan.tgtU), part(plan.tgtC), p.guidance) : part(plan.tgtC);
    const next = ddimMove(epsT, z, traj.alphas[k], traj.alphas[k - 1], type);
    if (p.directInversion) {
      // Direct inversion: where the source branch's own step misses the recorded trajectory, correct the target by
      // the same amount. With target prompt = source prompt the two branches coincide and the input comes back.
      let srcNext: Float32Array;
      if (known) srcNext = known[k - 1].subarray(start * per, start * per + sz);
      else {
        const epsS = plan.srcU >= 0 ? guidance(part(plan.srcU), part(plan.srcC), p.guidance) : part(plan.srcC);
        srcNext = ddimMove(epsS, src, traj.alphas[k], traj.alphas[k - 1], type);
        recorded![k - 1].set(srcNext, start * per);
      }
      const target = at(k - 1);
      for (let i = 0; i < sz; i++) next[i] += target[i] - srcNext[i];
    }
    if (batchMask) blendOutsideMask(next, at(k - 1), batchMask, C, hw);
    const preview = hooks.onProgress
      ? toX0Eps(epsT.subarray(0, per), z.subarray(0, per), traj.alphas[k], type).x0
      : undefined;
    // The editor's live preview: the prediction where the edit reaches and the footage itself where it does not, so
    // an early, noisy step does not show a frame of flat colour over everything the edit leaves alone.
    if (preview && batchMask) blendOutsideMask(preview, at(0).subarray(0, per), batchMask.subarray(0, hw), C, hw);
    z.set(next);
    track.advance(
      'editing',
      start,
      {
        step: K - k + 1,
        steps: K,
        preview: preview && { latent: preview, channels: C, height: h, width: w },
      },
      unitsPerCall,
    );
  };

  if (!lockstep) {
    for (const part of calls) for (let k = K; k >= 1; k--) await step(part, k);
  } else {
    // Cross-frame stages read neighbouring frames at the same noise level: steps outer, batches inner. A stage's
    // keyframes run first, at the step's starting latents, so that every frame's call can read them.
    for (let k = K; k >= 1; k--) {
      for (const s of stages) {
        const keyframes = s.keyframes?.(K - k + 1);
        if (keyframes?.length) await unet(keyframes, k, true);
      }
      for (const part of calls) await step(part, k);
      for (const s of stages) s.afterStep?.(out, K - k + 1);
    }
  }
  const frames = await decodeAll(model, out, n, C, h, w, p.batchSize, track);
  // The source's own clean latents decoded in the same batches as the edit, so an edit that changes nothing
  // decodes to exactly the reconstruction.
  const reconstruction = p.reconstruct
    ? await decodeAll(model, traj.latents[0], n, C, h, w, p.batchSize, track)
    : undefined;
  return {
    frames,
    latentMask: mask,
    warnings,
    sourceSteps: plainUnet && recorded ? { guidance: stepsKey, levels: recorded } : undefined,
    correspondences: state.correspondences,
    stages: ran,
    ...(reconstruction ? { reconstruction } : {}),
  };
}
