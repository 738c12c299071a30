// Scheduler math with diffusers semantics (DDIMScheduler / DDIMInverseScheduler), as pure functions over typed
// arrays. Whatever scheduler class a model folder ships, the engine runs a deterministic DDIM path over its
// noise levels: inversion editing needs an invertible sampler, and DDIM with eta = 0 is the one the editing
// papers build on. Noise-level tables are float64 (diffusers uses float32 tensors; float64 keeps the
// inversion round trip from picking up table rounding on top of the model's own error).

export type BetaSchedule = 'linear' | 'scaled_linear' | 'squaredcos_cap_v2';
export type TimestepSpacing = 'leading' | 'trailing' | 'linspace';
export type PredictionType = 'epsilon' | 'v_prediction' | 'sample';

export interface SchedulerConfig {
  className: string;
  numTrainTimesteps: number;
  betaStart: number;
  betaEnd: number;
  betaSchedule: BetaSchedule;
  trainedBetas: number[] | null;
  stepsOffset: number;
  setAlphaToOne: boolean;
  timestepSpacing: TimestepSpacing;
  predictionType: PredictionType;
}

const BETA_SCHEDULES: readonly BetaSchedule[] = ['linear', 'scaled_linear', 'squaredcos_cap_v2'];
const SPACINGS: readonly TimestepSpacing[] = ['leading', 'trailing', 'linspace'];
const PREDICTION_TYPES: readonly PredictionType[] = ['epsilon', 'v_prediction', 'sample'];

// ---------------------------------------------------------------------------------------------------------
// Config parsing

type Json = Record<string, unknown>;

function fail(source: string, field: string, message: string): never {
  throw new Error(`${source}: "${field}" ${message}`);
}

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return 'an array';
  if (v === null) return 'null';
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint' || v === undefined) return String(v);
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

function readNumber(
  obj: Json,
  source: string,
  field: string,
  fallback: number,
  opts: { integer?: boolean; min?: number; max?: number; maxExclusive?: boolean } = {},
): number {
  const v = obj[field];
  if (v === undefined) return fallback;
  const kind = opts.integer ? 'an integer' : 'a number';
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(source, field, `must be ${kind} (got ${show(v)})`);
  if (opts.integer && !Number.isInteger(v)) fail(source, field, `must be an integer (got ${v})`);
  if (opts.min !== undefined && v < opts.min) fail(source, field, `must be >= ${opts.min} (got ${v})`);
  if (opts.max !== undefined && (opts.maxExclusive ? v >= opts.max : v > opts.max)) {
    fail(source, field, `must be ${opts.maxExclusive ? '<' : '<='} ${opts.max} (got ${v})`);
  }
  return v;
}

function readEnum<T extends string>(obj: Json, source: string, field: string, allowed: readonly T[], fallback: T): T {
  const v = obj[field];
  if (v === undefined) return fallback;
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    fail(source, field, `must be one of ${allowed.join(', ')} (got ${show(v)})`);
  }
  return v as T;
}

/**
 * Reads a diffusers `scheduler_config.json`. Fields not listed in SchedulerConfig (clip_sample, skip_prk_steps,
 * timestep_type, original_inference_steps, ...) are ignored. Missing fields take DDIMScheduler's defaults, with one
 * exception: `set_alpha_to_one` defaults to false for PNDMScheduler, because that is PNDMScheduler's own default
 * and the Stable Diffusion 1.x convention; an explicit value always wins. Other classes (Euler*, LMS, DPMSolver*,
 * LCM) default to true, which matches their samplers ending at sigma = 0, i.e. a fully clean final level.
 */
export function parseSchedulerConfig(json: unknown, source = 'scheduler_config.json'): SchedulerConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new Error(`${source}: expected a JSON object with scheduler settings (got ${show(json)})`);
  }
  const obj = json as Json;

  const rawClass = obj._class_name;
  if (rawClass !== undefined && typeof rawClass !== 'string') {
    fail(source, '_class_name', `must be a string (got ${show(rawClass)})`);
  }
  const className = rawClass ?? 'DDIMScheduler';

  let trainedBetas: number[] | null = null;
  const rawBetas = obj.trained_betas;
  if (rawBetas !== undefined && rawBetas !== null) {
    if (!Array.isArray(rawBetas) || rawBetas.length === 0) {
      fail(source, 'trained_betas', `must be null or a non-empty array of numbers in [0, 1) (got ${show(rawBetas)})`);
    }
    trainedBetas = rawBetas.map((b, i) => {
      if (typeof b !== 'number' || !Number.isFinite(b) || b < 0 || b >= 1) {
        fail(source, 'trained_betas', `must hold numbers in [0, 1) (element ${i} is ${show(b)})`);
      }
      return b;
    });
  }

  // A trained_betas table defines its own length; only a contradicting explicit count is an error.
  const numTrainTimesteps = readNumber(obj, source, 'num_train_timesteps', trainedBetas ? trainedBetas.length : 1000, {
    integer: true,
    min: 1,
  });
  if (trainedBetas && trainedBetas.length !== numTrainTimesteps) {
    fail(source, 'trained_betas', `has ${trainedBetas.length} entries but num_train_timesteps is ${numTrainTimesteps}`);
  }

  const betaStart = readNumber(obj, source, 'beta_start', 0.0001, { min: 0, max: 1, maxExclusive: true });
  const betaEnd = readNumber(obj, source, 'beta_end', 0.02, { min: 0, max: 1, maxExclusive: true });
  const betaSchedule = readEnum(obj, source, 'beta_schedule', BETA_SCHEDULES, 'linear');
  const stepsOffset = readNumber(obj, source, 'steps_offset', 0, { integer: true, min: 0 });

  const rawAlphaOne = obj.set_alpha_to_one;
  if (rawAlphaOne !== undefined && typeof rawAlphaOne !== 'boolean') {
    fail(source, 'set_alpha_to_one', `must be true or false (got ${show(rawAlphaOne)})`);
  }
  const setAlphaToOne = rawAlphaOne ?? className !== 'PNDMScheduler';

  const timestepSpacing = readEnum(obj, source, 'timestep_spacing', SPACINGS, 'leading');
  const predictionType = readEnum(obj, source, 'prediction_type', PREDICTION_TYPES, 'epsilon');

  return {
    className,
    numTrainTimesteps,
    betaStart,
    betaEnd,
    betaSchedule,
    trainedBetas,
    stepsOffset,
    setAlphaToOne,
    timestepSpacing,
    predictionType,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Noise levels and timesteps

/** numpy.linspace(start, stop, n): element i is i*step + start, and the last one is stop exactly. */
function linspace(start: number, stop: number, n: number): Float64Array {
  const out = new Float64Array(n);
  if (n === 1) {
    out[0] = start;
    return out;
  }
  const step = (stop - start) / (n - 1);
  for (let i = 0; i < n; i++) out[i] = i * step + start;
  out[n - 1] = stop;
  return out;
}

/** numpy.round / rint: ties go to the even neighbour, which decides several timesteps (e.g. linspace 499.5 -> 500). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x); // ties towards +inf
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function betas(cfg: SchedulerConfig): Float64Array {
  const n = cfg.numTrainTimesteps;
  if (cfg.trainedBetas) {
    if (cfg.trainedBetas.length !== n) {
      throw new Error(`trainedBetas has ${cfg.trainedBetas.length} entries but numTrainTimesteps is ${n}`);
    }
    return Float64Array.from(cfg.trainedBetas);
  }
  switch (cfg.betaSchedule) {
    case 'linear':
      return linspace(cfg.betaStart, cfg.betaEnd, n);
    case 'scaled_linear':
      return linspace(Math.sqrt(cfg.betaStart), Math.sqrt(cfg.betaEnd), n).map((b) => b * b);
    case 'squaredcos_cap_v2': {
      // Glide / improved-DDPM cosine schedule, as diffusers betas_for_alpha_bar(max_beta = 0.999).
      const alphaBar = (t: number) => Math.cos((((t + 0.008) / 1.008) * Math.PI) / 2) ** 2;
      const out = new Float64Array(n);
      for (let i = 0; i < n; i++) out[i] = Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), 0.999);
      return out;
    }
    default:
      throw new Error(`unknown beta schedule ${show(cfg.betaSchedule)}; expected one of ${BETA_SCHEDULES.join(', ')}`);
  }
}

export function alphasCumprod(cfg: SchedulerConfig): Float64Array {
  const b = betas(cfg);
  const out = new Float64Array(b.length);
  let prod = 1;
  for (let i = 0; i < b.length; i++) {
    prod *= 1 - b[i];
    out[i] = prod;
  }
  return out;
}

function checkSteps(cfg: SchedulerConfig, steps: number): void {
  if (!Number.isInteger(steps) || steps < 1 || steps > cfg.numTrainTimesteps) {
    throw new Error(
      `inference steps must be an integer from 1 to ${cfg.numTrainTimesteps} (the model's num_train_timesteps); got ${steps}`,
    );
  }
}

/** Descending timesteps as diffusers DDIMScheduler.set_timesteps. */
export function inferenceTimesteps(cfg: SchedulerConfig, steps: number): number[] {
  checkSteps(cfg, steps);
  const n = cfg.numTrainTimesteps;
  const out: number[] = new Array<number>(steps);
  switch (cfg.timestepSpacing) {
    case 'leading': {
      const ratio = Math.floor(n / steps);
      for (let i = 0; i < steps; i++) out[i] = (steps - 1 - i) * ratio + cfg.stepsOffset;
      break;
    }
    case 'trailing': {
      // Mirrors numpy's arange(n, 0, -ratio) bit for bit: numpy fills element i >= 2 as start + i*delta with
      // delta = (start + step) - start, not step itself, and that rounding decides near-ties (240 steps: 12.500000000009 -> 13, not 12.4999999999999 -> 12).
      // numpy sometimes yields one element too many (e.g. 61 steps of 1000), which diffusers passes on as a bogus
      // timestep -1; taking exactly `steps` elements drops it.
      const step = -(n / steps);
      const delta = n + step - n;
      for (let i = 0; i < steps; i++) {
        const t = i === 0 ? n : i === 1 ? n + step : n + i * delta;
        out[i] = roundHalfEven(t) - 1;
      }
      break;
    }
    case 'linspace': {
      // diffusers' DDIM does not add steps_offset under linspace spacing.
      const ts = linspace(0, n - 1, steps);
      for (let i = 0; i < steps; i++) out[i] = roundHalfEven(ts[steps - 1 - i]);
      break;
    }
    default:
      throw new Error(`unknown timestep spacing ${show(cfg.timestepSpacing)}; expected one of ${SPACINGS.join(', ')}`);
  }
  // Only leading spacing with a large steps_offset can leave the trained range; diffusers would index past the table.
  if (out[0] > n - 1 || out[steps - 1] < 0) {
    throw new Error(
      `${steps} steps with ${cfg.timestepSpacing} spacing and steps_offset ${cfg.stepsOffset} give timestep ${out[0] > n - 1 ? out[0] : out[steps - 1]}, outside 0..${n - 1}; use fewer steps`,
    );
  }
  return out;
}

export interface DdimSchedule {
  timesteps: number[];
  alphas: number[];
  finalAlpha: number;
}

export function ddimSchedule(cfg: SchedulerConfig, steps: number): DdimSchedule {
  const ac = alphasCumprod(cfg);
  const timesteps = inferenceTimesteps(cfg, steps);
  return {
    timesteps,
    alphas: timesteps.map((t) => ac[t]),
    finalAlpha: cfg.setAlphaToOne ? 1 : ac[0],
  };
}

/** Levels 0..N of the deterministic DDIM path: level 0 = finalAlpha (clean end), level k = alpha of timesteps[N-k]. */
export function ddimLevels(s: DdimSchedule): { alpha: number[]; timestep: number[] } {
  const n = s.timesteps.length;
  if (s.alphas.length !== n) throw new Error(`DDIM schedule has ${n} timesteps but ${s.alphas.length} alphas`);
  const alpha = [s.finalAlpha];
  const timestep = [-1];
  for (let k = 1; k <= n; k++) {
    alpha.push(s.alphas[n - k]);
    timestep.push(s.timesteps[n - k]);
  }
  return { alpha, timestep };
}

/** diffusers img2img: min(int(steps * strength), steps). The float product is floored as Python's int() does. */
export function strengthSteps(steps: number, strength: number): number {
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`steps must be a positive integer (got ${steps})`);
  if (!(strength > 0 && strength <= 1)) throw new Error(`strength must be in (0, 1] (got ${strength})`);
  return Math.min(Math.floor(steps * strength), steps);
}

// ---------------------------------------------------------------------------------------------------------
// Element-wise updates. Each loop reads an element's inputs before writing its outputs, so an out array may
// be one of the inputs.

function checkAlpha(name: string, a: number, allowZero: boolean): void {
  if (!(a <= 1 && (allowZero ? a >= 0 : a > 0))) {
    throw new RangeError(`${name} must be in ${allowZero ? '[0, 1]' : '(0, 1]'} (got ${a})`);
  }
}

function checkLength(name: string, arr: Float32Array, n: number): void {
  if (arr.length !== n) throw new RangeError(`${name} has length ${arr.length}, expected ${n}`);
}

/** Converts a model output at noise level `alpha` into (x0, eps). Works in place into the out arrays when given. */
export function toX0Eps(
  modelOut: Float32Array,
  sample: Float32Array,
  alpha: number,
  type: PredictionType,
  outX0?: Float32Array,
  outEps?: Float32Array,
): { x0: Float32Array; eps: Float32Array } {
  checkAlpha('alpha', alpha, false);
  const n = sample.length;
  checkLength('modelOut', modelOut, n);
  const x0 = outX0 ?? new Float32Array(n);
  const eps = outEps ?? new Float32Array(n);
  checkLength('outX0', x0, n);
  checkLength('outEps', eps, n);
  if (x0 === eps) throw new RangeError('outX0 and outEps must be different arrays');
  const sa = Math.sqrt(alpha);
  const sb = Math.sqrt(1 - alpha);
  switch (type) {
    case 'epsilon':
      for (let i = 0; i < n; i++) {
        const m = modelOut[i];
        const x = sample[i];
        x0[i] = (x - sb * m) / sa;
        eps[i] = m;
      }
      break;
    case 'v_prediction':
      for (let i = 0; i < n; i++) {
        const m = modelOut[i];
        const x = sample[i];
        x0[i] = sa * x - sb * m;
        eps[i] = sa * m + sb * x;
      }
      break;
    case 'sample':
      // At a clean level (alpha = 1) no noise is identifiable; zero keeps a DDIM move finite instead of 0/0.
      for (let i = 0; i < n; i++) {
        const m = modelOut[i];
        const x = sample[i];
        x0[i] = m;
        eps[i] = sb > 0 ? (x - sa * m) / sb : 0;
      }
      break;
    default:
      throw new Error(`unknown prediction type ${show(type)}; expected one of ${PREDICTION_TYPES.join(', ')}`);
  }
  return { x0, eps };
}

/**
 * One deterministic DDIM move (eta = 0) from level alphaFrom to level alphaTo: sqrt(aTo)*x0 + sqrt(1-aTo)*eps, where
 * (x0, eps) come from toX0Eps(modelOut, sample, alphaFrom). Denoising moves to a lower-noise level; DDIM inversion
 * uses the same formula towards a noisier level with the model evaluated at the noisier timestep (as diffusers
 * DDIMInverseScheduler).
 * For v_prediction, this converts with alphaFrom as diffusers does, although during inversion the model saw the
 * noisier timestep; to invert exactly as an epsilon model would, first take eps = toX0Eps(modelOut, sample, alphaTo,
 * 'v_prediction').eps and pass it here with type 'epsilon'.
 */
export function ddimMove(
  modelOut: Float32Array,
  sample: Float32Array,
  alphaFrom: number,
  alphaTo: number,
  type: PredictionType,
  out?: Float32Array,
): Float32Array {
  checkAlpha('alphaFrom', alphaFrom, false);
  checkAlpha('alphaTo', alphaTo, true);
  const n = sample.length;
  checkLength('modelOut', modelOut, n);
  const res = out ?? new Float32Array(n);
  checkLength('out', res, n);
  // The move is linear in (sample, modelOut); folding it into two float64 coefficients avoids rounding x0 and eps
  // to float32 on the way, which matters for the inversion round trip.
  const sa = Math.sqrt(alphaFrom);
  const sb = Math.sqrt(1 - alphaFrom);
  const ta = Math.sqrt(alphaTo);
  const tb = Math.sqrt(1 - alphaTo);
  let cx: number;
  let cm: number;
  switch (type) {
    case 'epsilon':
      cx = ta / sa;
      cm = tb - (ta * sb) / sa;
      break;
    case 'v_prediction':
      cx = ta * sa + tb * sb;
      cm = tb * sa - ta * sb;
      break;
    case 'sample':
      cx = sb > 0 ? tb / sb : 0;
      cm = sb > 0 ? ta - (tb * sa) / sb : ta;
      break;
    default:
      throw new Error(`unknown prediction type ${show(type)}; expected one of ${PREDICTION_TYPES.join(', ')}`);
  }
  for (let i = 0; i < n; i++) res[i] = cx * sample[i] + cm * modelOut[i];
  return res;
}

/** Forward diffusion q(x_t | x0): sqrt(a)*x0 + sqrt(1-a)*noise. */
export function addNoise(x0: Float32Array, noise: Float32Array, alpha: number, out?: Float32Array): Float32Array {
  checkAlpha('alpha', alpha, true);
  const n = x0.length;
  checkLength('noise', noise, n);
  const res = out ?? new Float32Array(n);
  checkLength('out', res, n);
  const sa = Math.sqrt(alpha);
  const sb = Math.sqrt(1 - alpha);
  for (let i = 0; i < n; i++) res[i] = sa * x0[i] + sb * noise[i];
  return res;
}

/** Classifier-free guidance as diffusers: uncond + scale * (cond - uncond). */
export function guidance(uncond: Float32Array, cond: Float32Array, scale: number, out?: Float32Array): Float32Array {
  if (!Number.isFinite(scale)) throw new RangeError(`guidance scale must be a finite number (got ${scale})`);
  const n = uncond.length;
  checkLength('cond', cond, n);
  const res = out ?? new Float32Array(n);
  checkLength('out', res, n);
  for (let i = 0; i < n; i++) {
    const u = uncond[i];
    res[i] = u + scale * (cond[i] - u);
  }
  return res;
}
