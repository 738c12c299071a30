// The oracle model as ONNX graphs in the diffusers/optimum folder layout: a text encoder that reads the colour words
// of the prompt, a UNet that is the exact ε-prediction of the resulting per-pixel Gaussian mixture, and a VAE whose
// decoder inverts its encoder exactly. The math lives in oracle-spec.ts and docs/ORACLE.md.
import { GraphBuilder, type SavedModel } from './onnx-builder';
import { writePipelineFolder, type GeneratedPipeline } from './folder';
import { buildClipVocab, PROMPT_WORDS } from './clip-vocab';
import { COND, ORACLE, SD15_SCHEDULER_CONFIG, sd15AlphasCumprod } from './oracle-spec';

const END_OF_WORD = '</w>';
// Features of one token in the text encoder's embedding table.
const TOKEN_FEATURES = 6; // r, g, b, colour flag, separator flag, ends a word

/** The words the oracle's tokenizer knows: the shared prompt words plus anything the grammar needs. */
export function oracleWords(): string[] {
  const words = [...PROMPT_WORDS];
  for (const w of [...Object.keys(ORACLE.colours), ORACLE.separator]) if (!words.includes(w)) words.push(w);
  return words;
}

/**
 * Text encoder: `input_ids` int64 [batch, sequence] → `last_hidden_state` [batch, sequence, 32] and
 * `pooler_output` [batch, 32]. Every position carries the same conditioning vector (layout COND), so whichever
 * position a consumer reads (CLIP pools at EOS, the oracle UNet reads position 0) it sees the whole prompt.
 */
export function buildOracleTextEncoder(vocab: Record<string, number>): SavedModel {
  const size = Math.max(...Object.values(vocab)) + 1;
  const table = new Float32Array(size * TOKEN_FEATURES);
  for (const [token, id] of Object.entries(vocab)) if (token.endsWith(END_OF_WORD) || token.startsWith('<|')) table[id * TOKEN_FEATURES + 5] = 1;
  for (const [word, rgb] of Object.entries(ORACLE.colours)) {
    const id = vocab[word + END_OF_WORD];
    if (id === undefined) throw new Error(`oracle text encoder: colour word "${word}" is not a whole token of the vocabulary`);
    table.set([rgb[0], rgb[1], rgb[2], 1, 0, 1], id * TOKEN_FEATURES);
  }
  const sep = vocab[ORACLE.separator + END_OF_WORD];
  if (sep === undefined) throw new Error(`oracle text encoder: separator "${ORACLE.separator}" is not a whole token of the vocabulary`);
  table[sep * TOKEN_FEATURES + 4] = 1;

  const g = new GraphBuilder('oracle_text_encoder');
  const ids = g.input('input_ids', 'int64', ['batch', 'sequence']);
  const hidden = ORACLE.hiddenSize;
  const cond = g.scope('text_model', () => {
    const emb = g.scope('embeddings', () => g.o('Gather', [g.weight('token_embedding.weight', table, [size, TOKEN_FEATURES]), ids], { axis: 0 }));
    const slice = (lo: number, hi: number) => g.o('Slice', [emb, g.ints([lo]), g.ints([hi]), g.ints([2])]);
    const rgb = slice(0, 3);
    const one = g.scalar(1);
    // BPE can spell an unknown word with a colour or "on" token as its tail ("bored" = bo + red</w>). Such a token
    // counts only when the token before it ended a word (or is BOS), so the graph reads whole words exactly as
    // parseOraclePrompt does.
    const endsWord = slice(5, 6);
    const startsWord = g.o('Slice', [g.o('Pad', [endsWord, g.ints([0, 1, 0, 0, 0, 0]), one]), g.ints([0]), g.ints([-1]), g.ints([1])]);
    const colourFlag = g.o('Mul', [slice(3, 4), startsWord]);
    const sepFlag = g.o('Mul', [slice(4, 5), startsWord]);
    // Positions at or after the first separator belong to the background; the separator token itself has no colour
    // flag, so it counts for neither part.
    const after = g.o('Min', [g.o('CumSum', [sepFlag, g.scalar(1, 'int64')]), one]);
    const before = g.o('Sub', [one, after]);
    const part = (mask: string) => {
      const w = g.o('Mul', [colourFlag, mask]);
      const count = g.o('ReduceSum', [w, g.ints([1])], { keepdims: 1 });
      const sum = g.o('ReduceSum', [g.o('Mul', [rgb, w]), g.ints([1])], { keepdims: 1 });
      // Counts are whole numbers, so max(count, 1) only guards the empty part, whose sum is 0 (gray).
      const mean = g.o('Div', [sum, g.o('Max', [count, one])]);
      return { mean, has: g.o('Min', [count, one]) };
    };
    const obj = g.scope('object', () => part(before));
    const bg = g.scope('background', () => part(after));
    const any = g.o('Max', [obj.has, bg.has]);
    const packed = g.o('Concat', [obj.mean, obj.has, bg.mean, bg.has, any], { axis: 2 });
    // Zero padding instead of a projection matrix keeps the values bit-exact on every execution provider.
    return g.o('Pad', [packed, g.ints([0, 0, 0, 0, 0, hidden - COND.length])]);
  });
  const shape = g.o('Concat', [g.o('Shape', [ids]), g.ints([hidden])], { axis: 0 });
  g.o('Expand', [cond, shape], {}, 'last_hidden_state');
  g.o('Squeeze', [cond, g.ints([1])], {}, 'pooler_output');
  g.output('last_hidden_state', 'float32', ['batch', 'sequence', hidden]);
  g.output('pooler_output', 'float32', ['batch', hidden]);
  return g.save();
}

/**
 * UNet: `sample` [batch, 4, h, w], `timestep` float32 scalar, `encoder_hidden_states` [batch, sequence, 32] →
 * `out_sample`, the exact ε of a 4-component mixture (object, background, and the unconditional model's object and
 * background) whose log-weights come from the conditioning at position 0.
 */
export function buildOracleUnet(): SavedModel {
  const abar = sd15AlphasCumprod();
  const d = ORACLE.latentChannels;
  const g = new GraphBuilder('oracle_unet');
  const sample = g.input('sample', 'float32', ['batch', d, 'height', 'width']);
  const timestep = g.input('timestep', 'float32', []);
  const ehs = g.input('encoder_hidden_states', 'float32', ['batch', 'sequence', ORACLE.hiddenSize]);

  const { sa, s1a, oma, a } = g.scope('time_embedding', () => {
    const idx = g.o('Cast', [g.o('Clip', [g.o('Round', [timestep]), g.scalar(0), g.scalar(abar.length - 1)])], { to: 7 });
    // Tables precomputed in float64: √(1−ā) near t = 0 would lose most of its digits if formed in float32.
    const table = (name: string, fn: (x: number) => number) => g.o('Gather', [g.weight(name, Float32Array.from(abar, fn), [abar.length]), idx], { axis: 0 });
    return {
      a: table('alphas_cumprod', (x) => x),
      sa: table('sqrt_alphas_cumprod', (x) => Math.sqrt(x)),
      oma: table('one_minus_alphas_cumprod', (x) => 1 - x),
      s1a: table('sqrt_one_minus_alphas_cumprod', (x) => Math.sqrt(1 - x)),
    };
  });

  const { mu, logw } = g.scope('conditioning', () => {
    const cond = g.o('Gather', [ehs, g.scalar(0, 'int64')], { axis: 1 }); // [B, 32]
    // Means [B, 4, 4]: (obj rgb, +K), (bg rgb, −K), (0, 0, 0, +K), (0, 0, 0, −K). Gather + mask + bias rather than a
    // MatMul, whose TF32 path on GPUs would round the colours.
    const pick = [COND.objRgb, COND.objRgb + 1, COND.objRgb + 2, 0, COND.bgRgb, COND.bgRgb + 1, COND.bgRgb + 2, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    const mask = [1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    const bias = [0, 0, 0, ORACLE.K, 0, 0, 0, -ORACLE.K, 0, 0, 0, ORACLE.K, 0, 0, 0, -ORACLE.K];
    const flat = g.o('Add', [g.o('Mul', [g.o('Gather', [cond, g.constant(pick, [16], 'int64', 'pick')], { axis: 1 }), g.constant(mask, [16])]), g.constant(bias, [16])]);
    const mu = g.o('Reshape', [flat, g.ints([-1, 4, d, 1, 1])]);
    // any ∈ {0, 1}: conditional → (0, 0, U, U), unconditional → (U, U, 0, 0) with U the unused log-weight. Equal
    // weights within the active set make their common log-weight irrelevant to the softmax.
    const any = g.o('Gather', [cond, g.constant([COND.any], [1], 'int64', 'any')], { axis: 1 }); // [B, 1]
    const U = ORACLE.unusedLogWeight;
    const lw = g.o('Add', [g.o('Mul', [any, g.constant([-U, -U, U, U], [4])]), g.constant([U, U, 0, 0], [4])]);
    return { mu, logw: g.o('Reshape', [lw, g.ints([-1, 4, 1, 1])]) };
  });

  g.scope('mixture', () => {
    const su2 = ORACLE.sUnconditional ** 2;
    const s2 = g.constant([ORACLE.s ** 2, ORACLE.s ** 2, su2, su2], [4, 1, 1], 'float32', 's2');
    const v = g.o('Add', [g.o('Mul', [s2, a]), oma]); // [4, 1, 1]
    const x = g.o('Unsqueeze', [sample, g.ints([1])]); // [B, 1, 4, h, w]
    const diff = g.o('Sub', [x, g.o('Mul', [mu, sa])]); // [B, 4, 4, h, w]
    const dist = g.o('ReduceSum', [g.o('Mul', [diff, diff]), g.ints([2])], { keepdims: 0 }); // [B, 4, h, w]
    const logv = g.o('Log', [v]);
    const logits = g.o('Sub', [g.o('Sub', [logw, g.o('Mul', [logv, g.scalar(d / 2)])]), g.o('Div', [dist, g.o('Mul', [v, g.scalar(2)])])]);
    const r = g.o('Softmax', [logits], { axis: 1 });
    // ε̂ = (x − √ā·E[x0|x]) / √(1−ā) simplifies per component to √(1−ā)·(x − √ā·μ_k)/v_k, which has no cancellation
    // near t = 0 where the textbook form divides a tiny difference by a tiny √(1−ā).
    const w = g.o('Unsqueeze', [g.o('Div', [r, v]), g.ints([2])]); // [B, 4, 1, h, w]
    const sum = g.o('ReduceSum', [g.o('Mul', [w, diff]), g.ints([1])], { keepdims: 0 }); // [B, 4, h, w]
    g.o('Mul', [sum, s1a], {}, 'out_sample');
  });
  g.output('out_sample', 'float32', ['batch', d, 'height', 'width']);
  return g.save();
}

/** VAE encoder: `sample` [batch, 3, H, W] → `latent_parameters` [batch, 8, H, W] = (r, g, b, o) ‖ logvar. */
export function buildOracleVaeEncoder(): SavedModel {
  const g = new GraphBuilder('oracle_vae_encoder');
  const x = g.input('sample', 'float32', ['batch', 3, 'height', 'width']);
  g.scope('encoder', () => {
    const axes = g.ints([1]);
    const chroma = g.o('Sub', [g.o('ReduceMax', [x, axes], { keepdims: 1 }), g.o('ReduceMin', [x, axes], { keepdims: 1 })]);
    // Div by C0 (not Mul by 1/C0): float32(0.8) − float32(−0.8) is exactly float32(1.6), so table colours land
    // exactly on +K.
    const unit = g.o('Clip', [g.o('Div', [chroma, g.scalar(ORACLE.C0)]), g.scalar(0), g.scalar(1)]);
    const o = g.o('Sub', [g.o('Mul', [unit, g.scalar(2 * ORACLE.K)]), g.scalar(ORACLE.K)]);
    const mean = g.o('Concat', [x, o], { axis: 1 });
    const logvar = g.o('Expand', [g.constant([ORACLE.logvar], [1, 1, 1, 1], 'float32', 'logvar'), g.o('Shape', [mean])]);
    g.o('Concat', [mean, logvar], { axis: 1 }, 'latent_parameters');
  });
  g.output('latent_parameters', 'float32', ['batch', 2 * ORACLE.latentChannels, 'height', 'width']);
  return g.save();
}

/** VAE decoder: `latent_sample` [batch, 4, H, W] → `sample` [batch, 3, H, W], the first three channels. */
export function buildOracleVaeDecoder(): SavedModel {
  const g = new GraphBuilder('oracle_vae_decoder');
  const z = g.input('latent_sample', 'float32', ['batch', ORACLE.latentChannels, 'height', 'width']);
  g.scope('decoder', () => g.o('Slice', [z, g.ints([0]), g.ints([3]), g.ints([1])], {}, 'sample'));
  g.output('sample', 'float32', ['batch', 3, 'height', 'width']);
  return g.save();
}

const README = `# oracle — generated by Reshoot

An exact denoiser for a documented synthetic data distribution, in the optimum ONNX Stable Diffusion layout. It is
not a trained network: every output is a closed form, so edits made with it have a known right answer.

- Latents are at pixel resolution with 4 channels (r, g, b, object); the VAE encoder computes the object channel
  from each pixel's chroma and the decoder drops it, so decode(encode(x)) = x.
- Prompts: "a <colour> <thing> on a <colour> <thing>". Colour words before the first "on" describe the object,
  after it the background. Known colours: ${Object.keys(ORACLE.colours).join(', ')}. A prompt without colour
  words is unconditional.
- Parameters: K = ${ORACLE.K}, s = ${ORACLE.s}, C0 = ${ORACLE.C0}; SD 1.5 noise schedule, ε-prediction.

The full description (distribution, closed forms, what an edit should produce, limits) is docs/ORACLE.md in the
Reshoot repository.
`;

export function oraclePipeline(): GeneratedPipeline {
  const tok = buildClipVocab(oracleWords(), { pad: 'eos', format: 'vocab+merges' });
  const vocabSize = Math.max(...Object.values(tok.vocab)) + 1;
  const oracleInfo = { model: 'oracle', K: ORACLE.K, s: ORACLE.s, C0: ORACLE.C0, doc: 'docs/ORACLE.md' };
  const vaeConfig = {
    _class_name: 'AutoencoderKL',
    _diffusers_version: '0.30.0',
    in_channels: 3,
    out_channels: 3,
    latent_channels: ORACLE.latentChannels,
    // One entry: diffusers' spatial factor is 2^(len − 1) = 1.
    block_out_channels: [64],
    sample_size: 128,
    scaling_factor: 1.0,
    reshoot: oracleInfo,
  };
  return {
    modelIndex: {
      _class_name: 'ORTStableDiffusionPipeline',
      _diffusers_version: '0.30.0',
      feature_extractor: [null, null],
      requires_safety_checker: false,
      safety_checker: [null, null],
      scheduler: ['diffusers', 'PNDMScheduler'],
      text_encoder: ['transformers', 'CLIPTextModel'],
      tokenizer: ['transformers', 'CLIPTokenizer'],
      unet: ['diffusers', 'UNet2DConditionModel'],
      vae: ['diffusers', 'AutoencoderKL'],
    },
    schedulerConfig: { ...SD15_SCHEDULER_CONFIG },
    tokenizerFiles: tok.files,
    components: {
      text_encoder: {
        saved: buildOracleTextEncoder(tok.vocab),
        config: {
          architectures: ['CLIPTextModel'],
          model_type: 'clip_text_model',
          hidden_size: ORACLE.hiddenSize,
          projection_dim: ORACLE.hiddenSize,
          max_position_embeddings: ORACLE.maxLength,
          vocab_size: vocabSize,
          bos_token_id: tok.bosId,
          eos_token_id: tok.eosId,
          pad_token_id: tok.padId,
          reshoot: oracleInfo,
        },
      },
      unet: {
        saved: buildOracleUnet(),
        config: {
          _class_name: 'UNet2DConditionModel',
          _diffusers_version: '0.30.0',
          in_channels: ORACLE.latentChannels,
          out_channels: ORACLE.latentChannels,
          sample_size: 128,
          cross_attention_dim: ORACLE.hiddenSize,
          reshoot: oracleInfo,
        },
      },
      vae_encoder: { saved: buildOracleVaeEncoder(), config: vaeConfig },
      vae_decoder: { saved: buildOracleVaeDecoder(), config: vaeConfig },
    },
    extraFiles: { 'README.md': README },
  };
}

/** Writes the oracle model folder. Deterministic: the same files every time. */
export function generateOracle(dir: string): void {
  writePipelineFolder(dir, oraclePipeline());
}
