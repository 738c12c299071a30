// THE contract between the panel, the web UI, the CLI and the engine server. Every request is parsed here and
// nowhere else; the OpenAPI document is generated from these schemas.
import { z } from 'zod';

const finiteSeconds = (name: string) =>
  z.number({ error: `${name} must be a number of seconds` }).finite(`${name} must be a finite number of seconds`);

export const SourceRange = z
  .object({
    path: z.string().min(1, "source.path is empty: give the absolute path of the clip's media file").max(4096),
    // In and Out as the editor calls them; the issue's path (source.in, source.out) says which field for the form.
    in: finiteSeconds('In').min(0, 'In must be at the start of the clip or later (0 seconds or more)'),
    out: finiteSeconds('Out').positive('Out must be after the start of the clip (more than 0 seconds)'),
  })
  .strict()
  .refine((r) => r.out > r.in, { message: 'Out must be later than In', path: ['out'] });

const unit = (name: string) =>
  z.number().min(0, `${name} must be between 0 and 1`).max(1, `${name} must be between 0 and 1`);

export const MaskSpec = z.discriminatedUnion('type', [
  z.object({ type: z.literal('none') }).strict(),
  z
    .object({
      type: z.literal('auto'),
      threshold: unit('mask.threshold').optional(),
      /**
       * What the automatic mask is read from: "difference" (DiffEdit: where the two prompts disagree about the noise;
       * the default), "attention" (FateZero: the cross-attention maps of the words the edit changes; needs a model
       * with cross-attention and sourcePrompt), or "both" (the mean of the two scores).
       */
      from: z.enum(['difference', 'attention', 'both']).optional(),
    })
    .strict(),
  z.object({ type: z.literal('file'), path: z.string().min(1, 'mask.path is empty').max(4096) }).strict(),
  z
    .object({ type: z.literal('box'), x: unit('mask.x'), y: unit('mask.y'), w: unit('mask.w'), h: unit('mask.h') })
    .strict()
    .refine((b) => b.w > 0 && b.h > 0 && b.x + b.w <= 1.0001 && b.y + b.h <= 1.0001, {
      message: 'the mask box must have a size and lie inside the frame (x + w ≤ 1, y + h ≤ 1)',
    }),
]);

export const METHODS = ['inversion', 'sdedit', 'fast'] as const;
export const CODECS = ['h264', 'prores'] as const;

export const OutputSpec = z
  .object({
    /** A file to write; its folder must exist. */
    path: z.string().min(1).max(4096).optional(),
    /** Or a folder: the engine names the file after the clip and the job. */
    folder: z.string().min(1).max(4096).optional(),
    codec: z.enum(CODECS).default('h264'),
    audio: z.boolean().default(false),
    overwrite: z.boolean().default(false),
    /**
     * "full": the result is built at the source's display size from the source's own pixels, source + (edit −
     * reconstruction) upscaled through the mask, so what the edit leaves alone comes back as it was. "working": the
     * model's frames scaled up to the display size (the behaviour before full-resolution compositing).
     */
    composite: z.enum(['full', 'working']).default('full'),
  })
  .strict()
  .refine((o) => !(o.path && o.folder), { message: 'give output.path or output.folder, not both' });

/**
 * Temporal-consistency stages of the inversion edit (docs/QUALITY.md: what each does to the measured figures). The
 * defaults are the best setting measured by `reshoot eval --suite synthetic`; every stage can be switched off.
 */
const weight = z
  .number()
  .min(0, 'latent correction weights must be 0 or more')
  .max(1, 'latent correction weights must be at most 1');
export const ConsistencySpec = z
  .object({
    /** GenVideo §3.3: blend each frame's latent inside the mask with its neighbours' along source correspondences. */
    latentCorrection: z
      .object({
        /** Denoising steps (from the noisy end) after which the correction runs. */
        steps: z.int().min(0).max(200),
        /** [previous frame, the frame, next frame]; they sum to 1. */
        weights: z.tuple([weight, weight, weight]).refine((w) => Math.abs(w[0] + w[1] + w[2] - 1) < 1e-6, {
          message: 'latent correction weights must sum to 1',
        }),
        /** Correspondence search radius in latent pixels; default 6 (motion up to 6 latent pixels a frame: 5 px/frame on the oracle was missed at 4). */
        radius: z.int().min(1).max(16).optional(),
        /** Matches below this cosine similarity are not used; default 0.5. */
        minSimilarity: z.number().min(-1).max(1).optional(),
      })
      .strict()
      .nullable()
      .default({ steps: 10, weights: [0.25, 0.5, 0.25] }),
    /**
     * Align each frame's latent mean and spread inside the mask to the chunk's first frame: after every denoising
     * step, or after the first `steps` only.
     */
    anchorStats: z.union([z.boolean(), z.object({ steps: z.int().min(0).max(200) }).strict()]).default(false),
    /** Motion-compensated temporal smoothing of the automatic mask: each neighbouring frame's weight. */
    maskSmoothing: z
      .number()
      .min(0)
      .max(1 / 3, 'consistency.maskSmoothing must be at most 1/3')
      .default(0.25),
    /**
     * Hysteresis for the automatic mask: a region above mask.threshold is kept only if its score reaches this value
     * somewhere (scores are normalised to the frame's maximum), so specks without a strong core are dropped. Off (0)
     * by default: a wanted region that scores weaker than the frame's strongest one is dropped too (docs/QUALITY.md).
     */
    maskSeed: z.number().min(0).max(1).default(0),
    /** Grow the automatic mask by this many latent pixels. */
    maskDilate: z.int().min(0).max(16).default(0),
    /** Outward soft edge of the automatic mask, latent pixels. */
    softEdge: z.int().min(0).max(16).default(1),
    /** Frames shared and crossfaded by consecutive chunks of a long clip, so chunk seams do not show. */
    chunkOverlap: z.int().min(0).max(8).default(4),
  })
  .strict();
export type ConsistencySpec = z.output<typeof ConsistencySpec>;

/**
 * Attention-level methods of the inversion edit (docs/QUALITY.md, "Attention-level methods"): each rewrites the UNet's
 * attention for the job and is off unless asked for. They need a UNet with self-attention (Stable Diffusion, not the
 * embedded oracle).
 */
export const AttentionSpec = z
  .object({
    /**
     * Cross-frame attention: every frame's self-attention also reads an anchor frame's keys and values at the same
     * step. "first": frame 0's (Text2Video-Zero); "first+previous": frame 0's and the previous frame's (FateZero),
     * one frame per UNet call; "all": every frame's of its UNet call (Tune-A-Video, TokenFlow's keyframes; memory
     * grows with the square of the frames per call). mode "extend": the frame's own keys and the anchors';
     * "replace": the anchors' only (not with "all", whose anchors include the frame). layers "all" self-attention
     * layers, or only the decoder's (up_blocks).
     */
    crossFrame: z
      .object({
        anchors: z.enum(['first', 'first+previous', 'all']).default('first'),
        mode: z.enum(['extend', 'replace']).default('extend'),
        layers: z.enum(['all', 'decoder']).default('all'),
      })
      .strict()
      .refine((c) => !(c.anchors === 'all' && c.mode === 'replace'), {
        message:
          'attention.crossFrame.mode "replace" drops the frame\'s own keys, which anchors "all" includes; use mode "extend"',
        path: ['mode'],
      })
      .nullable()
      .default(null),
    /**
     * Prompt-to-prompt's attention re-weighting: how strongly the edit follows each listed word of the prompt, by
     * scaling the cross-attention to its tokens (1 = as written, 0 = ignore the word, 2 = twice as strong).
     */
    reweight: z
      .array(
        z
          .object({
            word: z.string().trim().min(1, 'attention.reweight: give a word of the prompt').max(64),
            scale: z.number().min(0).max(10, 'attention.reweight: a scale above 10 only burns the image; use 0–3'),
          })
          .strict(),
      )
      .max(16)
      .default([]),
    /**
     * Structure lock (plug-and-play injection): for the first part of the steps the edit takes the source video's
     * self-attention queries and keys in the decoder and the features of up_blocks.1.resnets.1, so the result keeps
     * the footage's layout and motion. 0 = off; 1 = the strongest lock (features through all steps, queries and keys
     * through 62.5 %); the named presets in STRUCTURE_PRESETS, "balanced" (0.8) being PnP's own setting.
     */
    structure: z.number().min(0).max(1, 'attention.structure is a strength from 0 (off) to 1').default(0),
    /**
     * Prompt-to-prompt word swap and refine: for the first `steps` fraction of the steps the target prompt's
     * cross-attention to every word it shares with sourcePrompt (or swapped for one of its words) follows the source's
     * maps, so the edit changes what the words say and keeps where they were; words only the target has attend freely.
     */
    wordSwap: z
      .object({ steps: z.number().gt(0).max(1).default(0.8) })
      .strict()
      .nullable()
      .default(null),
    /**
     * TokenFlow propagation: at every step one keyframe per `keyframeEvery` frames (drawn anew each step) is edited
     * with joint attention over all keyframes, and every frame's self-attention outputs are taken from its two nearest
     * keyframes along the source video's own token correspondences, so every frame shows the same edit. 1 makes every
     * frame a keyframe (joint attention over the whole chunk). Not with crossFrame, whose work it does.
     */
    tokenFlow: z
      .object({
        keyframeEvery: z
          .number()
          .int('attention.tokenFlow.keyframeEvery is a whole number of frames')
          .min(1)
          .max(64, 'attention.tokenFlow.keyframeEvery above 64 leaves too few keyframes to follow the motion; use 4–16')
          .default(8),
      })
      .strict()
      .nullable()
      .default(null),
  })
  .strict();
export type AttentionSpec = z.output<typeof AttentionSpec>;

/**
 * Named strengths of attention.structure, from looser to tighter (Luma's Modify Video names its nine likewise): what
 * the panel's control and the CLI's --structure offer.
 */
export const STRUCTURE_PRESETS = {
  off: 0,
  reimagine: 0.25,
  loose: 0.5,
  balanced: 0.8,
  'keep structure': 1,
} as const satisfies Record<string, number>;

export const PROMPT_MAX_CHARS = 2000;

/** A model's id: the name of its folder, safe in a queue name and a Redis key. */
export const MODEL_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export const JobRequest = z
  .object({
    source: SourceRange,
    prompt: z
      .string()
      .trim()
      .min(1, 'prompt is empty: say what the range should become')
      .max(
        PROMPT_MAX_CHARS,
        `prompt is longer than ${PROMPT_MAX_CHARS} characters; shorten it to the words that matter (the text encoder reads only ~75 words)`,
      ),
    sourcePrompt: z
      .string()
      .trim()
      .max(
        PROMPT_MAX_CHARS,
        `sourcePrompt is longer than ${PROMPT_MAX_CHARS} characters; shorten it to a plain description of the shot`,
      )
      .default(''),
    mask: MaskSpec.default({ type: 'none' }),
    method: z.enum(METHODS).default('inversion'),
    /**
     * DDIM steps. 10: on `reshoot eval --suite synthetic` every quality figure at 10 steps is as good as at 50 or
     * better, at a fifth of the UNet evaluations (docs/QUALITY.md, "Steps against quality").
     */
    steps: z
      .int('steps must be a whole number')
      .min(1, 'steps must be at least 1')
      .max(200, 'steps must be at most 200')
      .default(10),
    guidance: z
      .number()
      .finite()
      .min(0, 'guidance must be 0 or more')
      .max(30, 'guidance above 30 only burns the image; use 1–15')
      .default(7.5),
    /** Defaults by method: 1 for inversion (edit from the fully inverted latent), 0.6 for SDEdit, 0.5 for fast. */
    strength: z.number().finite().gt(0, 'strength must be more than 0').max(1, 'strength must be at most 1').optional(),
    seed: z
      .int()
      .min(0)
      .max(2 ** 32 - 1)
      .optional(),
    directInversion: z.boolean().default(true),
    /**
     * Frames per UNet call at most: the engine uses fewer where memory or the CPU calls for it (result.memory says
     * how many and why).
     */
    batchSize: z.int().min(1).max(64).default(4),
    /** Absent: the defaults of ConsistencySpec (the runner fills them in), so every stage's default applies. */
    consistency: ConsistencySpec.optional(),
    attention: AttentionSpec.optional(),
    /**
     * method "fast", for distilled models (SD-Turbo, LCM): UNet evaluations per frame, with no guidance batch (an LCM
     * UNet gets guidance as its embedding). `steps` is the schedule of the other methods and does not apply.
     */
    fast: z
      .object({
        steps: z
          .int('fast.steps must be a whole number')
          .min(1, 'fast.steps must be at least 1')
          .max(4, 'fast.steps must be at most 4; for more steps use method "sdedit" or "inversion"')
          .default(2),
      })
      .strict()
      .optional(),
    preview: z
      .object({
        frames: z.int().min(1).max(16).default(4),
        scale: z.number().min(0.1).max(1).default(0.5),
      })
      .strict()
      .optional(),
    output: OutputSpec.optional(),
    /**
     * The model to run, by id: its folder's name, as GET /v1/models and GET /v1/workers list it. Absent: the engine's
     * own model. With a render queue (`reshoot serve --queue`) a render node that has the model runs the job.
     */
    model: z
      .string()
      .regex(
        MODEL_ID,
        'model is a model id (letters, digits, ".", "_" and "-", as GET /v1/workers lists them), not a path',
      )
      .optional(),
  })
  .strict();

export type JobRequestInput = z.input<typeof JobRequest>;
export type JobRequest = z.output<typeof JobRequest>;

export const JOB_STATES = ['queued', 'running', 'succeeded', 'failed', 'canceled'] as const;

export const STAGES = [
  'queued',
  'probing',
  'measuring memory',
  'decoding',
  'encoding latents',
  'inverting',
  'editing',
  'decoding latents',
  'writing',
  'done',
] as const;

export const JobProgress = z.object({
  stage: z.enum(STAGES),
  fraction: z.number().min(0).max(1),
  step: z.int().optional(),
  steps: z.int().optional(),
  frame: z.int().optional(),
  frames: z.int().optional(),
  /**
   * The frames of `frames` the running stage works on, 1-based and inclusive (a chunk of a long clip, its overlap with
   * the chunk before included): "frames 13–24 of 24". `step`/`steps` count within these frames and restart with each
   * chunk; `fraction` is the whole job's and never goes back.
   */
  frameRange: z.object({ first: z.int(), last: z.int() }).optional(),
  /** Seconds left, from the rate of the whole job so far. */
  etaSec: z.number().optional(),
  /** A queued job's place in the queue, 1-based (1: the next to run); it moves up as the jobs ahead of it start. */
  queuePosition: z.int().optional(),
  /**
   * Why a queued job is not moving on, in the editor's words, when it is something other than the jobs ahead of it:
   * "waiting for the render farm's queue: Redis … cannot be reached". Absent once that is over.
   */
  waiting: z.string().optional(),
});
export type JobProgress = z.infer<typeof JobProgress>;

const ms = z.number().min(0);

/**
 * Where a job's wall time went, in milliseconds. The stages (probe … encode wait, then other) add up to totalMs; decode
 * and encode run beside the compute, so only the time the job waited on them is charged. unetMs/vaeMs/textMs are time
 * inside ONNX Runtime's session.run, counted within their stages.
 */
export const JobTimings = z.object({
  probeMs: ms,
  decodeWaitMs: ms,
  vaeEncodeMs: ms,
  inversionMs: ms,
  editMs: ms,
  vaeDecodeMs: ms,
  encodeWaitMs: ms,
  otherMs: ms,
  totalMs: ms,
  /** Inside "other": text encoding, moving tasks and results between threads, the inversion cache, finishing the file. */
  textMs: ms,
  transferMs: ms,
  cacheMs: ms,
  finishMs: ms,
  unetRuns: z.int(),
  unetMs: ms,
  vaeMs: ms,
});
export type JobTimings = z.infer<typeof JobTimings>;

/** Frames per UNet call the job used, and why (jobs/memory-plan.ts): the request's batchSize is a maximum. */
export const JobMemory = z.object({
  batchSize: z.int(),
  requestedBatchSize: z.int(),
  reason: z.string(),
  /** The engine's expected peak resident memory for the job, where the model's cost was measured. */
  estimatedPeakBytes: z.number().optional(),
  /** What the job was allowed: free memory less a margin for other applications, or the --max-memory limit. */
  budgetBytes: z.number().optional(),
});
export type JobMemory = z.infer<typeof JobMemory>;

export const JobResult = z.object({
  path: z.string(),
  frames: z.int(),
  fps: z.object({ num: z.int(), den: z.int() }),
  width: z.int(),
  height: z.int(),
  durationSec: z.number(),
  codec: z.enum(CODECS),
  workingSize: z.object({ width: z.int(), height: z.int() }),
  unetEvaluations: z.int(),
  inversionCacheHit: z.boolean(),
  seconds: z.number(),
  /** PNG sequence (printf pattern) of the automatic mask, one matte per output frame, when the job used one. */
  mattePath: z.string().optional(),
  /** What mask smoothing and latent correction matched frames by: the UNet's decoder features, or the latents when the model exposes none. */
  correspondences: z.enum(['decoder features', 'latents']).optional(),
  /** The inversion edit's stages that ran (e.g. "automatic mask", "latent correction", "cross-frame attention"). */
  stages: z.array(z.string()).optional(),
  timings: JobTimings.optional(),
  memory: JobMemory.optional(),
});
export type JobResult = z.infer<typeof JobResult>;

export const Job = z.object({
  id: z.string(),
  state: z.enum(JOB_STATES),
  createdAt: z.string(),
  startedAt: z.string().optional(),
  finishedAt: z.string().optional(),
  request: JobRequest,
  /** The seed actually used (drawn at submission when the request had none). */
  seed: z.int(),
  /** Where the result is (or will be) written. */
  outputPath: z.string(),
  progress: JobProgress,
  result: JobResult.optional(),
  error: z.object({ title: z.string(), detail: z.string() }).optional(),
  warnings: z.array(z.string()),
  /** How often an engine restart re-queued this job. */
  restarts: z.int(),
  /** The render node that runs (or ran) it, when the engine hands its jobs to a queue (`reshoot serve --queue`). */
  worker: z.object({ id: z.string(), host: z.string() }).optional(),
});
export type Job = z.infer<typeof Job>;

/** A render node (`reshoot worker`) as it last announced itself on the queue; GET /v1/workers. */
export const WorkerStatus = z.object({
  id: z.string(),
  host: z.string(),
  /** The execution provider its model runs on (e.g. "cuda", "cpu"). */
  provider: z.string(),
  /** The card (or processor) it computes on, as its driver names it; absent when the node cannot tell. */
  device: z.string().optional(),
  models: z.array(z.string()),
  /** Jobs it takes at once. */
  concurrency: z.int(),
  /** Ids of the jobs it runs now. */
  currentJobs: z.array(z.string()),
  /** ISO time of its last heartbeat; a node that stops announcing itself drops off the list. */
  lastHeartbeat: z.string(),
});
export type WorkerStatus = z.infer<typeof WorkerStatus>;

export const Health = z.object({
  ok: z.literal(true),
  version: z.string(),
  model: z.string(),
  modelDir: z.string(),
  provider: z.string(),
  providerFallbacks: z.array(z.string()),
  /** Whether ffmpeg/ffprobe can be started; when not, detail says how to point the engine at them. */
  ffmpeg: z.object({ ok: z.boolean(), detail: z.string().optional() }).optional(),
  queue: z.object({
    queued: z.int(),
    running: z.int(),
    /** With a render queue (serve --queue): whether the engine reaches its Redis now. Absent without one. */
    reachable: z.boolean().optional(),
    /** The render queue's URL, without credentials. */
    url: z.string().optional(),
    /** Why it cannot be reached, when it cannot. */
    detail: z.string().optional(),
  }),
});
export type Health = z.infer<typeof Health>;

export const ModelEntry = z.object({
  name: z.string(),
  dir: z.string(),
  loaded: z.boolean(),
  nativeSize: z.int().optional(),
  latentChannels: z.int().optional(),
  provider: z.string().optional(),
});

export const MediaInfoSchema = z
  .object({
    path: z.string(),
    container: z.string(),
    durationSec: z.number(),
    video: z
      .object({
        codec: z.string(),
        width: z.int(),
        height: z.int(),
        displayWidth: z.int(),
        displayHeight: z.int(),
        rotation: z.int(),
        fps: z.object({ num: z.int(), den: z.int() }),
        frameCount: z.int(),
        pixFmt: z.string(),
        bitDepth: z.int(),
      })
      .passthrough(),
    audio: z.array(z.object({ codec: z.string(), channels: z.int(), sampleRate: z.int() }).passthrough()),
  })
  .passthrough();

/** GET /v1/files: one folder inside the user's folders, for the web UI's picker (server/files.ts). */
export const FolderListing = z.object({
  roots: z.array(z.object({ name: z.string(), path: z.string() })),
  /** The folder listed; absent when the roots were asked for. */
  path: z.string().optional(),
  /** The folder above it, while that is still inside a root. */
  parent: z.string().optional(),
  /** Folders and video files, hidden ones left out; links only where they stay inside a root, by where they lead. */
  entries: z.array(
    z.object({ name: z.string(), path: z.string(), kind: z.enum(['folder', 'video']), size: z.number().optional() }),
  ),
  /** More entries than the engine lists at once. */
  truncated: z.boolean(),
});
export type FolderListing = z.infer<typeof FolderListing>;

/** RFC 9457 problem document: every error body of the API. */
export const Problem = z.object({
  type: z.string(),
  title: z.string(),
  status: z.int(),
  detail: z.string(),
  /** The request field at fault, dotted (e.g. "source.out"). */
  field: z.string().optional(),
  issues: z.array(z.object({ field: z.string(), message: z.string() })).optional(),
});
export type Problem = z.infer<typeof Problem>;

/** Server-Sent Events on /v1/jobs/:id/events. */
export type JobEvent =
  | { type: 'progress'; job: Job }
  | { type: 'preview'; jobId: string; png: string /* base64 */ }
  | { type: 'done'; job: Job };

/** Turns zod issues into a problem document a person can act on. */
export function validationProblem(error: z.ZodError, what = 'request'): Problem {
  const issues = error.issues.map((i) => ({ field: i.path.map(String).join('.') || '(body)', message: humanIssue(i) }));
  const first = issues[0];
  return {
    type: 'https://reshoot.dev/problems/invalid-request',
    title: `Invalid ${what}`,
    status: 400,
    detail: issues
      .map((i) =>
        i.field === '(body)' || i.message.startsWith(i.field) || saysItsSubject(i.message)
          ? i.message
          : `${i.field}: ${i.message}`,
      )
      .join('; '),
    field: first?.field,
    issues,
  };
}

/** Messages worded for the editor name what they are about themselves ("Out must be later than In"). */
function saysItsSubject(message: string): boolean {
  return /^(In|Out)\b/.test(message);
}

function humanIssue(i: z.core.$ZodIssue): string {
  if (i.code === 'unrecognized_keys')
    return `unknown field${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => `"${k}"`).join(', ')}; check the spelling against GET /v1/openapi.json`;
  if (i.code === 'invalid_type' && /received undefined/.test(i.message)) return `is required (${i.expected})`;
  const rule = asRule(i.message);
  return i.path.length === 0 && rule !== i.message
    ? `the body ${rule.replace('must be an object', 'must be a JSON object holding the request')}`
    : rule;
}

const KINDS: Record<string, string> = {
  string: 'text',
  number: 'a number',
  object: 'an object',
  boolean: 'true or false',
  array: 'a list',
  int: 'a whole number',
};
const BOUNDS: Record<string, string> = { '>=': 'at least', '>': 'more than', '<=': 'at most', '<': 'less than' };

/** zod's own wording names the failed check ("Too small: expected number to be >=0"); a person needs the rule. Messages written in this file pass through. */
function asRule(m: string): string {
  let r = /^Invalid input: expected (\w+), received (\w+)$/.exec(m);
  if (r) return `must be ${KINDS[r[1]] ?? r[1]} (expected ${r[1]}, received ${r[2]})`;
  r = /^Invalid (?:option: expected one of|discriminator value\. Expected) (.+)$/.exec(m);
  if (r) return `must be one of ${r[1].split(/\s*\|\s*/).join(', ')}`;
  r = /^Too (?:small|big): expected (\w+) to (be|have) (>=|>|<=|<)\s*(\S+)(?: (\w+))?$/.exec(m);
  if (r)
    return r[2] === 'have' ? `must have ${BOUNDS[r[3]]} ${r[4]} ${r[5] ?? 'items'}` : `must be ${BOUNDS[r[3]]} ${r[4]}`;
  return m;
}
