// oracle-attn: the oracle model (oracle.ts, docs/ORACLE.md) with its exact denoiser written as one real
// cross-attention block, so that attention methods (prompt-to-prompt's word swap, re-weighting) act on maps that mean
// something and have a closed-form right answer. Within one prompt every active mixture component has the same spread,
// so the ‖x‖² of the Gaussian log-densities cancels in the softmax and the responsibilities are
//   r_k = softmax_k( (√ā/v)·x·μ_k + log w_k − ā·‖μ_k‖²/(2v) ),
// an attention of the latent pixel (query) over token rows carrying μ_k (key and value) and log w_k (the bias). The
// tokenizer, scheduler and VAE are the oracle's; docs/ORACLE.md, "oracle-attn", has the derivation.
import { CLIP_BOS, CLIP_EOS, END_OF_WORD } from '../tokenizer';
import { GraphBuilder, type SavedModel } from './onnx-builder';
import { writePipelineFolder, type GeneratedPipeline } from './folder';
import { oraclePipeline } from './oracle';
import { ORACLE, parseOraclePrompt, sd15AlphasCumprod, type OracleComponent, type OracleCondition } from './oracle-spec';

/** Columns of a token row of the text encoder's `last_hidden_state`; the rest of the row is 0. */
export const ATTN_ROW = Object.freeze({ mean: 0, logWeight: 4, spread2: 5, length: 6 });

/** diffusers module path of the UNet's one attention site. */
export const ORACLE_ATTN_SITE = 'mid_block.attentions.0.transformer_blocks.0.attn2';

// Features of one token in the text encoder's embedding table.
const F = Object.freeze({ rgb: 0, colour: 3, separator: 4, endsWord: 5, bos: 6, eos: 7, length: 8 });
const HEAD_DIM = ORACLE.latentChannels;

/**
 * The distribution oracle-attn denoises, per latent pixel: the oracle's (oracleComponents), except that a part with
 * several colour words has one component per word, each with the part's weight ½ split evenly, where the oracle has
 * one component at their average colour.
 */
export function oracleAttnComponents(cond: OracleCondition): OracleComponent[] {
  const p = typeof cond === 'string' ? parseOraclePrompt(cond) : cond;
  if (!p.conditional) {
    const u = ORACLE.sUnconditional;
    return [
      { role: 'unconditional', weight: 0.5, mean: [0, 0, 0, ORACLE.K], s: u },
      { role: 'unconditional', weight: 0.5, mean: [0, 0, 0, -ORACLE.K], s: u },
    ];
  }
  const part = (role: 'object' | 'background', words: string[], o: number): OracleComponent[] => {
    const colours = words.length ? words.map((w) => ORACLE.colours[w]) : [ORACLE.defaultColour];
    return colours.map((c) => ({ role, weight: 0.5 / colours.length, mean: [c[0], c[1], c[2], o], s: ORACLE.s }));
  };
  return [...part('object', p.objectColours, ORACLE.K), ...part('background', p.backgroundColours, -ORACLE.K)];
}

function tokenTable(vocab: Record<string, number>): { table: Float32Array; size: number } {
  const size = Math.max(...Object.values(vocab)) + 1;
  const table = new Float32Array(size * F.length);
  const id = (token: string, what: string) => {
    const found = vocab[token];
    if (found === undefined) throw new Error(`oracle-attn text encoder: ${what} "${token}" is not a token of the vocabulary`);
    return found;
  };
  for (const [token, i] of Object.entries(vocab)) if (token.endsWith(END_OF_WORD) || token.startsWith('<|')) table[i * F.length + F.endsWord] = 1;
  for (const [word, rgb] of Object.entries(ORACLE.colours)) {
    const i = id(word + END_OF_WORD, 'colour word');
    table.set(rgb, i * F.length + F.rgb);
    table[i * F.length + F.colour] = 1;
  }
  table[id(ORACLE.separator + END_OF_WORD, 'separator') * F.length + F.separator] = 1;
  table[id(CLIP_BOS, 'start token') * F.length + F.bos] = 1;
  table[id(CLIP_EOS, 'end token') * F.length + F.eos] = 1;
  return { table, size };
}

/**
 * Text encoder: `input_ids` int64 [batch, sequence] → `last_hidden_state` [batch, sequence, 32], one mixture
 * component per row (layout ATTN_ROW): a colour word that counts is a component of its part; BOS carries the object's
 * gray (0, 0, 0, +K) and the first EOS the background's (0, 0, 0, −K), each active only while its part names no
 * colour. Inactive rows have mean 0 (BOS and EOS keep theirs) and log-weight ORACLE.unusedLogWeight. `pooler_output`
 * is the first EOS row, where CLIP pools.
 */
export function buildOracleAttnTextEncoder(vocab: Record<string, number>): SavedModel {
  const { table, size } = tokenTable(vocab);
  const g = new GraphBuilder('oracle_attn_text_encoder');
  const ids = g.input('input_ids', 'int64', ['batch', 'sequence']);
  const hidden = ORACLE.hiddenSize;
  const { rows, firstEos } = g.scope('text_model', () => {
    const emb = g.scope('embeddings', () => g.o('Gather', [g.weight('token_embedding.weight', table, [size, F.length]), ids], { axis: 0 }));
    const slice = (lo: number, hi: number) => g.o('Slice', [emb, g.ints([lo]), g.ints([hi]), g.ints([2])]);
    const one = g.scalar(1);
    const cumsum = (x: string, exclusive = 0) => g.o('CumSum', [x, g.scalar(1, 'int64')], { exclusive });
    // As in the oracle's encoder: a colour or "on" token counts only after a token that ended a word, so BPE tails of
    // unknown words ("bored" = bo + red</w>) are ignored exactly as parseOraclePrompt ignores them.
    const startsWord = g.o('Slice', [g.o('Pad', [slice(F.endsWord, F.endsWord + 1), g.ints([0, 1, 0, 0, 0, 0]), one]), g.ints([0]), g.ints([-1]), g.ints([1])]);
    const colour = g.o('Mul', [slice(F.colour, F.colour + 1), startsWord]);
    const after = g.o('Min', [cumsum(g.o('Mul', [slice(F.separator, F.separator + 1), startsWord])), one]);
    const bos = slice(F.bos, F.bos + 1);
    // Padding repeats the EOS token: only the first one carries the background's gray.
    const eos = slice(F.eos, F.eos + 1);
    const firstEos = g.o('Mul', [eos, g.o('Sub', [one, g.o('Min', [cumsum(eos, 1), one])])]);
    const part = (mask: string, grayRow: string) => {
      const tokens = g.o('Mul', [colour, mask]);
      const count = g.o('ReduceSum', [tokens, g.ints([1])], { keepdims: 1 });
      const has = g.o('Min', [count, one]);
      // Weight ½/count per colour word; the common ½ cancels in the softmax, so one word gets log-weight 0 exactly.
      const logWeight = g.o('Neg', [g.o('Log', [g.o('Max', [count, one])])]);
      return { tokens, has, logWeight, gray: g.o('Mul', [grayRow, g.o('Sub', [one, has])]) };
    };
    const obj = g.scope('object', () => part(g.o('Sub', [one, after]), bos));
    const bg = g.scope('background', () => part(after, firstEos));
    const rgb = g.o('Mul', [slice(F.rgb, F.rgb + 3), colour]);
    const o = g.o('Mul', [g.o('Sub', [g.o('Add', [obj.tokens, bos]), g.o('Add', [bg.tokens, firstEos])]), g.scalar(ORACLE.K)]);
    const active = g.o('Add', [g.o('Add', [obj.tokens, bg.tokens]), g.o('Add', [obj.gray, bg.gray])]); // 0 or 1
    const weighted = g.o('Add', [g.o('Mul', [obj.tokens, obj.logWeight]), g.o('Mul', [bg.tokens, bg.logWeight])]);
    const logWeight = g.o('Add', [weighted, g.o('Mul', [g.o('Sub', [one, active]), g.scalar(ORACLE.unusedLogWeight)])]);
    // The prompt's one spread (conditional s, unconditional sUnconditional) on every row: the UNet needs it per item.
    const su2 = ORACLE.sUnconditional ** 2;
    const s2 = g.o('Add', [g.o('Mul', [g.o('Max', [obj.has, bg.has]), g.scalar(ORACLE.s ** 2 - su2)]), g.scalar(su2)]);
    const spread2 = g.o('Expand', [s2, g.o('Shape', [colour])]);
    const packed = g.o('Concat', [rgb, o, logWeight, spread2], { axis: 2 });
    return { rows: g.o('Pad', [packed, g.ints([0, 0, 0, 0, 0, hidden - ATTN_ROW.length])], {}, 'last_hidden_state'), firstEos };
  });
  g.o('ReduceSum', [g.o('Mul', [rows, firstEos]), g.ints([1])], { keepdims: 0 }, 'pooler_output');
  g.output('last_hidden_state', 'float32', ['batch', 'sequence', hidden]);
  g.output('pooler_output', 'float32', ['batch', hidden]);
  return g.save();
}

/** ā, √ā, 1 − ā and √(1−ā) of the rounded, clipped timestep, as float32 scalars from float64 tables (as the oracle). */
function timeTables(g: GraphBuilder, timestep: string) {
  const abar = sd15AlphasCumprod();
  return g.scope('time_embedding', () => {
    const idx = g.o('Cast', [g.o('Clip', [g.o('Round', [timestep]), g.scalar(0), g.scalar(abar.length - 1)])], { to: 7 });
    const table = (name: string, fn: (x: number) => number) => g.o('Gather', [g.weight(name, Float32Array.from(abar, fn), [abar.length]), idx], { axis: 0 });
    return {
      a: table('alphas_cumprod', (x) => x),
      sa: table('sqrt_alphas_cumprod', (x) => Math.sqrt(x)),
      oma: table('one_minus_alphas_cumprod', (x) => 1 - x),
      s1a: table('sqrt_one_minus_alphas_cumprod', (x) => Math.sqrt(1 - x)),
    };
  });
}

/** Per batch item [B, 1]: v = ā·s² + 1 − ā with the prompt's spread s² read from token row 0. */
function itemVariance(g: GraphBuilder, ehs: string, t: ReturnType<typeof timeTables>): string {
  return g.scope('conditioning', () => {
    const row0 = g.o('Gather', [ehs, g.scalar(0, 'int64')], { axis: 1 });
    const s2 = g.o('Gather', [row0, g.constant([ATTN_ROW.spread2], [1], 'int64', 'spread2')], { axis: 1 });
    return g.o('Add', [g.o('Mul', [s2, t.a]), t.oma]);
  });
}

/** A to_q/to_k/to_v projection that selects the first HEAD_DIM features: 0/1 weights keep the values exact. */
function selectProjection(g: GraphBuilder, name: string, x: string, width: number): string {
  return g.scope(name, () => {
    const w = new Float32Array(width * HEAD_DIM);
    for (let c = 0; c < HEAD_DIM; c++) w[(ATTN_ROW.mean + c) * HEAD_DIM + c] = 1;
    return g.o('MatMul', [x, g.weight('weight', w, [width, HEAD_DIM])]);
  });
}

/**
 * attn2 in the layout of the project's generated SD graphs (split heads, Kᵀ straight from [B, T, heads, d], scale Mul
 * after the scores, mask Add, Softmax, MatMul with V), one head of width 4. Returns Σ_k r_k·μ_k, [B, N, 4].
 */
function crossAttention(g: GraphBuilder, query: string, ehs: string, shrink: string): string {
  return g.scope('attn2', () => {
    const q = selectProjection(g, 'to_q', query, HEAD_DIM);
    const k = selectProjection(g, 'to_k', ehs, ORACLE.hiddenSize);
    const v = selectProjection(g, 'to_v', ehs, ORACLE.hiddenSize);
    // The mask is each key's log-weight minus ā·‖μ_k‖²/(2v): what is left of the Gaussian log-density once ‖x‖²
    // cancels. Switched-off rows get ≈ −10⁴, exactly 0 after the softmax.
    const bias = g.scope('mask', () => {
      const keyNorm2 = g.o('ReduceSum', [g.o('Mul', [k, k]), g.ints([2])], { keepdims: 0 });
      const logWeight = g.o('Gather', [ehs, g.scalar(ATTN_ROW.logWeight, 'int64')], { axis: 2 });
      return g.o('Unsqueeze', [g.o('Sub', [logWeight, g.o('Mul', [keyNorm2, shrink])]), g.ints([1, 2])]);
    });
    const split = g.ints([0, -1, 1, HEAD_DIM]);
    const qh = g.o('Transpose', [g.o('Reshape', [q, split])], { perm: [0, 2, 1, 3] });
    const kt = g.o('Transpose', [g.o('Reshape', [k, split])], { perm: [0, 2, 3, 1] });
    const vh = g.o('Transpose', [g.o('Reshape', [v, split])], { perm: [0, 2, 1, 3] });
    // diffusers' 1/√head_dim = ½, a power of two like the 2 the query carries to undo it: both exact.
    const scores = g.o('Mul', [g.o('MatMul', [qh, kt]), g.scalar(1 / Math.sqrt(HEAD_DIM))]);
    const probs = g.o('Softmax', [g.o('Add', [scores, bias])], { axis: -1 });
    const out = g.o('MatMul', [probs, vh]);
    return g.o('Reshape', [g.o('Transpose', [out], { perm: [0, 2, 1, 3] }), g.ints([0, -1, HEAD_DIM])]);
  });
}

/**
 * UNet: `sample` [batch, 4, h, w], `timestep` float32 scalar, `encoder_hidden_states` [batch, sequence, 32] →
 * `out_sample`, the exact ε = √(1−ā)/v·(x − √ā·Σ_k r_k·μ_k) of the mixture the token rows describe, with r the
 * cross-attention probabilities of ORACLE_ATTN_SITE.
 */
export function buildOracleAttnUnet(): SavedModel {
  const d = ORACLE.latentChannels;
  const g = new GraphBuilder('oracle_attn_unet');
  const sample = g.input('sample', 'float32', ['batch', d, 'height', 'width']);
  const timestep = g.input('timestep', 'float32', []);
  const ehs = g.input('encoder_hidden_states', 'float32', ['batch', 'sequence', ORACLE.hiddenSize]);
  const t = timeTables(g, timestep);
  const v = itemVariance(g, ehs, t);
  const perItem = (x: string) => g.o('Unsqueeze', [x, g.ints([2])]); // [B, 1] → [B, 1, 1]
  g.scope('mid_block', () =>
    g.scope('attentions.0', () => {
      const tokens = g.scope('proj_in', () => g.o('Transpose', [g.o('Reshape', [sample, g.ints([0, 0, -1])])], { perm: [0, 2, 1] }));
      const mean = g.scope('transformer_blocks.0', () => {
        const { query, shrink } = g.scope('norm2', () => ({
          // The pixel times 2·√ā/v: the logits' x·μ_k coefficient √ā/v, and 2 against the scores' ½. On the query,
          // not the scores: attention-site discovery accepts only a constant scale between the scores and the Softmax.
          query: g.o('Mul', [tokens, perItem(g.o('Div', [g.o('Mul', [t.sa, g.scalar(2)]), v]))]),
          shrink: g.o('Div', [t.a, g.o('Mul', [v, g.scalar(2)])]),
        }));
        return crossAttention(g, query, ehs, shrink);
      });
      // ε̂ = √(1−ā)·Σ_k r_k·(x − √ā·μ_k)/v with one v for all k: no 1/√(1−ā) amplification near t = 0.
      const eps = g.scope('proj_out', () => g.o('Mul', [g.o('Sub', [tokens, g.o('Mul', [mean, t.sa])]), perItem(g.o('Div', [t.s1a, v]))]));
      g.o('Reshape', [g.o('Transpose', [eps], { perm: [0, 2, 1] }), g.o('Shape', [sample])], {}, 'out_sample');
    }),
  );
  g.output('out_sample', 'float32', ['batch', d, 'height', 'width']);
  return g.save();
}

const README = `# oracle-attn — generated by Reshoot

The oracle model (an exact denoiser for a documented synthetic distribution) with its denoiser written as one real
cross-attention block: the latent pixel attends over the prompt's colour tokens, and the attention probabilities are
the posterior probabilities of the mixture components. Same tokenizer, scheduler, VAE and prompt grammar as the
oracle; a part with several colour words has one component per word instead of their average.

- Text encoder: one row per token (mean r, g, b, o; log-weight; spread²). Colour words are components; the start
  token carries a colourless object, the first end token a colourless background.
- UNet: module ${ORACLE_ATTN_SITE}, one head of width 4, 77 keys.
- Parameters: K = ${ORACLE.K}, s = ${ORACLE.s}, C0 = ${ORACLE.C0}; SD 1.5 noise schedule, ε-prediction.

The derivation and the closed forms (word swap included) are in docs/ORACLE.md, "oracle-attn", in the Reshoot
repository.
`;

export function oracleAttnPipeline(): GeneratedPipeline {
  const base = oraclePipeline();
  const vocab = JSON.parse(base.tokenizerFiles['vocab.json']) as Record<string, number>;
  const info = { model: 'oracle-attn', K: ORACLE.K, s: ORACLE.s, C0: ORACLE.C0, site: ORACLE_ATTN_SITE, doc: 'docs/ORACLE.md' };
  const mark = (config: Record<string, unknown>) => ({ ...config, reshoot: info });
  const c = base.components;
  return {
    ...base,
    components: {
      text_encoder: { saved: buildOracleAttnTextEncoder(vocab), config: mark(c.text_encoder.config) },
      unet: { saved: buildOracleAttnUnet(), config: mark(c.unet.config) },
      vae_encoder: { ...c.vae_encoder, config: mark(c.vae_encoder.config) },
      vae_decoder: { ...c.vae_decoder, config: mark(c.vae_decoder.config) },
    },
    extraFiles: { 'README.md': README },
  };
}

/** Writes the oracle-attn model folder. Deterministic: the same files every time. */
export function generateOracleAttn(dir: string): void {
  writePipelineFolder(dir, oracleAttnPipeline());
}
