import type { ImageBatch, MaskBatch } from '../diffusion/images';
import type { AttentionSpec, ConsistencySpec } from '../api/schemas';

/** Temporal-consistency stages (stages/consistency.ts): the job contract's fields, each optional for library callers. */
export type ConsistencyParams = Partial<ConsistencySpec>;
export type LatentCorrectionParams = NonNullable<ConsistencySpec['latentCorrection']>;

export type CrossFrameParams = NonNullable<AttentionSpec['crossFrame']>;
/** What the automatic mask is read from (api/schemas.ts MaskSpec "auto"). */
export type AutoMaskSource = 'difference' | 'attention' | 'both';

export interface InversionParams {
  /** What the frames show now; the empty prompt is the unconditional model. */
  sourcePrompt: string;
  /** DDIM steps of the full schedule; strength selects how many of them run. */
  steps: number;
  /** In (0, 1]: the edit starts at the noise level reached after strength × steps inversion steps. */
  strength: number;
  /** Frames per UNet call (each guidance branch multiplies the UNet batch). */
  batchSize: number;
}

export interface EditParams {
  prompt: string;
  sourcePrompt: string;
  /** Classifier-free guidance scale; 1 disables the unconditional branch. */
  guidance: number;
  /**
   * Run the source branch beside the target and add its per-step deviation from the inverted trajectory to the
   * target (direct inversion), so the target prompt equal to the source prompt reproduces the input.
   */
  directInversion: boolean;
  /** 1 = edit, 0 = keep the source trajectory; one matte for all frames or one per frame, at frame resolution. */
  mask?: MaskBatch | null;
  /** With no explicit mask: derive one from where source and target prompts disagree (InvEdit / DiffEdit). */
  autoMask?: { threshold: number; levels?: number; from?: AutoMaskSource } | null;
  /** Temporal-consistency stages (consistency.ts, docs/QUALITY.md); absent = none, the loop as it always was. */
  consistency?: ConsistencyParams | null;
  /** Cross-frame attention (stages/cross-frame.ts); absent = each frame attends to itself only. */
  crossFrame?: CrossFrameParams | null;
  /** Prompt words whose cross-attention is scaled (stages/reweight.ts); absent or empty = none. */
  reweight?: AttentionSpec['reweight'];
  /** Structure lock strength (stages/structure-lock.ts), 0 or absent = off. */
  structure?: number;
  /** Prompt-to-prompt word swap (stages/word-swap.ts); absent = off. */
  wordSwap?: AttentionSpec['wordSwap'];
  /** TokenFlow propagation (stages/token-flow.ts); absent = off. */
  tokenFlow?: AttentionSpec['tokenFlow'];
  batchSize: number;
  /**
   * Also VAE-decode the source's own clean latents (level 0 of the trajectory), batched like the edit, and return
   * them as `reconstruction`: the job composites source + (edit − reconstruction) at full resolution.
   */
  reconstruct?: boolean;
}

/** Latents of every frame at every DDIM level of the inversion, so a range can be re-edited without inverting again. */
export interface InvertedTrajectory {
  modelDir: string;
  sourcePrompt: string;
  steps: number;
  strength: number;
  n: number;
  channels: number;
  height: number;
  width: number;
  imageHeight: number;
  imageWidth: number;
  /** Level 0 is the clean end; level k follows the k-th inversion step. */
  alphas: number[];
  timesteps: number[];
  /** latents[k] = all frames at level k, [n, C, h, w]. */
  latents: Float32Array[];
  /** Direct inversion's source-branch steps, recorded by the first edit so a re-edit runs only the target branches. */
  sourceSteps?: SourceSteps;
}

/**
 * The source branch's own DDIM step from every level: levels[k - 1] = the step from level k, [n, C, h, w]. It depends
 * on the source latents, the source prompt and (unless the source branch has no unconditional half and the model no
 * guidance embedding) the guidance scale, never on the target prompt, mask or consistency stages.
 */
export interface SourceSteps {
  /** The guidance scale they were made with, or null when they do not depend on it. */
  guidance: number | null;
  levels: Float32Array[];
}

export type Stage = 'encoding latents' | 'inverting' | 'editing' | 'decoding latents';

export interface Progress {
  stage: Stage;
  /** Units of work done and in all (UNet steps per batch, VAE batches). */
  done: number;
  total: number;
  step?: number;
  steps?: number;
  /** First frame of the batch being processed and the number of frames in all. */
  frame: number;
  frames: number;
  /** The target branch's predicted clean latent of the batch's first frame, [C, h, w]. */
  preview?: { latent: Float32Array; channels: number; height: number; width: number };
}

export interface RunHooks {
  onProgress?(p: Progress): void;
  /** Polled between UNet calls; returning true stops the run with CanceledError. */
  shouldStop?(): boolean;
}

export class CanceledError extends Error {
  override name = 'CanceledError';
  constructor() {
    super('canceled');
  }
}

export interface EditOutput {
  frames: ImageBatch;
  /** The latent-resolution mask that was applied, when there was one. */
  latentMask?: Float32Array;
  warnings: string[];
  /** Source-branch steps this edit computed (direct inversion without matching ones on the trajectory), for caching. */
  sourceSteps?: SourceSteps;
  /** What the cross-frame correspondences were computed from, when a stage needed them. */
  correspondences?: 'decoder features' | 'latents';
  /** The stages that ran in the denoising loop (EditStage.name), in order; absent for methods without stages. */
  stages?: string[];
  /** With `reconstruct`: the VAE decode of the source's clean latents, the same size as `frames`. */
  reconstruction?: ImageBatch;
}

/**
 * Where trajectories are kept between edits (the worker adapts store/inversion-cache.ts to this): a method that can
 * reuse an inversion reads and writes it itself.
 */
export interface TrajectoryStore {
  get(): InvertedTrajectory | undefined;
  put(t: InvertedTrajectory): void;
}

/** What a method gives back: the edit, and for an inversion the trajectory (unless it went into a store). */
export interface MethodOutput extends Omit<EditOutput, 'sourceSteps'> {
  trajectory?: InvertedTrajectory;
  /** With a store: the trajectory came from it (only the edit ran). */
  cacheHit?: boolean;
}
