// The one interface the denoising loop knows its stages by. A stage is planned once per edit (where it may run UNet
// evaluations of its own, set the mask, compute correspondences), then hooks into every UNet call and every step.
// Stages share what they found through EditState, in the order the pipeline lists them; the loop never names one.
import type { NeighbourFields } from '../../flow/correspondence';
import type { DiffusionModel, PortTensor } from '../../models/sd-model';
import type { PassRequest } from '../../onnx/graph-cache';
import type { EditParams, InvertedTrajectory } from '../types';

/** Per-frame features the cross-frame correspondences are searched in: [n, channels, h, w] at latent resolution. */
export interface SourceFeatures {
  data: Float32Array;
  channels: number;
  kind: 'decoder features' | 'latents';
}

/** What the stages of one edit hand on to each other and to the loop. */
export class EditState {
  /** [n, h, w] at latent resolution, 1 = edit, 0 = keep the source; undefined = the whole frame. */
  mask?: Float32Array;
  /** The automatic mask's normalised score [n, h, w] before thresholding, when the mask was derived. */
  maskScore?: Float32Array;
  /** Correspondences between neighbouring source frames, once a stage computed them (later stages reuse them). */
  fields?: NeighbourFields;
  /** What the correspondences' features were computed from, once something asked for them. */
  correspondences?: SourceFeatures['kind'];
  private source: () => Promise<SourceFeatures>;
  private computed?: Promise<SourceFeatures>;

  constructor(traj: InvertedTrajectory) {
    this.source = () => Promise.resolve({ data: traj.latents[0], channels: traj.channels, kind: 'latents' });
  }

  /** A stage with better features than the source's clean latents installs them; they are computed on first use. */
  provideFeatures(source: () => Promise<SourceFeatures>): void {
    this.source = source;
  }

  /** The source's features, computed once, only if some stage needs them. */
  features(): Promise<SourceFeatures> {
    this.computed ??= this.source().then((f) => {
      this.correspondences = f.kind;
      return f;
    });
    return this.computed;
  }
}

export interface EditContext {
  readonly model: DiffusionModel;
  readonly traj: InvertedTrajectory;
  readonly params: EditParams;
  /** Prompt → one embedding row, for every prompt of the edit (target, source, and "" when guided). */
  readonly embeddings: ReadonlyMap<string, Float32Array>;
  readonly checkStop: () => void;
  readonly state: EditState;
}

/** Frames [start, start + count) in one UNet call. */
export interface FrameBatch {
  start: number;
  count: number;
}

/** One UNet call of the denoising loop, as the stages see it. */
export interface UnetCallInfo {
  /** Denoising step, 1 = the first (from the noisiest level). */
  step: number;
  /** Trajectory level of the latents going in. */
  level: number;
  timestep: number;
  /** First frame of the batch and how many frames it holds. */
  start: number;
  count: number;
  /** The UNet batch is these branches one after the other, `count` items each. */
  branches: readonly { latent: 'source' | 'target'; prompt: string }[];
  /**
   * Set on a stage's keyframe call (EditStage.keyframes): the frames it holds, in batch order, `count` of them; its
   * prediction steps no latent, only afterUnet reads it. `start` is then the first of them.
   */
  keyframes?: readonly number[];
}

export interface EditStage {
  readonly name: string;
  /** Graph passes whose ports the stage feeds or reads: the loop runs one UNet variant with every stage's passes. */
  readonly passes?: readonly PassRequest[];
  /**
   * Once, before the first step, in the pipeline's order. True keeps the stage in the loop (its hooks run); 'done'
   * when all its work was done here (the automatic mask); false when nothing applies to this edit. The edit's result
   * lists the stages that did not return false.
   */
  plan(ctx: EditContext): Promise<boolean | 'done'> | boolean | 'done';
  /**
   * True when the stage's feeds change what the UNet predicts (not only read it): the source branch then runs with
   * the stage too, and source steps recorded without it are neither reused nor handed back for caching.
   */
  readonly changesPrediction?: boolean;
  /**
   * True when the stage reads the source branch inside the same UNet call (structure lock and word swap gather the
   * source items' features into the target items): the source branch then runs at every step, with or without direct
   * inversion, instead of being replaced by recorded steps.
   */
  readonly readsSourceBranch?: boolean;
  /** Regroups the frames into UNet calls (the loop's batches, in order) when the stage needs some frames run first. */
  partition?(parts: readonly FrameBatch[]): FrameBatch[];
  /** Output ports to fetch from every UNet call, or from the calls the function names (handed to afterUnet). */
  readonly outputs?: readonly string[] | ((call: UnetCallInfo) => readonly string[]);
  /**
   * Frames to run together in one more UNet call at the start of step `step`, before the step's own calls, at their
   * current latents (TokenFlow's keyframes, edited jointly and then propagated to every frame). The call's prediction
   * is dropped; the stage reads what it needs in afterUnet. Needs lockstep (an afterStep hook).
   */
  keyframes?: (step: number) => readonly number[] | undefined;
  /** Values for the variant's input ports for this call; ports nobody feeds stay at their neutral values. */
  beforeUnet?: (call: UnetCallInfo) => Readonly<Record<string, PortTensor>> | undefined;
  afterUnet?: (call: UnetCallInfo, outputs: Readonly<Record<string, PortTensor>>) => void;
  /**
   * After denoising step `step` of every frame; z is [n, C, h, w] at trajectory level K − step. A stage with this
   * hook makes the loop step all frames in lockstep (steps outer, batches inner).
   */
  afterStep?: (z: Float32Array, step: number) => void;
}
