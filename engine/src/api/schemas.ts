// THE contract between the panel, the web UI, the CLI and the engine server. Every request is parsed here and
// nowhere else; the OpenAPI document is generated from these schemas.
import { z } from 'zod';

const finiteSeconds = (name: string) => z.number({ error: `${name} must be a number of seconds` }).finite(`${name} must be a finite number of seconds`);

export const SourceRange = z
  .object({
    path: z.string().min(1, 'source.path is empty: give the absolute path of the clip\'s media file').max(4096),
    in: finiteSeconds('source.in').min(0, 'source.in must be 0 or more seconds'),
    out: finiteSeconds('source.out').positive('source.out must be more than 0 seconds'),
  })
  .strict()
  .refine((r) => r.out > r.in, { message: 'source.out must be later than source.in', path: ['out'] });

const unit = (name: string) => z.number().min(0, `${name} must be between 0 and 1`).max(1, `${name} must be between 0 and 1`);

export const MaskSpec = z.discriminatedUnion('type', [
  z.object({ type: z.literal('none') }).strict(),
  z.object({ type: z.literal('auto'), threshold: unit('mask.threshold').optional() }).strict(),
  z.object({ type: z.literal('file'), path: z.string().min(1, 'mask.path is empty').max(4096) }).strict(),
  z
    .object({ type: z.literal('box'), x: unit('mask.x'), y: unit('mask.y'), w: unit('mask.w'), h: unit('mask.h') })
    .strict()
    .refine((b) => b.w > 0 && b.h > 0 && b.x + b.w <= 1.0001 && b.y + b.h <= 1.0001, { message: 'the mask box must have a size and lie inside the frame (x + w ≤ 1, y + h ≤ 1)' }),
]);

export const METHODS = ['inversion', 'sdedit'] as const;
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
  })
  .strict()
  .refine((o) => !(o.path && o.folder), { message: 'give output.path or output.folder, not both' });

export const PROMPT_MAX_CHARS = 2000;

export const JobRequest = z
  .object({
    source: SourceRange,
    prompt: z.string().trim().min(1, 'prompt is empty: say what the range should become').max(PROMPT_MAX_CHARS, `prompt is longer than ${PROMPT_MAX_CHARS} characters; the text encoder reads only ~75 words`),
    sourcePrompt: z.string().trim().max(PROMPT_MAX_CHARS, `sourcePrompt is longer than ${PROMPT_MAX_CHARS} characters`).default(''),
    mask: MaskSpec.default({ type: 'none' }),
    method: z.enum(METHODS).default('inversion'),
    steps: z.int('steps must be a whole number').min(1, 'steps must be at least 1').max(200, 'steps must be at most 200').default(50),
    guidance: z.number().finite().min(0, 'guidance must be 0 or more').max(30, 'guidance above 30 only burns the image; use 1–15').default(7.5),
    /** Defaults by method: 1 for inversion (edit from the fully inverted latent), 0.6 for SDEdit. */
    strength: z.number().finite().gt(0, 'strength must be more than 0').max(1, 'strength must be at most 1').optional(),
    seed: z.int().min(0).max(2 ** 32 - 1).optional(),
    directInversion: z.boolean().default(true),
    batchSize: z.int().min(1).max(64).default(4),
    preview: z
      .object({
        frames: z.int().min(1).max(16).default(4),
        scale: z.number().min(0.1).max(1).default(0.5),
      })
      .strict()
      .optional(),
    output: OutputSpec.optional(),
  })
  .strict();

export type JobRequestInput = z.input<typeof JobRequest>;
export type JobRequest = z.output<typeof JobRequest>;

export const JOB_STATES = ['queued', 'running', 'succeeded', 'failed', 'canceled'] as const;
export type JobState = (typeof JOB_STATES)[number];

export const STAGES = ['queued', 'probing', 'decoding', 'encoding latents', 'inverting', 'editing', 'decoding latents', 'writing', 'done'] as const;

export const JobProgress = z.object({
  stage: z.enum(STAGES),
  fraction: z.number().min(0).max(1),
  step: z.int().optional(),
  steps: z.int().optional(),
  frame: z.int().optional(),
  frames: z.int().optional(),
  etaSec: z.number().optional(),
});
export type JobProgress = z.infer<typeof JobProgress>;

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
});
export type Job = z.infer<typeof Job>;

export const Health = z.object({
  ok: z.literal(true),
  version: z.string(),
  model: z.string(),
  modelDir: z.string(),
  provider: z.string(),
  providerFallbacks: z.array(z.string()),
  queue: z.object({ queued: z.int(), running: z.int() }),
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

export const MediaInfoSchema = z.object({
  path: z.string(),
  container: z.string(),
  durationSec: z.number(),
  video: z.object({
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
  }).passthrough(),
  audio: z.array(z.object({ codec: z.string(), channels: z.int(), sampleRate: z.int() }).passthrough()),
}).passthrough();

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
    detail: issues.map((i) => (i.field === '(body)' || i.message.startsWith(i.field) ? i.message : `${i.field}: ${i.message}`)).join('; '),
    field: first?.field,
    issues,
  };
}

function humanIssue(i: z.core.$ZodIssue): string {
  if (i.code === 'unrecognized_keys') return `unknown field${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => `"${k}"`).join(', ')}; check the spelling against GET /v1/openapi.json`;
  if (i.code === 'invalid_type' && /received undefined/.test(i.message)) return `is required (${i.expected})`;
  return i.message;
}
