// TokenFlow (Geyer et al. 2023): at every denoising step one keyframe per group of `keyframeEvery` frames (a random
// pivot in each group, drawn anew each step) is edited in one UNet call with joint self-attention over all keyframes
// (onnx/passes/self-attention-joint.ts, one group per branch); then every frame, keyframes included, runs its own
// call in which each self-attention output is replaced by the keyframes' outputs, gathered at the tokens nearest by
// the source video's features and blended between the frame's two nearest keyframes in time
// (onnx/passes/token-propagation.ts). The edit is made once, on the keyframes, and carried to the other frames along
// the footage's own correspondences, so every frame shows the same edit.
//
// The nearest-neighbour fields are searched in the SOURCE branch's hidden states (the source video's latent at the
// same level, riding in the same call): each item reads the source item source-pairs.ts pairs it with (a source item
// itself), and its keyframes' hidden states from that same source branch; the outputs it takes are the keyframes' of
// its own branch. So a same-prompt edit stays the identity: both branches of a pair see the same inputs throughout.
// A keyframe gets its own joint output back (its own tokens are their nearest, at weight 1).
//
// Cost per step: the keyframe call (1/keyframeEvery more UNet items per frame, joint attention growing with the
// square of the keyframes), and per site and item of every call the keyframes' hidden states and outputs fed in
// (2 × 2 × N × C values) and an N × 2N similarity; tokenFlowMemory sizes it for the memory plan.
import { Rng } from '../../diffusion/random';
import type { ModelInfo, PortTensor } from '../../models/sd-model';
import type { PassRequest } from '../../onnx/graph-cache';
import { selfAttentionJoint, selfAttentionJointPorts } from '../../onnx/passes/self-attention-joint';
import { tokenPropagation, tokenPropagationPorts } from '../../onnx/passes/token-propagation';
import type { EditContext, EditStage } from '../loop/stage';
import type { BankMemory, BankSite } from './cross-frame';
import { sourcePairs } from './source-pairs';

export const DEFAULT_KEYFRAME_EVERY = 8;

interface Site {
  groups: string;
  ports: ReturnType<typeof tokenPropagationPorts>;
}

/** The keyframe call's tensors at one site: [items, N, C] each, items = branches × keyframes, branch-major. */
interface Recorded {
  hidden: PortTensor;
  output: PortTensor;
}

/** Self-attention sites TokenFlow rewrites (every one), or why there are none. */
export function tokenFlowSites(info: ModelInfo): string[] | string {
  const self = info.attention.sites.filter((s) => s.kind === 'self');
  if (self.length) return self.map((s) => s.module);
  return `TokenFlow propagates self-attention outputs between frames, and this model has no self-attention${info.attention.note ? ` (${info.attention.note})` : ''}; turn attention.tokenFlow off or use a Stable Diffusion model`;
}

/** One pivot per group of `every` frames, drawn from a stream fixed by the step, so a job is reproducible. */
export function pivots(n: number, every: number, step: number): number[] {
  const rng = new Rng(0x70c3f10 + step);
  const out: number[] = [];
  for (let start = 0; start < n; start += every)
    out.push(start + Math.floor(rng.uniform() * Math.min(every, n - start)));
  return out;
}

/**
 * The two keyframes frame f blends and their weights, linear in time between the keyframes around it (sorted
 * `keys`); before the first or after the last keyframe, that keyframe alone.
 */
export function bracket(keys: readonly number[], f: number): { at: [number, number]; weight: [number, number] } {
  const last = keys.length - 1;
  if (f <= keys[0]) return { at: [0, 0], weight: [1, 0] };
  if (f >= keys[last]) return { at: [last, last], weight: [1, 0] };
  let i = 0;
  while (keys[i + 1] <= f) i++;
  const w1 = (keys[i + 1] - f) / (keys[i + 1] - keys[i]);
  return { at: [i, i + 1], weight: [w1, 1 - w1] };
}

export function tokenFlowStage(): EditStage {
  let every = DEFAULT_KEYFRAME_EVERY;
  let n = 0;
  let sites: Site[] = [];
  let passes: PassRequest[] = [];
  let prompts = { prompt: '', sourcePrompt: '' };
  /** This step's keyframes and what their call recorded, per site module. */
  let keys: number[] = [];
  let recorded = new Map<string, Recorded>();

  return {
    name: 'TokenFlow',
    changesPrediction: true,
    readsSourceBranch: true,
    get passes() {
      return passes;
    },
    plan(ctx: EditContext) {
      const tf = ctx.params.tokenFlow;
      if (!tf) return false;
      const modules = tokenFlowSites(ctx.model.info);
      if (typeof modules === 'string') throw new Error(modules);
      every = tf.keyframeEvery;
      n = ctx.traj.n;
      prompts = { prompt: ctx.params.prompt, sourcePrompt: ctx.params.sourcePrompt };
      sites = modules.map((m) => ({ groups: selfAttentionJointPorts(m).groups, ports: tokenPropagationPorts(m) }));
      // Propagation first: it finds the value MatMul that joint attention then reroutes.
      passes = [
        { pass: tokenPropagation, options: { sites: modules } },
        { pass: selfAttentionJoint, options: { sites: modules } },
      ];
      return true;
    },
    keyframes(step) {
      keys = pivots(n, every, step);
      recorded = new Map();
      return keys;
    },
    outputs(call) {
      return call.keyframes ? sites.flatMap((s) => [s.ports.hiddenOut, s.ports.outputOut]) : [];
    },
    beforeUnet(call) {
      const items = call.branches.length * call.count;
      if (call.keyframes) {
        // One group per branch: a keyframe attends to every keyframe of its own branch.
        const groups = {
          data: Float32Array.from({ length: items }, (_, i) => Math.floor(i / call.count)),
          dims: [items],
        };
        return Object.fromEntries(sites.map((s) => [s.groups, groups]));
      }
      const pairs = sourcePairs(call, prompts, 'both');
      const brackets = Array.from({ length: call.count }, (_, j) => bracket(keys, call.start + j));
      const feeds: Record<string, PortTensor> = {};
      const source = { data: Float32Array.from(pairs.source), dims: [items] };
      const weight = new Float32Array(items * 2);
      for (let i = 0; i < items; i++) weight.set(brackets[i % call.count].weight, 2 * i);
      const on = { data: new Float32Array(items).fill(1), dims: [items, 1, 1] };
      for (const site of sites) {
        const r = recorded.get(site.ports.hiddenOut)!;
        // Per item: its keyframes' hidden states from the branch of its source item, outputs from its own branch.
        const pick = (t: PortTensor, branchOf: (item: number) => number) => {
          const [, N, width] = t.dims;
          const row = N * width;
          const out = new Float32Array(items * 2 * row);
          for (let i = 0; i < items; i++) {
            const b = branchOf(i);
            brackets[i % call.count].at.forEach((k, slot) =>
              out.set(
                t.data.subarray((b * keys.length + k) * row, (b * keys.length + k + 1) * row),
                (2 * i + slot) * row,
              ),
            );
          }
          return { data: out, dims: [items, 2, N, width] };
        };
        feeds[site.ports.keyHidden] = pick(r.hidden, (i) => Math.floor(pairs.source[i] / call.count));
        feeds[site.ports.keyOutput] = pick(r.output, (i) => Math.floor(i / call.count));
        feeds[site.ports.source] = source;
        feeds[site.ports.weight] = { data: weight, dims: [items, 2] };
        feeds[site.ports.on] = on;
      }
      return feeds;
    },
    afterUnet(call, outputs) {
      if (!call.keyframes) return;
      for (const site of sites)
        recorded.set(site.ports.hiddenOut, {
          hidden: outputs[site.ports.hiddenOut],
          output: outputs[site.ports.outputOut],
        });
    },
    afterStep() {
      recorded = new Map();
    },
  };
}

const FLOAT_BYTES = 4;
const INDEX_BYTES = 8;

/**
 * What TokenFlow adds to UNet calls, from what it feeds and keeps (fp32 in JavaScript): per item of a frame's call,
 * every site's two keyframes' hidden states and outputs fed in, and inside the call, one site at a time, their
 * expanded copies, the N × 2N cosines and the int64 gather indices; held between calls, every keyframe's hidden states
 * and outputs per branch; and the keyframe call's joint attention, quadratic in the keyframes (`jointFrames`).
 */
export function tokenFlowMemory(
  sites: readonly BankSite[],
  frames: number,
  every: number,
  branches: number,
  slices: number,
): BankMemory {
  const keyframes = Math.ceil(frames / every);
  const row = sites.map((s) => s.tokens * s.width * FLOAT_BYTES);
  const all = row.reduce((a, b) => a + b, 0);
  const transient = Math.max(
    0,
    ...sites.map(
      (s, i) => 2 * 2 * row[i] + 2 * s.tokens * s.tokens * FLOAT_BYTES + 2 * s.tokens * s.width * INDEX_BYTES,
    ),
  );
  const pair = Math.max(
    0,
    ...sites.map(
      (s, i) => 2 * row[i] + 2 * s.heads * Math.ceil(s.tokens / Math.max(1, slices)) * s.tokens * FLOAT_BYTES,
    ),
  );
  return {
    itemBytes: 2 * 2 * all + transient,
    heldBytes: keyframes * branches * 2 * all,
    pairBytes: pair,
    jointFrames: keyframes,
  };
}
