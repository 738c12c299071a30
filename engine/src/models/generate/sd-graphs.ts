// Stable-Diffusion-shaped building blocks over GraphBuilder. Each block opens the same module scopes diffusers'
// modules have, so node names (`/down_blocks.0/attentions.0/transformer_blocks.0/attn2/Softmax`) and initializer
// names (`down_blocks.0.resnets.0.conv1.weight`) read like a torch export of the real model, and anything that
// taps or rewrites a real UNet by name can be tried on a generated one first.
//
// Weights are random but scaled by 1/sqrt(fan_in), with norms in front of every block, so activations stay O(1)
// through the whole network and outputs are finite and input-dependent rather than saturated.
import { GraphBuilder, WeightRng, elemTypeCode, f } from './onnx-builder';

const FLOAT = elemTypeCode('float32');
const FLOAT16 = elemTypeCode('float16');

export interface ConvOptions {
  kernel?: number;
  stride?: number;
  /** [top, left, bottom, right]; default "same" padding for odd kernels. */
  pads?: number[];
  /** Multiplies the 1/sqrt(fan_in) weight std. */
  gain?: number;
  /** Name of the output value (to make it a graph output directly). */
  out?: string;
}

export interface LinearOptions {
  bias?: boolean;
  gain?: number;
  out?: string;
}

export interface AttentionOptions {
  /** Keys and values from this tensor instead of x (cross-attention). */
  context?: { x: string; dim: number };
  heads: number;
  /** Biases on the q/k/v projections (CLIP and the VAE have them, the UNet does not). */
  qkvBias?: boolean;
  /** Additive mask broadcast onto the [B, heads, S, S'] scores (CLIP's causal mask). */
  mask?: string;
  /** Projection module names; diffusers uses to_q/to_k/to_v/to_out.0, CLIP q_proj/k_proj/v_proj/out_proj. */
  names?: { q: string; k: string; v: string; out: string };
}

export interface TimeEmbedding {
  x: string;
  dim: number;
}

const DIFFUSERS_ATTN = { q: 'to_q', k: 'to_k', v: 'to_v', out: 'to_out.0' };

export class SdBlocks {
  constructor(
    readonly g: GraphBuilder,
    readonly rng: WeightRng,
    /** GroupNorm groups; must divide every channel count the graph normalizes (skip concats included). */
    readonly groups: number,
  ) {}

  private param(name: string, dims: number[], std: number): string {
    return this.g.weight(name, this.rng.normal(dims.reduce((a, b) => a * b, 1), std), dims);
  }

  /** Norm affine parameters near (1, 0) but not exactly, so they are not no-ops a reader could mistake for unset. */
  private affine(c: number): [string, string] {
    const s = this.rng.normal(c, 0.1).map((v) => 1 + v);
    const w = this.g.weight('weight', s, [c]);
    const b = this.g.weight('bias', this.rng.normal(c, 0.1), [c]);
    return [w, b];
  }

  /** Casts a float16 graph input to float32 (fp16 exports keep fp16 weights; ours compute in fp32 after the Cast). */
  toFloat(x: string, fp16: boolean): string {
    return fp16 ? this.g.o('Cast', [x], { to: FLOAT }) : x;
  }

  /** Makes x the graph output `name`: a Cast to float16 for fp16 graphs, otherwise x must already carry the name. */
  finish(x: string, name: string, fp16: boolean): void {
    if (fp16) this.g.o('Cast', [x], { to: FLOAT16 }, name);
    else if (x !== name) throw new Error(`internal: ${x} should have been produced as graph output ${name}`);
  }

  /** The name to give the last op of an output: the output itself for fp32 graphs, an internal value before the Cast for fp16. */
  outName(name: string, fp16: boolean): string | undefined {
    return fp16 ? undefined : name;
  }

  conv(name: string, x: string, cin: number, cout: number, o: ConvOptions = {}): string {
    const k = o.kernel ?? 3;
    const p = (k - 1) >> 1;
    return this.g.scope(name, () => {
      const w = this.param('weight', [cout, cin, k, k], (o.gain ?? 1) / Math.sqrt(cin * k * k));
      const b = this.param('bias', [cout], 0.02);
      const s = o.stride ?? 1;
      return this.g.o('Conv', [x, w, b], { kernel_shape: [k, k], pads: o.pads ?? [p, p, p, p], strides: [s, s], dilations: [1, 1], group: 1 }, o.out);
    });
  }

  groupNorm(name: string, x: string, c: number, eps = 1e-5, groups = this.groups): string {
    if (c % groups) throw new Error(`${name}: ${c} channels are not divisible into ${groups} groups`);
    return this.g.scope(name, () => {
      const [w, b] = this.affine(c);
      return this.g.o('GroupNormalization', [x, w, b], { num_groups: groups, epsilon: f(eps) });
    });
  }

  layerNorm(name: string, x: string, d: number, eps = 1e-5, out?: string): string {
    return this.g.scope(name, () => {
      const [w, b] = this.affine(d);
      return this.g.o('LayerNormalization', [x, w, b], { axis: -1, epsilon: f(eps) }, out);
    });
  }

  silu(x: string): string {
    return this.g.o('Mul', [x, this.g.o('Sigmoid', [x])]);
  }

  /** Exact (erf) GELU, the decomposition torch's exporter writes. */
  gelu(x: string): string {
    const g = this.g;
    const e = g.o('Erf', [g.o('Div', [x, g.scalar(Math.SQRT2)])]);
    return g.o('Mul', [g.o('Mul', [x, g.o('Add', [e, g.scalar(1)])]), g.scalar(0.5)]);
  }

  /** CLIP's x·sigmoid(1.702x). */
  quickGelu(x: string): string {
    return this.g.o('Mul', [x, this.g.o('Sigmoid', [this.g.o('Mul', [x, this.g.scalar(1.702)])])]);
  }

  /** torch Linear as exported: MatMul by the transposed weight [in, out], then Add bias. */
  linear(name: string, x: string, din: number, dout: number, o: LinearOptions = {}): string {
    const bias = o.bias ?? true;
    return this.g.scope(name, () => {
      const w = this.param('weight', [din, dout], (o.gain ?? 1) / Math.sqrt(din));
      if (!bias) return this.g.o('MatMul', [x, w], {}, o.out);
      const y = this.g.o('MatMul', [x, w]);
      return this.g.o('Add', [y, this.param('bias', [dout], 0.02)], {}, o.out);
    });
  }

  /**
   * Multi-head attention on [B, S, dim] tokens: projections, split heads by Reshape/Transpose, scores scaled by
   * 1/sqrt(head_dim), Softmax over the key axis, merge heads, output projection.
   */
  attention(name: string, x: string, dim: number, o: AttentionOptions): string {
    const g = this.g;
    const names = o.names ?? DIFFUSERS_ATTN;
    const ctx = o.context ?? { x, dim };
    const heads = o.heads;
    if (dim % heads) throw new Error(`${name}: width ${dim} is not divisible into ${heads} heads`);
    const hd = dim / heads;
    // The VAE's attention has no module of its own between the block and its projections.
    const scoped = <T>(fn: () => T): T => (name ? g.scope(name, fn) : fn());
    return scoped(() => {
      const bias = o.qkvBias ?? false;
      const q = this.linear(names.q, x, dim, dim, { bias });
      const k = this.linear(names.k, ctx.x, ctx.dim, dim, { bias });
      const v = this.linear(names.v, ctx.x, ctx.dim, dim, { bias });
      const split = g.ints([0, -1, heads, hd]);
      const qh = g.o('Transpose', [g.o('Reshape', [q, split])], { perm: [0, 2, 1, 3] });
      const kt = g.o('Transpose', [g.o('Reshape', [k, split])], { perm: [0, 2, 3, 1] });
      const vh = g.o('Transpose', [g.o('Reshape', [v, split])], { perm: [0, 2, 1, 3] });
      let s = g.o('Mul', [g.o('MatMul', [qh, kt]), g.scalar(1 / Math.sqrt(hd))]);
      if (o.mask) s = g.o('Add', [s, o.mask]);
      const p = g.o('Softmax', [s], { axis: -1 });
      const a = g.o('MatMul', [p, vh]);
      const merged = g.o('Reshape', [g.o('Transpose', [a], { perm: [0, 2, 1, 3] }), g.ints([0, -1, dim])]);
      return this.linear(names.out, merged, dim, dim);
    });
  }

  /** diffusers ResnetBlock2D: norm/SiLU/conv twice, the time embedding added per channel in between, 1x1 shortcut when widths differ. */
  resnet(name: string, x: string, cin: number, cout: number, temb?: TimeEmbedding, eps = 1e-5): string {
    const g = this.g;
    return g.scope(name, () => {
      let h = this.conv('conv1', this.silu(this.groupNorm('norm1', x, cin, eps)), cin, cout);
      if (temb) {
        const t = this.linear('time_emb_proj', this.silu(temb.x), temb.dim, cout);
        h = g.o('Add', [h, g.o('Unsqueeze', [t, g.ints([2, 3])])]);
      }
      // A smaller last conv keeps the residual stream from growing block after block.
      h = this.conv('conv2', this.silu(this.groupNorm('norm2', h, cout, eps)), cout, cout, { gain: 0.5 });
      const skip = cin === cout ? x : this.conv('conv_shortcut', x, cin, cout, { kernel: 1 });
      return g.o('Add', [skip, h]);
    });
  }

  private toTokens(x: string): string {
    return this.g.o('Transpose', [this.g.o('Reshape', [x, this.g.ints([0, 0, -1])])], { perm: [0, 2, 1] });
  }

  private fromTokens(tokens: string, like: string): string {
    return this.g.o('Reshape', [this.g.o('Transpose', [tokens], { perm: [0, 2, 1] }), this.g.o('Shape', [like])]);
  }

  /**
   * diffusers Transformer2DModel (SD 1.x layout): GroupNorm, 1x1 proj_in, tokens, one BasicTransformerBlock with
   * self-attention (attn1), cross-attention on encoder_hidden_states (attn2) and a GEGLU feed-forward, proj_out,
   * residual.
   */
  transformer(name: string, x: string, c: number, context: { x: string; dim: number }, heads: number): string {
    const g = this.g;
    return g.scope(name, () => {
      const n = this.conv('proj_in', this.groupNorm('norm', x, c, 1e-6), c, c, { kernel: 1 });
      let t = this.toTokens(n);
      g.scope('transformer_blocks.0', () => {
        t = g.o('Add', [t, this.attention('attn1', this.layerNorm('norm1', t, c), c, { heads })]);
        t = g.o('Add', [t, this.attention('attn2', this.layerNorm('norm2', t, c), c, { heads, context })]);
        t = g.o('Add', [t, this.feedForward('ff', this.layerNorm('norm3', t, c), c)]);
      });
      const out = this.conv('proj_out', this.fromTokens(t, x), c, c, { kernel: 1 });
      return g.o('Add', [out, x]);
    });
  }

  /** GEGLU feed-forward: net.0.proj to 2·4c, value · GELU(gate), net.2 back to c. */
  feedForward(name: string, x: string, c: number): string {
    const g = this.g;
    const inner = 4 * c;
    return g.scope(name, () => {
      const hidden = g.scope('net.0', () => {
        const [value, gate] = g.op('Split', [this.linear('proj', x, c, 2 * inner)], { axis: -1, num_outputs: 2 }, 2);
        return g.o('Mul', [value, this.gelu(gate)]);
      });
      return this.linear('net.2', hidden, inner, c);
    });
  }

  /** Single-head attention over the pixels of a feature map, with GroupNorm in front (the VAE's mid-block attention). */
  spatialAttention(name: string, x: string, c: number): string {
    const g = this.g;
    return g.scope(name, () => {
      const t = this.toTokens(this.groupNorm('group_norm', x, c, 1e-6));
      const a = this.attention('', t, c, { heads: 1, qkvBias: true });
      return g.o('Add', [this.fromTokens(a, x), x]);
    });
  }

  /**
   * diffusers Timesteps (flip_sin_to_cos, shift 0): the timestep input in whatever dtype and rank the exporter chose
   * ([] / [1] / [B]), as [T, dim] = cat(cos(t·freq), sin(t·freq)).
   */
  timeProj(t: string, dim: number): string {
    const g = this.g;
    const half = dim / 2;
    return g.scope('time_proj', () => {
      const tf = g.o('Reshape', [g.o('Cast', [t], { to: FLOAT }), g.ints([-1, 1])]);
      const freqs = Float32Array.from({ length: half }, (_, i) => Math.exp((-Math.log(10000) * i) / half));
      const arg = g.o('Mul', [tf, g.constant(freqs, [1, half], 'float32', 'freqs')]);
      return g.o('Concat', [g.o('Cos', [arg]), g.o('Sin', [arg])], { axis: -1 });
    });
  }

  /** diffusers TimestepEmbedding: [cond_proj(cond) +] linear_1, SiLU, linear_2. */
  timeEmbedding(emb: string, din: number, dout: number, cond?: { x: string; dim: number }): string {
    return this.g.scope('time_embedding', () => {
      let e = emb;
      if (cond) e = this.g.o('Add', [e, this.linear('cond_proj', cond.x, cond.dim, din, { bias: false })]);
      return this.linear('linear_2', this.silu(this.linear('linear_1', e, din, dout)), dout, dout);
    });
  }

  /** Stride-2 3x3 conv. The VAE pads only bottom/right (diffusers pads (0,1,0,1) by hand), the UNet pads 1 all round. */
  downsample(name: string, x: string, c: number, asymmetric = false): string {
    return this.g.scope(name, () => this.conv('conv', x, c, c, { stride: 2, pads: asymmetric ? [0, 0, 1, 1] : [1, 1, 1, 1] }));
  }

  /** Nearest ×2 (as F.interpolate(scale_factor=2) exports) then a 3x3 conv. */
  upsample(name: string, x: string, c: number): string {
    const g = this.g;
    return g.scope(name, () => {
      const up = g.o('Resize', [x, '', g.constant([1, 1, 2, 2], [4], 'float32', 'scales')], {
        mode: 'nearest',
        coordinate_transformation_mode: 'asymmetric',
        nearest_mode: 'floor',
      });
      return this.conv('conv', up, c, c);
    });
  }
}
