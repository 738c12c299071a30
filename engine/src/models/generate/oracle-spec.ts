// The oracle model's data distribution and its exact denoiser, in float64. The ONNX graphs in oracle.ts compute the
// same closed forms in float32; this module is the reference they are tested against, and what evaluation code uses
// to know what an edit *should* produce (docs/ORACLE.md derives every formula here).

export type Rgb = readonly [number, number, number];
export type Latent4 = [number, number, number, number];

/** Colour words of the prompt grammar. Chromatic entries all have chroma C0, so they encode to object channel +K. */
const COLOURS: Readonly<Record<string, Rgb>> = Object.freeze({
  red: [0.8, -0.8, -0.8],
  green: [-0.8, 0.8, -0.8],
  blue: [-0.8, -0.8, 0.8],
  yellow: [0.8, 0.8, -0.8],
  cyan: [-0.8, 0.8, 0.8],
  magenta: [0.8, -0.8, 0.8],
  orange: [0.8, 0, -0.8],
  purple: [0, -0.8, 0.8],
  pink: [0.8, -0.8, 0.3],
  white: [0.8, 0.8, 0.8],
  black: [-0.8, -0.8, -0.8],
  gray: [0, 0, 0],
  grey: [0, 0, 0],
});

export const ORACLE = Object.freeze({
  /** Magnitude of the object channel: +K for object pixels, -K for background. */
  K: 4,
  /** Standard deviation of each conditional component, per latent channel. */
  s: 0.5,
  /** Chroma at which the object channel saturates at +K. */
  C0: 1.6,
  /** Latent channels (r, g, b, object). */
  latentChannels: 4,
  /** VAE spatial factor: latents are at pixel resolution. */
  vaeScale: 1,
  /** Constant log-variance of the VAE encoder's posterior: a near-deterministic encoder. */
  logvar: -30,
  /** Width of the text encoder's hidden states; only the first COND.length entries carry the conditioning. */
  hiddenSize: 32,
  maxLength: 77,
  /**
   * Standard deviation of the two unconditional components N((0, 0, 0, ±K), sUnconditional²·I): the empty prompt
   * says nothing about colour (N(0, I) in r, g, b) but, like a trained model's unconditional prediction, still knows
   * that a saturated region is an object and a gray one background (the object channel keeps its two modes).
   */
  sUnconditional: 1,
  /** Log-weight given to mixture components that the prompt switches off. */
  unusedLogWeight: -1e4,
  /** Word that separates the object description from the background description. */
  separator: 'on',
  /** A part of the prompt without colour words takes this colour. */
  defaultColour: [0, 0, 0] as Rgb,
  colours: COLOURS,
});

/** Layout of the conditioning vector the text encoder broadcasts to every token position. */
export const COND = Object.freeze({ objRgb: 0, objHas: 3, bgRgb: 4, bgHas: 7, any: 8, length: 9 });

export interface OraclePrompt {
  /** False when the prompt names no colour at all: the unconditional model (object or background, any colour) applies. */
  conditional: boolean;
  object: Rgb;
  background: Rgb;
  /** The colour words found in each part, in prompt order. */
  objectColours: string[];
  backgroundColours: string[];
}

export interface OracleComponent {
  role: 'object' | 'background' | 'unconditional';
  weight: number;
  mean: Latent4;
  s: number;
}

export type OracleCondition = string | OraclePrompt;

// CLIP's pre-tokenizer splits words as runs of letters, so "red," or "red-car" still yield the word "red".
const WORD_RE = /[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/gu;

/**
 * Word-level reading of a prompt with the rules the text encoder graph applies token by token: colour words before
 * the first "on" describe the object, those after it the background; several colours in a part are averaged; a
 * part without colour is gray; no colour word anywhere means unconditional.
 */
export function parseOraclePrompt(prompt: string): OraclePrompt {
  const words = prompt.toLowerCase().match(WORD_RE) ?? [];
  const objectColours: string[] = [];
  const backgroundColours: string[] = [];
  let afterSeparator = false;
  for (const w of words) {
    if (w === ORACLE.separator) afterSeparator = true;
    else if (Object.prototype.hasOwnProperty.call(COLOURS, w)) (afterSeparator ? backgroundColours : objectColours).push(w);
  }
  return {
    conditional: objectColours.length + backgroundColours.length > 0,
    object: averageColour(objectColours),
    background: averageColour(backgroundColours),
    objectColours,
    backgroundColours,
  };
}

function averageColour(words: string[]): Rgb {
  if (words.length === 0) return ORACLE.defaultColour;
  const acc = [0, 0, 0];
  for (const w of words) for (let c = 0; c < 3; c++) acc[c] += COLOURS[w][c];
  return [acc[0] / words.length, acc[1] / words.length, acc[2] / words.length];
}

/** Object channel of a pixel: K·(2·clip(chroma/C0, 0, 1) − 1). */
export function objectChannel(rgb: ArrayLike<number>): number {
  const chroma = Math.max(rgb[0], rgb[1], rgb[2]) - Math.min(rgb[0], rgb[1], rgb[2]);
  return ORACLE.K * (2 * Math.min(Math.max(chroma / ORACLE.C0, 0), 1) - 1);
}

/** The VAE encoder's map from a pixel to its latent (r, g, b, o); the decoder drops o. */
export function oracleLatent(rgb: ArrayLike<number>): Latent4 {
  return [rgb[0], rgb[1], rgb[2], objectChannel(rgb)];
}

function asPrompt(cond: OracleCondition): OraclePrompt {
  return typeof cond === 'string' ? parseOraclePrompt(cond) : cond;
}

/** The mixture components x0 is drawn from, per latent pixel, under a prompt. */
export function oracleComponents(cond: OracleCondition): OracleComponent[] {
  const p = asPrompt(cond);
  // Without colour words: an object or a background of any colour. With a single N(0, I) instead, classifier-free
  // guidance would push every pixel's object channel away from 0 by (g − 1)·K-sized amounts that no prompt asked for,
  // and direct inversion would have to cancel two such pushes between its branches (docs/QUALITY.md, "The job
  // defaults on a user-sized clip").
  if (!p.conditional)
    return [
      { role: 'unconditional', weight: 0.5, mean: [0, 0, 0, ORACLE.K], s: ORACLE.sUnconditional },
      { role: 'unconditional', weight: 0.5, mean: [0, 0, 0, -ORACLE.K], s: ORACLE.sUnconditional },
    ];
  return [
    { role: 'object', weight: 0.5, mean: [p.object[0], p.object[1], p.object[2], ORACLE.K], s: ORACLE.s },
    { role: 'background', weight: 0.5, mean: [p.background[0], p.background[1], p.background[2], -ORACLE.K], s: ORACLE.s },
  ];
}

/** Posterior probabilities of the components given a noisy latent pixel x_t. */
export function oracleResponsibilities(x: ArrayLike<number>, alphaBar: number, cond: OracleCondition): Float64Array {
  return responsibilities(x, alphaBar, oracleComponents(cond));
}

function responsibilities(x: ArrayLike<number>, alphaBar: number, comps: OracleComponent[]): Float64Array {
  const d = ORACLE.latentChannels;
  const sa = Math.sqrt(alphaBar);
  const logits = comps.map((k) => {
    const v = alphaBar * k.s * k.s + 1 - alphaBar;
    let dist = 0;
    for (let c = 0; c < d; c++) dist += (x[c] - sa * k.mean[c]) ** 2;
    return Math.log(k.weight) - (d / 2) * Math.log(v) - dist / (2 * v);
  });
  const m = Math.max(...logits);
  const e = logits.map((l) => Math.exp(l - m));
  const z = e.reduce((a, b) => a + b, 0);
  return Float64Array.from(e, (v) => v / z);
}

/** E[x0 | x_t] for one latent pixel (4 channels) at cumulative alpha ā. */
export function oraclePosteriorMean(x: ArrayLike<number>, alphaBar: number, cond: OracleCondition): Float64Array {
  const comps = oracleComponents(cond);
  const r = responsibilities(x, alphaBar, comps);
  const sa = Math.sqrt(alphaBar);
  const out = new Float64Array(ORACLE.latentChannels);
  comps.forEach((k, i) => {
    const v = alphaBar * k.s * k.s + 1 - alphaBar;
    const gain = (sa * k.s * k.s) / v;
    for (let c = 0; c < out.length; c++) out[c] += r[i] * (k.mean[c] + gain * (x[c] - sa * k.mean[c]));
  });
  return out;
}

/** The exact ε-prediction (x_t − √ā·E[x0|x_t]) / √(1−ā) for one latent pixel. */
export function oracleEps(x: ArrayLike<number>, alphaBar: number, cond: OracleCondition): Float64Array {
  const e = oraclePosteriorMean(x, alphaBar, cond);
  const sa = Math.sqrt(alphaBar);
  const s1 = Math.sqrt(1 - alphaBar);
  return Float64Array.from(e, (v, c) => (x[c] - sa * v) / s1);
}

/**
 * What an inversion edit does to a pixel that stays in one component: x0 = μ_src + δ, DDIM-inverted under the
 * source prompt to the level ā_{t0} and regenerated under the target prompt, ends at
 * μ_tgt + δ + √ā_{t0}·(s/√v_{t0})·(μ_src − μ_tgt). Strength 1 (ā_{t0} → 0) gives the full colour change.
 */
export function oracleEditPrediction(x0: ArrayLike<number>, muSrc: ArrayLike<number>, muTgt: ArrayLike<number>, alphaBarT0: number, s = ORACLE.s): Float64Array {
  const v = alphaBarT0 * s * s + 1 - alphaBarT0;
  const residual = (Math.sqrt(alphaBarT0) * s) / Math.sqrt(v);
  return Float64Array.from({ length: x0.length }, (_, c) => muTgt[c] + (x0[c] - muSrc[c]) + residual * (muSrc[c] - muTgt[c]));
}

export const SD15_SCHEDULER_CONFIG = Object.freeze({
  _class_name: 'PNDMScheduler',
  _diffusers_version: '0.6.0',
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  num_train_timesteps: 1000,
  steps_offset: 1,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  clip_sample: false,
  prediction_type: 'epsilon',
  trained_betas: null,
});

/** SD 1.5's ā_t, t = 0..999: betas = linspace(√0.00085, √0.012, 1000)², ā = Π(1 − β). */
export function sd15AlphasCumprod(): Float64Array {
  const n = SD15_SCHEDULER_CONFIG.num_train_timesteps;
  const a = Math.sqrt(SD15_SCHEDULER_CONFIG.beta_start);
  const b = Math.sqrt(SD15_SCHEDULER_CONFIG.beta_end);
  const out = new Float64Array(n);
  let prod = 1;
  for (let i = 0; i < n; i++) {
    const beta = (a + ((b - a) * i) / (n - 1)) ** 2;
    prod *= 1 - beta;
    out[i] = prod;
  }
  return out;
}
