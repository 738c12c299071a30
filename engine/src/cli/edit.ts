// `reshoot edit INPUT --prompt "…"`: the same request contract and job code as the server, run in-process.
import * as path from 'node:path';
import { JobRequest, STRUCTURE_PRESETS, validationProblem, type JobRequestInput } from '../api/schemas';
import { dataDir } from '../config/paths';
import { makePrivateDir } from '../config/private-dir';
import { CanceledError } from '../editing/types';
import { InversionCache } from '../store/inversion-cache';
import { mediaProblem } from '../jobs/manager';
import { planJob, runJob } from '../jobs/runner';
import { ProblemError } from '../jobs/service';
import { MediaError } from '../media/binaries';
import { checkFfmpegPaths, inputClash } from '../media/output-target';
import { probeMedia, type MediaInfo } from '../media/probe';
import { looksLikeTimecode, nominalFps, parseTime, secondsToTimecode, type Rate } from '../api/timecode';
import { resolveModel } from '../models/default-model';
import { parseProviders } from '../models/providers';
import { PipelineWorker } from '../worker/pipeline-worker';
import { CliError, intOption, parse, sizeOption } from './args';
import { ProgressLine } from './progress-line';

const USAGE = `usage: reshoot edit INPUT --prompt "…" [--source-prompt "…"] [--in T --out T] [--mask auto[:attention|:both]|FILE|x,y,w,h]
       [--method inversion|sdedit|fast] [--steps N] [--fast-steps 1-4] [--guidance G] [--strength S] [--seed N] [--batch N]
       [--codec h264|prores] [--audio] [-o OUTPUT] [--overwrite] [--model DIR] [--provider LIST]
       [--attention-slices N] [--max-memory SIZE] [--cross-frame first|first+previous|all[,replace][,decoder]]
       [--reweight WORD=SCALE[,WORD=SCALE…]] [--structure PRESET|0-1] [--word-swap FRACTION]
       [--token-flow EVERY] [--json]
  T: seconds from the start of the clip (1.5), or timecode in the clip's rate (00:00:01:12; 00;00;01;12 drop-frame)`;

export function maskArg(value: string | undefined): JobRequestInput['mask'] {
  if (value === undefined || value === 'none') return { type: 'none' };
  if (value === 'auto') return { type: 'auto' };
  // auto:attention, auto:both, auto:difference: what the automatic mask is read from (MaskSpec "auto" `from`).
  const from = /^auto:(difference|attention|both)$/.exec(value)?.[1] as 'difference' | 'attention' | 'both' | undefined;
  if (from) return { type: 'auto', from };
  const parts = value.split(',');
  if (parts.length === 4 && parts.every((p) => p.trim() !== '' && Number.isFinite(Number(p)))) {
    const [x, y, w, h] = parts.map(Number);
    return { type: 'box', x, y, w, h };
  }
  return { type: 'file', path: path.resolve(value) };
}

function num(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new CliError(`--${name} must be a number, got "${v}"`);
  return n;
}

/**
 * --in/--out as typed: seconds, or timecode counted from the clip's first frame (as the web UI's In and Out). Checked
 * for shape before the clip is probed; timecode becomes seconds once its rate is known (`atRate`).
 */
function timeArg(v: string | undefined, name: 'in' | 'out'): string | undefined {
  if (v === undefined) return undefined;
  const t = v.trim();
  const n = Number(t);
  if (looksLikeTimecode(t) || (t !== '' && Number.isFinite(n) && n >= 0)) return t;
  throw new CliError(
    `--${name} takes seconds from the start of the clip, a number ≥ 0 (0 = the first frame), e.g. --${name} ${name === 'in' ? '1.5' : '3'}, or timecode in the clip's rate, e.g. --${name} 00:00:01:12; got "${v}"`,
  );
}

function atRate(t: string | undefined, name: 'in' | 'out', fps: Rate): number | undefined {
  if (t === undefined) return undefined;
  const sec = parseTime(t, fps);
  if (sec === undefined) {
    const nominal = nominalFps(fps);
    throw new CliError(
      `--${name} ${t} names no frame at the clip's ${Number((fps.num / fps.den).toFixed(3))} fps: frames run 00 to ${nominal - 1}${fps.den === 1001 ? ', and drop-frame timecode skips 00 and 01 at each minute that is not a tenth' : ''}. E.g. 1.5 s is ${secondsToTimecode(1.5, fps)}`,
    );
  }
  return sec;
}

/**
 * --cross-frame ANCHORS[,replace|extend][,decoder|all]: attention.crossFrame (api/schemas.ts AttentionSpec), e.g.
 * "first", "first+previous,replace,decoder", "all" (anchors first: a later "all" names the layers).
 */
export function crossFrameArg(value: string | undefined): NonNullable<JobRequestInput['attention']>['crossFrame'] {
  if (value === undefined) return undefined;
  const [anchors, ...rest] = value.split(',').map((t) => t.trim());
  const out: Record<string, string> = {};
  if (anchors !== 'first' && anchors !== 'first+previous' && anchors !== 'all')
    throw new CliError(
      `--cross-frame starts with the anchor frames, "first", "first+previous" or "all", e.g. --cross-frame first,replace; got "${value}"`,
    );
  out.anchors = anchors;
  for (const t of rest) {
    if (t === 'replace' || t === 'extend') out.mode = t;
    else if (t === 'decoder' || t === 'all') out.layers = t;
    else
      throw new CliError(
        `--cross-frame takes "replace" or "extend" (mode) and "decoder" or "all" (layers) after the anchors; got "${t}"`,
      );
  }
  return out;
}

/** --reweight WORD=SCALE[,WORD=SCALE…]: attention.reweight, e.g. "blue=2,car=0.5". */
export function reweightArg(value: string | undefined): { word: string; scale: number }[] | undefined {
  if (value === undefined) return undefined;
  return value.split(',').map((pair) => {
    const [word, scale, ...rest] = pair.split('=');
    const n = Number(scale);
    if (rest.length || !word?.trim() || scale === undefined || scale.trim() === '' || !Number.isFinite(n))
      throw new CliError(
        `--reweight takes WORD=SCALE pairs separated by commas, e.g. --reweight blue=2; got "${pair}"`,
      );
    return { word: word.trim(), scale: n };
  });
}

/** --structure: a preset name of STRUCTURE_PRESETS ("balanced", "keep structure", …) or a strength from 0 to 1. */
export function structureArg(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const preset = STRUCTURE_PRESETS[value.trim().toLowerCase() as keyof typeof STRUCTURE_PRESETS];
  if (preset !== undefined) return preset;
  const n = value.trim() === '' ? NaN : Number(value);
  if (Number.isFinite(n)) return n;
  const names = Object.keys(STRUCTURE_PRESETS)
    .map((k) => `"${k}"`)
    .join(', ');
  throw new CliError(
    `--structure takes a preset (${names}) or a strength from 0 to 1, e.g. --structure balanced; got "${value}"`,
  );
}

/** --word-swap FRACTION: attention.wordSwap, the fraction of the steps that keep the source's maps (0.8 in P2P). */
export function wordSwapArg(value: string | undefined): { steps: number } | undefined {
  if (value === undefined) return undefined;
  const n = value.trim() === '' ? NaN : Number(value);
  if (!Number.isFinite(n))
    throw new CliError(
      `--word-swap takes the fraction of the steps that keep the source's maps, e.g. --word-swap 0.8; got "${value}"`,
    );
  return { steps: n };
}

/** --token-flow EVERY: attention.tokenFlow, one keyframe per EVERY frames (8 in TokenFlow). */
export function tokenFlowArg(value: string | undefined): { keyframeEvery: number } | undefined {
  if (value === undefined) return undefined;
  const n = /^\s*\d+\s*$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(n))
    throw new CliError(`--token-flow takes how many frames share one keyframe, e.g. --token-flow 8; got "${value}"`);
  return { keyframeEvery: n };
}

const EXAMPLE_PROMPT = '--prompt "a blue car on a gray road"';

/** The engine's messages name API fields (output.overwrite); on the command line they are options. */
export function cliWording(detail: string): string {
  return detail
    .replace(
      /choose another name or set output\.overwrite/g,
      'choose another name with -o, or pass --overwrite to replace it',
    )
    .replace(/even with overwrite/g, 'even with --overwrite')
    .replace(/\bset output\.overwrite\b/g, 'pass --overwrite')
    .replace(/\boutput\.overwrite\b/g, '--overwrite')
    .replace(/([Cc])hoose another output path/g, '$1hoose another output with -o')
    .replace(/, or leave the output unset to write into .*$/, ', or leave out -o to write next to the clip.')
    .replace(/\boutput\.path\b/g, '-o')
    .replace(/\boutput\.codec\b/g, '--codec')
    .replace(/\bsource\.in\b/g, '--in')
    .replace(/\bsource\.out\b/g, '--out')
    .replace(/\bfast\.steps\b/g, '--fast-steps')
    .replace(/\bbatchSize\b/g, '--batch')
    .replace(/\battention\.crossFrame\.layers "all"/g, '--cross-frame …,all')
    .replace(/\battention\.crossFrame\.mode "replace"/g, '--cross-frame …,replace')
    .replace(/\battention\.crossFrame\b/g, '--cross-frame')
    .replace(/\bleave attention\.reweight empty\b/g, 'leave out --reweight')
    .replace(/\battention\.reweight\b/g, '--reweight')
    .replace(/\bset attention\.structure to 0\b/g, 'leave out --structure')
    .replace(/\battention\.structure\b/g, '--structure')
    .replace(/\bturn attention\.wordSwap off\b/g, 'leave out --word-swap')
    .replace(/\battention\.wordSwap\b/g, '--word-swap')
    .replace(/\bturn attention\.tokenFlow off\b/g, 'leave out --token-flow')
    .replace(/\battention\.tokenFlow\.keyframeEvery\b/g, '--token-flow')
    .replace(/\battention\.tokenFlow\b/g, '--token-flow')
    .replace(/\bsourcePrompt\b/g, '--source-prompt')
    .replace(/\buse mask\.from "difference"/g, 'use --mask auto')
    .replace(/\bmask\.from\b/g, '--mask auto:…');
}

export async function runEdit(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      prompt: { type: 'string', short: 'p' },
      'source-prompt': { type: 'string' },
      in: { type: 'string' },
      out: { type: 'string' },
      mask: { type: 'string' },
      method: { type: 'string' },
      'fast-steps': { type: 'string' },
      steps: { type: 'string' },
      guidance: { type: 'string' },
      strength: { type: 'string' },
      seed: { type: 'string' },
      batch: { type: 'string' },
      codec: { type: 'string' },
      audio: { type: 'boolean' },
      output: { type: 'string', short: 'o' },
      overwrite: { type: 'boolean' },
      model: { type: 'string' },
      provider: { type: 'string' },
      'attention-slices': { type: 'string' },
      'max-memory': { type: 'string' },
      'cross-frame': { type: 'string' },
      reweight: { type: 'string' },
      structure: { type: 'string' },
      'word-swap': { type: 'string' },
      'token-flow': { type: 'string' },
      json: { type: 'boolean' },
    },
    true,
  );
  if (positionals.length !== 1) throw new CliError(`give exactly one INPUT clip\n${USAGE}`);
  if (values.prompt === undefined)
    throw new CliError(`--prompt is required: say what the edited range should show, e.g. ${EXAMPLE_PROMPT}\n${USAGE}`);
  if (values.prompt.trim() === '') {
    throw new CliError(
      `--prompt is empty: type what the edited range should show, in quotes, e.g. ${EXAMPLE_PROMPT} (and --source-prompt "…" for what it shows now)`,
    );
  }
  const inText = timeArg(values.in, 'in');
  const outText = timeArg(values.out, 'out');
  const input = path.resolve(positionals[0]);
  const json = Boolean(values.json);
  const emit = (obj: unknown) => json && console.log(JSON.stringify(obj));
  const warn = (w: string) => (json ? emit({ event: 'warning', message: w }) : console.error(`warning: ${w}`));

  let media: MediaInfo;
  try {
    // Windows: a clip path too long for the ffprobe in use is said as that, not as a file ffprobe cannot find.
    checkFfmpegPaths({ source: input });
    media = await probeMedia(input);
  } catch (err) {
    if (err instanceof MediaError) throw new CliError(err.message, 1);
    throw err;
  }
  // Without --out the edit runs to the end of the clip: the end of its last video frame.
  const fps = media.video.fps;
  const clipSec = (media.video.frameCount * fps.den) / fps.num;
  const length = `${Number(clipSec.toFixed(3))} s (${media.video.frameCount} frames)`;
  const inSec = atRate(inText, 'in', fps);
  const outSec = atRate(outText, 'out', fps);
  if (outSec === undefined && inSec !== undefined && inSec >= clipSec) {
    throw new CliError(
      `--in ${inText} is at or past the end of the clip: ${input} is ${length} long. Give an --in below ${Number(clipSec.toFixed(3))}, or leave it out to start at the first frame.`,
    );
  }
  if (outSec !== undefined && outSec <= (inSec ?? 0)) {
    throw new CliError(
      `--out ${outText} must be later than --in ${inText ?? 0}; both count from the start of the clip (${input} is ${length} long). Leave out --out to edit to the end of the clip.`,
    );
  }
  if (values.audio && media.audio.length === 0)
    warn(`${input} has no audio stream, so --audio has nothing to carry; the result will be silent`);

  const codec = values.codec ?? 'h264';
  const output = path.resolve(
    values.output ??
      path.join(
        path.dirname(input),
        `${path.basename(input).replace(/\.[^.]+$/, '')}.reshoot${codec === 'prores' ? '.mov' : '.mp4'}`,
      ),
  );
  const mask = maskArg(values.mask);
  // Before the model loads: -o naming the clip itself (or its matte) would destroy it, --overwrite or not.
  const clash = inputClash(output, { source: input, mask: mask?.type === 'file' ? mask.path : undefined });
  if (clash) throw new CliError(cliWording(clash));
  try {
    checkFfmpegPaths({ source: input, mask: mask?.type === 'file' ? mask.path : undefined, output });
  } catch (err) {
    if (err instanceof MediaError) throw new CliError(err.message);
    throw err;
  }
  const parsed = JobRequest.safeParse({
    source: { path: input, in: inSec ?? 0, out: outSec ?? clipSec },
    prompt: values.prompt,
    sourcePrompt: values['source-prompt'],
    mask,
    method: values.method,
    steps: num(values.steps, 'steps'),
    guidance: num(values.guidance, 'guidance'),
    strength: num(values.strength, 'strength'),
    seed: num(values.seed, 'seed'),
    batchSize: num(values.batch, 'batch'),
    fast: values['fast-steps'] === undefined ? undefined : { steps: num(values['fast-steps'], 'fast-steps') },
    attention: attentionArgs(values),
    output: { path: output, codec, audio: values.audio ?? false, overwrite: values.overwrite ?? false },
  } satisfies Record<string, unknown>);
  if (!parsed.success) throw new CliError(cliWording(validationProblem(parsed.error, 'options').detail));
  const req = parsed.data;
  const memoryLimitBytes = sizeOption(values['max-memory'], 'max-memory');

  const worker = await PipelineWorker.start(resolveModel(values.model), {
    providers: values.provider ? parseProviders(values.provider) : [],
    // Absent: the model decides (models/sd-model.ts slices large-latent models by default).
    attentionSlices:
      values['attention-slices'] === undefined
        ? undefined
        : intOption(values['attention-slices'], 'attention-slices', 1, 1, 64),
  });
  const bar = json ? undefined : new ProgressLine();
  try {
    const info = worker.info;
    if (!json)
      console.error(
        `model ${info.name} on ${info.provider}${info.providerFallbacks.length ? ` (fell back: ${info.providerFallbacks.join('; ')})` : ''}`,
      );
    if (info.attention.slicingNote) warn(`attention slicing not applied: ${info.attention.slicingNote}`);
    else if (!json && info.attention.slices > 1) console.error(`self-attention in ${info.attention.slices} slices`);
    let plan;
    try {
      plan = await planJob(req, info, output, media, memoryLimitBytes);
    } catch (err) {
      if (err instanceof MediaError) throw new CliError(cliWording(mediaProblem(err, 'source').message), 1);
      if (err instanceof ProblemError) throw new CliError(cliWording(err.message), 1);
      throw err;
    }
    emit({ event: 'plan', frames: plan.frameCount, workingSize: { width: plan.width, height: plan.height }, output });
    if (!json) console.error(`editing ${plan.frameCount} frames at ${plan.width}x${plan.height} → ${output}`);
    const seed = req.seed ?? Math.floor(Math.random() * 2 ** 32);
    const privacy = makePrivateDir(dataDir());
    if (privacy) warn(privacy);
    const cache = new InversionCache(
      path.join(dataDir(), 'cache', 'inversions'),
      Number(process.env.RESHOOT_CACHE_BYTES ?? 2 * 1024 ** 3),
    );
    const ctx = {
      worker,
      cache,
      seed,
      onProgress: (p: import('../api/schemas').JobProgress) => {
        emit({ event: 'progress', ...p });
        if (bar && p.stage !== 'done') bar.updateJob(p);
      },
      onWarning: warn,
      memoryLimitBytes,
    };
    const stop = () => (ctx as { cancelHook?: { cancel(): void } }).cancelHook?.cancel();
    process.once('SIGINT', stop);
    try {
      const result = await runJob(req, plan, ctx);
      bar?.done();
      emit({ event: 'done', result, seed });
      const m = result.memory;
      if (!json && m && m.batchSize !== m.requestedBatchSize)
        console.error(`${m.batchSize} frame${m.batchSize > 1 ? 's' : ''} per UNet call (${m.reason})`);
      if (!json)
        console.log(
          `wrote ${result.path}: ${result.frames} frames, ${result.width}x${result.height}, ${result.durationSec.toFixed(3)} s, seed ${seed}, ${result.seconds.toFixed(1)} s${result.inversionCacheHit ? ' (inversion reused)' : ''}`,
        );
      return 0;
    } catch (err) {
      bar?.done();
      if (err instanceof CanceledError) throw new CliError('canceled; no output was written', 130);
      if (err instanceof MediaError || err instanceof ProblemError) throw new CliError(cliWording(err.message), 1);
      throw err;
    } finally {
      process.off('SIGINT', stop);
    }
  } finally {
    await worker.terminate();
  }
}

/** The attention options, or undefined when none was given (the request then has no attention object at all). */
function attentionArgs(values: Record<string, string | boolean | undefined>): JobRequestInput['attention'] {
  const text = (name: string) => values[name] as string | undefined;
  const given = ['cross-frame', 'reweight', 'structure', 'word-swap', 'token-flow'].some(
    (n) => values[n] !== undefined,
  );
  if (!given) return undefined;
  return {
    crossFrame: crossFrameArg(text('cross-frame')),
    reweight: reweightArg(text('reweight')),
    structure: structureArg(text('structure')),
    wordSwap: wordSwapArg(text('word-swap')),
    tokenFlow: tokenFlowArg(text('token-flow')),
  };
}
