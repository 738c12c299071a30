// Attention-site discovery on the forms the real-export fixtures do not cover: torch ≥ 2.1's
// scaled_dot_product_attention decomposition (built here as PyTorch's ONNX symbolic writes it, with the scale both
// folded to a constant and computed from Shape(query)), fused attention kernels, and the project's own generated
// UNets (4-D split heads, Kᵀ transposed straight from [B, N, heads, d]). Sites are checked against what ORT computes:
// the probabilities' shapes, and the keys a rewritten site really attends to.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from '../../engine/src/models/ort';
import { onnx } from 'onnx-proto';
import { findAttentionSites, type AttentionSite } from '../../engine/src/onnx/attention-sites';
import { GraphBuilder, WeightRng, elemTypeCode } from '../../engine/src/models/generate/onnx-builder';
import { generateTinySd } from '../../engine/src/models/generate/tiny-sd';
import { toHalf } from '../../engine/src/diffusion/half';
import { selfAttentionKv, selfAttentionKvPorts } from '../../engine/src/onnx/passes/self-attention-kv';
import {
  attentionProbs,
  expectedSites,
  filled,
  maxDiff,
  neutralFeeds,
  readUnetConfig,
  run,
  wave,
  withOutputs,
} from '../support/graph-checks';

const C = 8;
const HEADS = 2;
const HD = C / HEADS;
const TEXT = 5;
const CTX = 6;
const [H, W] = [8, 6];

/** diffusers AttnProcessor2_0 as torch ≥ 2.1 exports F.scaled_dot_product_attention (opset 14 symbolic). */
function sdpaAttention(
  g: GraphBuilder,
  rng: WeightRng,
  name: string,
  x: string,
  ctx: string,
  ctxDim: number,
  dynamicScale: boolean,
): string {
  return g.scope(name, () => {
    const lin = (scope: string, input: string, din: number) =>
      g.scope(scope, () =>
        g.o('MatMul', [input, g.weight('weight', rng.normal(din * C, 1 / Math.sqrt(din)), [din, C])]),
      );
    const split = (t: string) =>
      g.o('Transpose', [g.o('Reshape', [t, g.ints([0, -1, HEADS, HD])])], { perm: [0, 2, 1, 3] });
    const q = split(lin('to_q', x, C));
    const k = split(lin('to_k', ctx, ctxDim));
    const v = split(lin('to_v', ctx, ctxDim));
    const scale = dynamicScale ? shapeScale(g, q) : g.scalar(1 / Math.sqrt(HD));
    const kt = g.o('Transpose', [k], { perm: [0, 1, 3, 2] });
    const s = g.o('MatMul', [g.o('Mul', [q, g.o('Sqrt', [scale])]), g.o('Mul', [kt, g.o('Sqrt', [scale])])]);
    const a = g.o('MatMul', [g.o('Softmax', [s], { axis: -1 }), v]);
    const merged = g.o('Reshape', [g.o('Transpose', [a], { perm: [0, 2, 1, 3] }), g.ints([0, -1, C])]);
    return lin('to_out.0', merged, C);
  });
}

/** `_attention_scale`: 1/√(last dim of query) computed from its shape when the exporter could not fold it. */
function shapeScale(g: GraphBuilder, q: string): string {
  const last = g.o('Slice', [g.o('Shape', [q]), g.ints([-1]), g.ints([2 ** 31])]);
  const d = g.o('Cast', [last], { to: elemTypeCode('float32') });
  return g.o('Cast', [g.o('Div', [g.constant([1], [1]), g.o('Sqrt', [d])])], { to: elemTypeCode('float32') });
}

/** A UNet-shaped graph: conv_in, one stride-2 downsampler, a transformer block with SDPA self- and cross-attention. */
function sdpaUnet(dynamicScale: boolean): Uint8Array {
  const g = new GraphBuilder('unet');
  const rng = new WeightRng(7);
  g.input('sample', 'float32', [1, 4, H, W]);
  g.input('encoder_hidden_states', 'float32', [1, TEXT, CTX]);
  const conv = (name: string, x: string, cin: number, cout: number, stride: number) =>
    g.scope(name, () =>
      g.o('Conv', [x, g.weight('weight', rng.normal(cout * cin * 9, 1 / Math.sqrt(cin * 9)), [cout, cin, 3, 3])], {
        kernel_shape: [3, 3],
        pads: [1, 1, 1, 1],
        strides: [stride, stride],
      }),
    );
  const h = conv('down_blocks.0/downsamplers.0/conv', conv('conv_in', 'sample', 4, C, 1), C, C, 2);
  let t = g.o('Transpose', [g.o('Reshape', [h, g.ints([0, C, -1])])], { perm: [0, 2, 1] });
  g.scope('down_blocks.1/attentions.0/transformer_blocks.0', () => {
    t = g.o('Add', [t, sdpaAttention(g, rng, 'attn1', t, t, C, dynamicScale)]);
    t = g.o('Add', [t, sdpaAttention(g, rng, 'attn2', t, 'encoder_hidden_states', CTX, dynamicScale)]);
  });
  const back = g.o('Reshape', [g.o('Transpose', [t], { perm: [0, 2, 1] }), g.o('Shape', [h])]);
  g.o('Identity', [conv('conv_out', back, C, 4, 1)], {}, 'out_sample');
  g.output('out_sample', 'float32', [1, 4, H / 2, W / 2]);
  return g.save({ opset: 18 }).model;
}

function fusedGraph(kind: 'ms' | 'onnx23'): onnx.ModelProto {
  const g = new GraphBuilder('unet');
  g.input('hidden', 'float32', [1, 12, C]);
  if (kind === 'ms')
    g.op('MultiHeadAttention', ['hidden', 'hidden', 'hidden'], { num_heads: HEADS }, ['out'], 'com.microsoft');
  else g.op('Attention', ['hidden', 'hidden', 'hidden'], { q_num_heads: HEADS, kv_num_heads: HEADS }, ['out']);
  g.output('out', 'float32', [1, 12, C]);
  return onnx.ModelProto.decode(g.save({ opset: 18 }).model);
}

/**
 * Rewrites one self-attention site, checks the neutral graph computes the original output, then runs a second frame
 * with the first frame's keys and values injected at weight 1: the probabilities ORT computes must be
 * softmax(Q₂·K₁ᵀ/√d), the proof that the ports carry K in the layout the scores read.
 */
async function checkInjection(
  model: onnx.ModelProto,
  site: AttentionSite,
  frames: Record<string, ort.Tensor>[],
  dir?: string,
): Promise<void> {
  const r = selfAttentionKv.apply(model, [site], {});
  if (!r.ok) throw new Error(r.reason);
  const names = selfAttentionKvPorts(site.module);
  let rewritten: Uint8Array | string = withOutputs(r.model, [site.tensors.query, site.tensors.probs]);
  let original: Uint8Array | string = onnx.ModelProto.encode(model).finish();
  if (dir) {
    // Next to the external data file, which ORT resolves relative to the model file.
    [rewritten, original] = [write(dir, 'kv.onnx', rewritten), write(dir, 'original.onnx', original)];
  }
  const before = await run(original, frames[0], ['out_sample']);
  const anchor = await run(rewritten, { ...frames[0], ...neutralFeeds(r.ports.inputs) }, [
    'out_sample',
    names.keyOut,
    names.valueOut,
  ]);
  // Not bit-exact only because ORT may pick other kernels (fusions) around the rewritten nodes.
  expect(maxDiff(anchor.out_sample, before.out_sample)).toBeLessThanOrEqual(1e-6);
  const injected = {
    [names.weight]: filled('float32', [1], 1),
    [names.key]: anchor[names.keyOut],
    [names.value]: anchor[names.valueOut],
  };
  const out = await run(rewritten, { ...frames[1], ...injected }, [
    'out_sample',
    site.tensors.query,
    site.tensors.probs,
  ]);
  const expected = attentionProbs(out[site.tensors.query], anchor[names.keyOut], site.headDim);
  expect(maxDiff(out[site.tensors.probs], expected)).toBeLessThan(1e-5);
}

function write(dir: string, name: string, bytes: Uint8Array): string {
  fs.writeFileSync(path.join(dir, name), bytes);
  return path.join(dir, name);
}

describe('torch ≥ 2.1 scaled-dot-product attention', () => {
  it.each([false, true])(
    'finds the self and cross site, √scale on Q and Kᵀ (scale from Shape(query): %s)',
    (dynamic) => {
      const found = findAttentionSites(onnx.ModelProto.decode(sdpaUnet(dynamic)));
      expect(found.pattern).toBe('torch2-sdpa');
      expect(found.note).toBeUndefined();
      const base = 'down_blocks.1.attentions.0.transformer_blocks.0';
      expect(
        found.sites.map((s) => [
          s.module,
          s.kind,
          s.resolution,
          s.heads,
          s.headDim,
          s.tokens,
          s.layout,
          s.keyTransposed,
        ]),
      ).toEqual([
        [`${base}.attn1`, 'self', 2, HEADS, HD, (H / 2) * (W / 2), 'split', false],
        [`${base}.attn2`, 'cross', 2, HEADS, HD, TEXT, 'split', false],
      ]);
      // Q and K as [B, heads, N, d] before the √scale Muls; K before its Transpose.
      const scope = '/down_blocks.1/attentions.0/transformer_blocks.0/attn1/';
      expect(found.sites[0].tensors).toEqual({
        query: `${scope}Transpose_output_0`,
        key: `${scope}Transpose_1_output_0`,
        value: `${scope}Transpose_2_output_0`,
        probs: `${scope}Softmax_output_0`,
      });
    },
  );

  it('self-attention-kv on SDPA: neutral is the original; injected keys are what the queries attend to', async () => {
    const model = onnx.ModelProto.decode(sdpaUnet(true));
    const [self] = findAttentionSites(model).sites;
    const ehs = wave([1, TEXT, CTX], 1);
    await checkInjection(model, self, [
      { sample: wave([1, 4, H, W]), encoder_hidden_states: ehs },
      { sample: wave([1, 4, H, W], 2), encoder_hidden_states: ehs },
    ]);
  });
});

/**
 * torch 1.x baddbmm attention in an fp16 graph with upcast_attention: Q and K cast to float for the scores, the
 * probabilities cast back to half for the value MatMul — so K is float32 where the scores read it and V float16.
 */
function upcastFp16Attention(): Uint8Array {
  const g = new GraphBuilder('unet');
  const rng = new WeightRng(3);
  const N = 6;
  g.input('sample', 'float16', [1, N, C]);
  const out = g.scope('mid_block/attentions.0/transformer_blocks.0/attn1', () => {
    const lin = (scope: string, x: string) =>
      g.scope(scope, () => g.o('MatMul', [x, g.constant(rng.normal(C * C, 1 / Math.sqrt(C)), [C, C], 'float16')]));
    const fold = (t: string) =>
      g.o('Reshape', [
        g.o('Transpose', [g.o('Reshape', [t, g.ints([1, N, HEADS, HD])])], { perm: [0, 2, 1, 3] }),
        g.ints([HEADS, N, HD]),
      ]);
    const toFloat = (t: string) => g.o('Cast', [t], { to: elemTypeCode('float32') });
    const [q, k, v] = [fold(lin('to_q', 'sample')), fold(lin('to_k', 'sample')), fold(lin('to_v', 'sample'))];
    const scores = g.o('Mul', [
      g.o('MatMul', [toFloat(q), g.o('Transpose', [toFloat(k)], { perm: [0, 2, 1] })]),
      g.scalar(1 / Math.sqrt(HD)),
    ]);
    const probs = g.o('Cast', [g.o('Softmax', [scores], { axis: -1 })], { to: elemTypeCode('float16') });
    const a = g.o('MatMul', [probs, v]);
    return g.o('Reshape', [
      g.o('Transpose', [g.o('Reshape', [a, g.ints([1, HEADS, N, HD])])], { perm: [0, 2, 1, 3] }),
      g.ints([1, N, C]),
    ]);
  });
  g.o('Identity', [out], {}, 'out_sample');
  g.output('out_sample', 'float16', [1, N, C]);
  return g.save({ opset: 18 }).model;
}

describe('torch 1.x attention in fp16 with upcast_attention', () => {
  it('K ports are float32 (after the upcast), V ports float16; neutral is the original, weight 1 is not', async () => {
    const model = onnx.ModelProto.decode(upcastFp16Attention());
    const found = findAttentionSites(model);
    expect(found.pattern).toBe('torch1-baddbmm');
    expect(found.sites.map((s) => [s.module, s.kind, s.heads, s.headDim, s.layout])).toEqual([
      ['mid_block.attentions.0.transformer_blocks.0.attn1', 'self', HEADS, HD, 'folded'],
    ]);
    const r = selfAttentionKv.apply(model, found.sites, {});
    if (!r.ok) throw new Error(r.reason);
    expect(r.ports.inputs.map((p) => [p.name.split('/').pop(), p.type])).toEqual([
      ['weight', 'float32'],
      ['key', 'float32'],
      ['value', 'float16'],
    ]);
    expect(r.ports.outputs.map((p) => [p.name.split('/').pop(), p.type])).toEqual([
      ['key_out', 'float32'],
      ['value_out', 'float16'],
    ]);
    const x = new ort.Tensor('float16', toHalf(Array.from({ length: 6 * C }, (_, i) => Math.sin(i))), [1, 6, C]);
    const bytes = onnx.ModelProto.encode(r.model).finish();
    const before = await run(upcastFp16Attention(), { sample: x }, ['out_sample']);
    const neutral = await run(bytes, { sample: x, ...neutralFeeds(r.ports.inputs) }, ['out_sample']);
    expect(Array.from(neutral.out_sample.data as Uint16Array)).toEqual(
      Array.from(before.out_sample.data as Uint16Array),
    );
    const live = { ...neutralFeeds(r.ports.inputs), [r.ports.inputs[0].name]: filled('float32', [1], 1) };
    const changed = await run(bytes, { sample: x, ...live }, ['out_sample']);
    expect(Array.from(changed.out_sample.data as Uint16Array)).not.toEqual(
      Array.from(before.out_sample.data as Uint16Array),
    );
  });
});

describe('graphs without node names', () => {
  it('take the module from torch-style tensor names, else name sites site<i> in topological order', () => {
    const model = onnx.ModelProto.decode(sdpaUnet(false));
    for (const n of model.graph!.node!) n.name = '';
    const base = 'down_blocks.1.attentions.0.transformer_blocks.0';
    expect(findAttentionSites(model).sites.map((s) => s.module)).toEqual([`${base}.attn1`, `${base}.attn2`]);
    anonymiseTensors(model.graph!);
    const found = findAttentionSites(model);
    // Self and cross still told apart by what K is projected from.
    expect(found.sites.map((s) => [s.module, s.kind, s.resolution, s.heads])).toEqual([
      ['site0', 'self', 2, HEADS],
      ['site1', 'cross', 2, HEADS],
    ]);
  });
});

function anonymiseTensors(graph: onnx.IGraphProto): void {
  const keep = new Set([...graph.input!, ...graph.output!].map((v) => v.name!));
  const renamed = new Map<string, string>();
  const name = (t: string) =>
    !t || keep.has(t) ? t : (renamed.get(t) ?? (renamed.set(t, `t${renamed.size}`), `t${renamed.size - 1}`));
  for (const t of graph.initializer!) t.name = name(t.name!);
  for (const n of graph.node!) [n.input, n.output] = [n.input!.map(name), n.output!.map(name)];
}

describe('fused attention', () => {
  it.each(['ms', 'onnx23'] as const)(
    'is recognised, yields no site, and the note says how to get a usable export (%s)',
    (kind) => {
      const found = findAttentionSites(fusedGraph(kind));
      expect(found.pattern).toBe('fused-multihead');
      expect(found.sites).toEqual([]);
      expect(found.note).toMatch(kind === 'ms' ? /com\.microsoft\.MultiHeadAttention/ : /ai\.onnx\.Attention/);
      expect(found.note).toMatch(/unoptimised export/);
      expect(found.note).toMatch(/--no-post-process/);
    },
  );

  it('a graph without attention says so', () => {
    const g = new GraphBuilder('plain');
    g.input('x', 'float32', [1, 4]);
    g.o('Softmax', ['x'], { axis: -1 }, 'y');
    g.output('y', 'float32', [1, 4]);
    const found = findAttentionSites(onnx.ModelProto.decode(g.save().model));
    expect([found.pattern, found.sites]).toEqual(['none', []]);
    expect(found.note).toMatch(/no decomposed attention/);
  });
});

describe('generated tiny-sd UNets', () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
  const generated = (variant: string) => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), `sites-${variant}-`));
    dirs.push(d);
    generateTinySd(d, variant, 1);
    return path.join(d, 'unet');
  };

  it.each(['optimum', 'olive-fp16'])(
    '%s: one self and one cross site per transformer the config implies, confirmed by ORT',
    async (variant) => {
      const dir = generated(variant);
      const config = readUnetConfig(path.join(dir, 'config.json'));
      // Weights are external (model.onnx_data / weights.pb): discovery reads only the graph.
      const model = onnx.ModelProto.decode(fs.readFileSync(path.join(dir, 'model.onnx')));
      const found = findAttentionSites(model, { latent: { height: 8, width: 4 } });
      expect(found.pattern).toBe('split-heads');
      const expected = expectedSites(config);
      expect(found.sites.map((s) => [s.module, s.kind, s.resolution, s.heads])).toEqual(
        expected.map((e) => [e.module, e.kind, e.resolution, e.heads]),
      );
      expect(
        found.sites.every(
          (s) =>
            s.keyTransposed &&
            s.layout === 'split' &&
            s.headDim * s.heads === config.block_out_channels[Math.log2(s.resolution)],
        ),
      ).toBe(true);
      await confirmWithOrt(dir, model, found.sites);
    },
  );

  it("self-attention-kv where the graph only holds Kᵀ: K is transposed out and K' back in", async () => {
    const dir = generated('optimum');
    const model = onnx.ModelProto.decode(fs.readFileSync(path.join(dir, 'model.onnx')));
    const site = findAttentionSites(model, { latent: { height: 8, width: 4 } }).sites[0];
    expect(site.keyTransposed).toBe(true);
    const [a, b] = [unetFeeds(model, 8, 4), unetFeeds(model, 8, 4)];
    b.sample = wave([1, 4, 8, 4], 2);
    await checkInjection(model, site, [a, b], dir);
  });

  /** The probabilities ORT computes are [B, heads, N_q, N_k] with the site's heads and token counts. */
  async function confirmWithOrt(dir: string, model: onnx.ModelProto, sites: AttentionSite[]): Promise<void> {
    const file = path.join(dir, 'probe.onnx');
    // Written next to the external data file, which ORT resolves relative to the model.
    fs.writeFileSync(
      file,
      withOutputs(
        model,
        sites.map((s) => s.tensors.probs),
      ),
    );
    const out = await run(
      file,
      unetFeeds(model, 8, 4),
      sites.map((s) => s.tensors.probs),
    );
    for (const s of sites) {
      const queries = (8 / s.resolution) * (4 / s.resolution);
      expect(out[s.tensors.probs].dims).toEqual([1, s.heads, queries, s.kind === 'self' ? queries : 77]);
      expect(s.tokens).toBe(s.kind === 'self' ? queries : 77);
    }
  }

  /** Feeds for a generated UNet's declared inputs, whatever dtype and rank its exporter variant gives them. */
  function unetFeeds(model: onnx.ModelProto, h: number, w: number): Record<string, ort.Tensor> {
    const feeds: Record<string, ort.Tensor> = {};
    for (const input of model.graph!.input ?? []) {
      const type = input.type!.tensorType!;
      const rank = type.shape!.dim!.length;
      const last = Number(type.shape!.dim![rank - 1]?.dimValue ?? 0);
      const dims = { sample: [1, 4, h, w], timestep: rank ? [1] : [], encoder_hidden_states: [1, 77, last] }[
        input.name!
      ]!;
      const n = dims.reduce((a, b) => a * b, 1);
      if (type.elemType === elemTypeCode('float16'))
        feeds[input.name!] = new ort.Tensor('float16', toHalf(Array.from({ length: n }, (_, i) => Math.sin(i))), dims);
      else
        feeds[input.name!] =
          input.name === 'timestep' ? new ort.Tensor('float32', new Float32Array(n).fill(500), dims) : wave(dims);
    }
    return feeds;
  }
});
