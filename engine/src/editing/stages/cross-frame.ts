// Cross-frame attention: every frame's self-attention also reads the keys and values of anchor frames at the same
// denoising step and branch, so what the frames show is drawn from one shared set of features instead of each frame
// drifting on its own (Text2Video-Zero: frame 0's K/V instead of the frame's own; FateZero/Tune-A-Video: the first
// and previous frames'). The UNet takes the anchors' K/V as explicit inputs (onnx/passes/self-attention-bank.ts,
// the StreamV2V design): each call outputs its frames' own K/V, the stage keeps the anchors' for the current step,
// and feeds them as the bank of the frames that follow.
//
// An anchor must have run before the frames that read it, at the same step: the stage steps all frames in lockstep
// (it has an afterStep hook), runs frame 0 in a call of its own, and with the previous frame as an anchor, one frame
// per call. Frame 0 itself attends only to itself, as in the papers.
//
// Because the stage changes what the UNet predicts, the source branch must run with it too: direct inversion then
// still cancels exactly (a same-prompt edit comes back as it went in), and source steps recorded without the stage
// are neither reused nor stored (loop/inversion-loop.ts).
//
// Cost per anchor frame, per batch item and self-attention site: the site's keys and values (N·C values each), fed in
// and read out every call; and the scores grow from N×N to N×(N + anchors·N). crossFrameMemory below sizes it for the
// memory plan (jobs/memory-plan.ts).
//
// Across the chunks of a long clip (long-clip.ts inversionChunk), the clip's frame 0 rides along ahead of every later
// chunk's frames: the stage sees it as the chunk's frame 0 and anchors every frame on it, as an unchunked edit does.
import type { ModelInfo, PortTensor } from '../../models/sd-model';
import type { PassRequest } from '../../onnx/graph-cache';
import { selfAttentionBank, selfAttentionBankPorts } from '../../onnx/passes/self-attention-bank';
import { selfAttentionJoint, selfAttentionJointPorts } from '../../onnx/passes/self-attention-joint';
import type { EditContext, EditStage, UnetCallInfo } from '../loop/stage';
import type { CrossFrameParams } from '../types';

/** Added to the scores of a frame's own keys in replace mode: exp(−1e4·scale) is exactly 0 (see the pass). */
const REPLACE_BIAS = -1e4;

interface Site {
  module: string;
  ports: ReturnType<typeof selfAttentionBankPorts>;
}

/** Self-attention sites the stage rewrites, or why there are none. */
export function crossFrameSites(info: ModelInfo, layers: CrossFrameParams['layers']): string[] | string {
  const self = info.attention.sites.filter((s) => s.kind === 'self');
  if (!self.length)
    return `cross-frame attention needs self-attention in the UNet, and this model has none${info.attention.note ? ` (${info.attention.note})` : ''}; turn attention.crossFrame off or use a Stable Diffusion model`;
  const chosen = layers === 'decoder' ? self.filter((s) => s.module.startsWith('up_blocks.')) : self;
  if (!chosen.length)
    return `this UNet has no self-attention in its decoder (up_blocks); use attention.crossFrame.layers "all"`;
  return chosen.map((s) => s.module);
}

/** K and V of one frame at one site, per branch: [heads·N·d] each, in the port's layout. */
interface FrameKv {
  key: Float32Array[];
  value: Float32Array[];
}

export function crossFrameStage(): EditStage {
  let p: CrossFrameParams;
  let sites: Site[] = [];
  /** The anchors' K/V at the current step, per site: frame 0's, and the last frame run (the next one's previous). */
  let first = new Map<string, FrameKv>();
  let previous = new Map<string, FrameKv>();
  /** Per site, the layout key_out and value_out came in. */
  let layout = new Map<string, { key: KvLayout; value: KvLayout }>();
  let passes: PassRequest[] = [];
  let outputs: string[] = [];
  /** With anchors "all": every site's `groups` port. */
  let joint: string[] = [];

  return {
    name: 'cross-frame attention',
    changesPrediction: true,
    get passes() {
      return passes;
    },
    get outputs() {
      return outputs;
    },
    plan(ctx: EditContext) {
      const cf = ctx.params.crossFrame;
      if (!cf) return false;
      const modules = crossFrameSites(ctx.model.info, cf.layers);
      if (typeof modules === 'string') throw new Error(modules);
      p = cf;
      sites = modules.map((module) => ({ module, ports: selfAttentionBankPorts(module) }));
      layout = new Map();
      if (cf.anchors === 'all') {
        // The frames of a call attend to each other inside the graph (self-attention-joint): nothing to carry.
        joint = modules.map((m) => selfAttentionJointPorts(m).groups);
        passes = [{ pass: selfAttentionJoint, options: { sites: modules } }];
        outputs = [];
        return true;
      }
      joint = [];
      passes = [{ pass: selfAttentionBank, options: { sites: modules } }];
      outputs = sites.flatMap((s) => [s.ports.keyOut, s.ports.valueOut]);
      return true;
    },
    partition(parts) {
      if (p.anchors === 'all') return [...parts];
      const n = parts.reduce((a, b) => a + b.count, 0);
      if (p.anchors === 'first+previous') return Array.from({ length: n }, (_, start) => ({ start, count: 1 }));
      // Frame 0 alone, then the rest in calls of the batch size the loop chose.
      const size = Math.max(1, ...parts.map((b) => b.count));
      const out = [{ start: 0, count: 1 }];
      for (let start = 1; start < n; start += size) out.push({ start, count: Math.min(size, n - start) });
      return out;
    },
    beforeUnet(call) {
      if (joint.length) {
        // One group per branch: a frame attends to the frames of its own branch in the call, never across branches.
        const groups = {
          data: Float32Array.from({ length: call.branches.length * call.count }, (_, i) => Math.floor(i / call.count)),
          dims: [call.branches.length * call.count],
        };
        return Object.fromEntries(joint.map((port) => [port, groups]));
      }
      if (call.start === 0) return undefined;
      const feeds: Record<string, PortTensor> = {};
      for (const site of sites) {
        const anchors = [first.get(site.module)!];
        if (p.anchors === 'first+previous') anchors.push(previous.get(site.module)!);
        const l = layout.get(site.module)!;
        feeds[site.ports.bankKey] = bank(
          anchors.map((a) => a.key),
          call,
          l.key,
        );
        feeds[site.ports.bankValue] = bank(
          anchors.map((a) => a.value),
          call,
          l.value,
        );
        if (p.mode === 'replace') feeds[site.ports.bias] = { data: Float32Array.of(REPLACE_BIAS), dims: [1] };
      }
      return feeds;
    },
    afterUnet(call, outputs) {
      if (joint.length) return;
      const items = call.branches.length * call.count;
      for (const site of sites) {
        const k = outputs[site.ports.keyOut];
        const v = outputs[site.ports.valueOut];
        const l = { key: kvLayout(k, items), value: kvLayout(v, items) };
        layout.set(site.module, l);
        const take = (j: number): FrameKv => ({
          key: call.branches.map((_, b) => slice(k.data, b * call.count + j, l.key)),
          value: call.branches.map((_, b) => slice(v.data, b * call.count + j, l.value)),
        });
        if (call.start === 0) first.set(site.module, take(0));
        // Kept only where it is read: at SD 1.5 sizes a frame's K and V over all sites and branches are ~370 MB.
        if (p.anchors === 'first+previous') previous.set(site.module, take(call.count - 1));
      }
    },
    afterStep() {
      first = new Map();
      previous = new Map();
    },
  };
}

/** How one site's K or V came out: split [items, heads, N, d] or folded [items·heads, N, d], item-major either way. */
interface KvLayout {
  rank: number;
  heads: number;
  tokens: number;
  width: number;
}

function kvLayout(t: PortTensor, items: number): KvLayout {
  const [tokens, width] = t.dims.slice(-2);
  const heads = t.dims.length === 4 ? t.dims[1] : t.dims[0] / items;
  return { rank: t.dims.length, heads, tokens, width };
}

function slice(data: Float32Array, item: number, l: KvLayout): Float32Array {
  const size = l.heads * l.tokens * l.width;
  return data.slice(item * size, (item + 1) * size);
}

/**
 * The bank of every item of a call: per item (branch b, frame j), the anchors' K (or V) of branch b concatenated along
 * the token axis, head by head, in the port's layout.
 */
function bank(anchors: Float32Array[][], call: UnetCallInfo, l: KvLayout): PortTensor {
  const items = call.branches.length * call.count;
  const head = l.tokens * l.width;
  const S = anchors.length;
  const out = new Float32Array(items * l.heads * S * head);
  for (let b = 0; b < call.branches.length; b++)
    for (let j = 0; j < call.count; j++) {
      const item = b * call.count + j;
      for (let h = 0; h < l.heads; h++)
        for (let a = 0; a < S; a++)
          out.set(anchors[a][b].subarray(h * head, (h + 1) * head), ((item * l.heads + h) * S + a) * head);
    }
  const dims = l.rank === 4 ? [items, l.heads, S * l.tokens, l.width] : [items * l.heads, S * l.tokens, l.width];
  return { data: out, dims };
}

/** One self-attention site the bank is fed at, sized at the job's latent. */
export interface BankSite {
  module: string;
  /** Tokens N of one frame at the site. */
  tokens: number;
  heads: number;
  /** heads × head width: one frame's K (or V) at the site is tokens × width values. */
  width: number;
}

/** What the stage adds to a UNet call's memory, beyond the plain UNet's. */
export interface BankMemory {
  /** Per batch item of a banked call (one frame in one branch). */
  itemBytes: number;
  /** Held from call to call whatever the batch: the anchors' K and V, for every branch. */
  heldBytes: number;
  /** Frames per UNet call the stage runs whatever the batch size asks (one, with the previous frame as an anchor). */
  framesPerCall?: number;
  /**
   * With joint attention: per ordered pair of distinct frames of one branch in a call, what it adds (the query item's
   * scores against the other item's keys, and the other item's K and V copied into its joint axis). Quadratic in the
   * frames per call: the plan multiplies it by itemsPerFrame·frames·(frames − 1).
   */
  pairBytes?: number;
  /** Frames of a joint call the stage runs whatever the batch (TokenFlow's keyframes); otherwise the call's frames. */
  jointFrames?: number;
}

const FLOAT_BYTES = 4;

/**
 * From what the stage feeds and keeps (fp32 throughout; an fp16 graph holds half inside ONNX Runtime): for every call,
 * each site's bank (S anchor frames of K and V) is fed in and the frame's own K and V come out; inside the call, one
 * site at a time, K and V are concatenated with the bank and the scores and probabilities of each slice's ⌈N/slices⌉
 * query rows grow by S·N columns per head. Between calls the stage keeps the anchors' K and V per branch.
 */
export function crossFrameMemory(
  sites: readonly BankSite[],
  cf: CrossFrameParams,
  branches: number,
  slices: number,
): BankMemory {
  const S = cf.anchors === 'first+previous' ? 2 : 1;
  const kv = sites.map((s) => s.tokens * s.width * FLOAT_BYTES);
  const all = kv.reduce((a, b) => a + b, 0);
  const widerScores = (s: BankSite) =>
    2 * s.heads * Math.ceil(s.tokens / Math.max(1, slices)) * S * s.tokens * FLOAT_BYTES;
  const transient = Math.max(0, ...sites.map((s, i) => 2 * S * kv[i] + widerScores(s)));
  // Joint attention feeds and keeps nothing: every other item of the call is one more anchor, inside the graph.
  if (cf.anchors === 'all') return { itemBytes: 0, heldBytes: 0, pairBytes: transient };
  const ports = (2 * S + 2) * all;
  return {
    itemBytes: ports + transient,
    heldBytes: S * branches * 2 * all,
    ...(S === 2 ? { framesPerCall: 1 } : {}),
  };
}
