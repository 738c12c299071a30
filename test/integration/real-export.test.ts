// The graph passes on graphs a real exporter wrote (test/fixtures/real-export: diffusers 0.25 modules exported by
// torch 1.13 as optimum does; see its README): attention sites where diffusers puts them, the self-attention K/V
// ports neutral at their neutral values and live otherwise, the decoder-feature tap (also after the exporter merged
// identical constants into Identity nodes), and the deterministic VAE encoder mean.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from '../../engine/src/models/ort';
import { onnx } from 'onnx-proto';
import { findAttentionSites, type AttentionSite } from '../../engine/src/onnx/attention-sites';
import { FEATURE_TAP_OUTPUT, featureTap } from '../../engine/src/onnx/passes/feature-tap';
import { selfAttentionKv, selfAttentionKvPorts } from '../../engine/src/onnx/passes/self-attention-kv';
import { vaeMean } from '../../engine/src/onnx/passes/vae-mean';
import {
  attentionProbs,
  expectedSites,
  filled,
  floats,
  maxDiff,
  neutralFeeds,
  readUnetConfig,
  run,
  wave,
  withOutputs,
} from '../support/graph-checks';

const ROOT = path.join(__dirname, '..', 'fixtures', 'real-export');
const FIXTURES = ['sd15-tiny', 'sd2v-tiny'] as const;
type Fixture = (typeof FIXTURES)[number];
/** A non-square latent, so a height/width mix-up would show in the token counts. */
const [LH, LW] = [16, 12];
const FEATURES = '/up_blocks.1/attentions.2/Add_output_0';
const DRAWS = 64;

const decode = (file: string) => onnx.ModelProto.decode(fs.readFileSync(file));
const unetConfig = (f: Fixture) => readUnetConfig(path.join(ROOT, f, 'unet', 'config.json'));
const encode = (m: onnx.IModelProto) => onnx.ModelProto.encode(m).finish();

// Decoded once per fixture: passes must leave them untouched, which the tests check.
const unets = new Map<Fixture, onnx.ModelProto>();
function unet(f: Fixture): onnx.ModelProto {
  if (!unets.has(f)) unets.set(f, decode(path.join(ROOT, f, 'unet', 'model.onnx')));
  return unets.get(f)!;
}

/** optimum 1.16: int64 timestep [1]; optimum 1.24: float32 scalar. */
function unetFeeds(f: Fixture, phase = 0): Record<string, ort.Tensor> {
  const timestep =
    f === 'sd15-tiny'
      ? new ort.Tensor('int64', BigInt64Array.of(500n), [1])
      : new ort.Tensor('float32', Float32Array.of(500), []);
  return { sample: wave([1, 4, LH, LW], phase), timestep, encoder_hidden_states: wave([1, 77, 32], 1) };
}

/**
 * What deduplicating exporters do to constants: every group of identical initializers and Constant-node tensors
 * becomes one shared initializer, and each former constant an Identity of it — so no op reads a constant directly.
 */
function mergeConstantsViaIdentity(model: onnx.ModelProto): onnx.ModelProto {
  const copy = onnx.ModelProto.decode(encode(model));
  const graph = copy.graph!;
  const shared = new Map<string, string>();
  const sharedName = (t: onnx.ITensorProto) => {
    const key = Buffer.from(onnx.TensorProto.encode({ ...t, name: '' }).finish()).toString('base64');
    if (!shared.has(key)) {
      shared.set(key, `merged::${shared.size}`);
      graph.initializer!.push(onnx.TensorProto.create({ ...t, name: `merged::${shared.size - 1}` }));
    }
    return shared.get(key)!;
  };
  const originals = graph.initializer!.splice(0);
  const identities = originals.map((t) => identity(sharedName(t), t.name!));
  const nodes = graph.node!.map((n) =>
    n.opType === 'Constant' && n.attribute![0].name === 'value'
      ? identity(sharedName(n.attribute![0].t!), n.output![0])
      : n,
  );
  graph.node = [...identities, ...nodes];
  return copy;
}

const identity = (from: string, to: string) =>
  onnx.NodeProto.create({ name: `merge/${to}`, opType: 'Identity', input: [from], output: [to] });

describe.each(FIXTURES)('%s', (f) => {
  describe('attention sites', () => {
    it('12 sites, 6 self and 6 cross, where diffusers builds them, with their resolution and heads', () => {
      const found = findAttentionSites(unet(f), { latent: { height: LH, width: LW } });
      expect(found.pattern).toBe('torch1-baddbmm');
      expect(found.sites).toHaveLength(12);
      expect(found.sites.filter((s) => s.kind === 'self')).toHaveLength(6);
      const config = unetConfig(f);
      expect(found.sites.map(({ module, kind, resolution, heads }) => ({ module, kind, resolution, heads }))).toEqual(
        expectedSites(config),
      );
      for (const s of found.sites) {
        expect(s.heads * s.headDim).toBe(config.block_out_channels[Math.log2(s.resolution)]);
        expect(s.layout).toBe('folded');
        expect(s.tokens).toBe(s.kind === 'self' ? (LH / s.resolution) * (LW / s.resolution) : 77);
      }
    });

    it('ORT agrees: probabilities are [B·heads, N_q, N_k] with those heads and tokens', async () => {
      const sites = findAttentionSites(unet(f), { latent: { height: LH, width: LW } }).sites;
      const out = await run(
        withOutputs(
          unet(f),
          sites.map((s) => s.tensors.probs),
        ),
        unetFeeds(f),
        sites.map((s) => s.tensors.probs),
      );
      for (const s of sites) {
        const queries = (LH / s.resolution) * (LW / s.resolution);
        expect([s.module, out[s.tensors.probs].dims]).toEqual([s.module, [s.heads, queries, s.tokens]]);
      }
    });

    it('the same sites when constants reach the ops through Identity nodes', () => {
      const plain = findAttentionSites(unet(f));
      const merged = findAttentionSites(mergeConstantsViaIdentity(unet(f)));
      expect(merged).toEqual(plain);
    });
  });

  describe('self-attention-kv', () => {
    const rewrite = () => {
      const before = encode(unet(f));
      const sites = findAttentionSites(unet(f)).sites;
      const r = selfAttentionKv.apply(unet(f), sites, {});
      if (!r.ok) throw new Error(r.reason);
      expect(Buffer.compare(encode(unet(f)), before)).toBe(0);
      return { ...r, sites, bytes: encode(r.model) };
    };

    it('adds weight/key/value inputs and key/value outputs for the 6 self-attention sites only', () => {
      const { ports, sites } = rewrite();
      const self = sites.filter((s) => s.kind === 'self').map((s) => s.module);
      expect(ports.inputs).toHaveLength(18);
      expect(ports.outputs).toHaveLength(12);
      expect([...new Set(ports.inputs.map((p) => p.site))]).toEqual(self);
      expect(ports.inputs.every((p) => p.type === 'float32' && p.neutralValue === 0)).toBe(true);
      expect(ports.inputs.filter((p) => p.name.endsWith('/key')).every((p) => p.neutralShape.join() === '1,1,1')).toBe(
        true,
      );
    });

    it('at the neutral values the UNet output is the original; weight 1 with zero K/V changes it', async () => {
      const { ports, bytes } = rewrite();
      const feeds = unetFeeds(f);
      const original = await run(encode(unet(f)), feeds, ['out_sample']);
      const neutral = await run(bytes, { ...feeds, ...neutralFeeds(ports.inputs) }, [
        'out_sample',
        ...ports.outputs.map((p) => p.name),
      ]);
      expect(maxDiff(neutral.out_sample, original.out_sample)).toBeLessThanOrEqual(1e-6);
      const live = Object.fromEntries(
        ports.inputs.map((p) => [p.name, filled(p.type, p.neutralShape, p.name.endsWith('/weight') ? 1 : 0)]),
      );
      const changed = await run(bytes, { ...feeds, ...live }, ['out_sample']);
      expect(maxDiff(changed.out_sample, original.out_sample)).toBeGreaterThan(1e-3);
    });

    it('an injected frame’s keys are what the queries attend to (one site, folded heads)', async () => {
      const site = findAttentionSites(unet(f)).sites[0];
      await checkInjection(f, site);
    });
  });

  describe('feature-tap', () => {
    it('outputs the tensor entering conv_norm_out and leaves out_sample as it was', async () => {
      await expectTap(f, unet(f));
    });

    it('also when the exporter merged identical constants into Identity nodes', async () => {
      const merged = mergeConstantsViaIdentity(unet(f));
      await expectTap(f, merged);
    });
  });
});

async function expectTap(f: Fixture, model: onnx.ModelProto): Promise<void> {
  const r = featureTap.apply(model, [], {});
  if (!r.ok) throw new Error(r.reason);
  expect(r.ports.outputs.map((p) => [p.name, p.type])).toEqual([[FEATURE_TAP_OUTPUT, 'float32']]);
  expect(r.ports.outputs[0].role).toContain(FEATURES);
  const feeds = unetFeeds(f);
  const truth = await run(withOutputs(model, [FEATURES]), feeds, ['out_sample', FEATURES]);
  const tapped = await run(encode(r.model), feeds, ['out_sample', FEATURE_TAP_OUTPUT]);
  expect(tapped[FEATURE_TAP_OUTPUT].dims).toEqual([1, 32, LH, LW]);
  expect(maxDiff(tapped[FEATURE_TAP_OUTPUT], truth[FEATURES])).toBe(0);
  expect(maxDiff(tapped.out_sample, truth.out_sample)).toBe(0);
}

/** Frame 2 attends with frame 1's keys and values: ORT's probabilities must be softmax(Q₂·K₁ᵀ/√d). */
async function checkInjection(f: Fixture, site: AttentionSite): Promise<void> {
  const r = selfAttentionKv.apply(unet(f), [site], { sites: [site.module] });
  if (!r.ok) throw new Error(r.reason);
  const names = selfAttentionKvPorts(site.module);
  const bytes = withOutputs(r.model, [site.tensors.query, site.tensors.probs]);
  const anchor = await run(bytes, { ...unetFeeds(f), ...neutralFeeds(r.ports.inputs) }, [names.keyOut, names.valueOut]);
  expect(anchor[names.keyOut].dims).toEqual([site.heads, LH * LW, site.headDim]);
  const injected = {
    [names.weight]: filled('float32', [1], 1),
    [names.key]: anchor[names.keyOut],
    [names.value]: anchor[names.valueOut],
  };
  const out = await run(bytes, { ...unetFeeds(f, 2), ...injected }, [site.tensors.query, site.tensors.probs]);
  const expected = attentionProbs(out[site.tensors.query], anchor[names.keyOut], site.headDim);
  expect(maxDiff(out[site.tensors.probs], expected)).toBeLessThan(1e-5);
}

describe('vae-mean', () => {
  const image = wave([1, 3, 64, 48], 0.5);
  const encoder = (f: Fixture) => decode(path.join(ROOT, f, 'vae_encoder', 'model.onnx'));

  it('sd15-tiny (optimum 1.16, latent_sample drawn in the graph): the output becomes the mean', async () => {
    const model = encoder('sd15-tiny');
    const before = encode(model);
    const r = vaeMean.apply(model, [], {});
    if (!r.ok) throw new Error(r.reason);
    expect(Buffer.compare(encode(model), before)).toBe(0);
    expect(r.ports.inputs).toEqual([]);
    expect(r.ports.outputs.map((p) => [p.name, p.type])).toEqual([['latent_sample', 'float32']]);
    expect(r.ports.outputs[0].role).toMatch(/mean/);
    expect(r.model.graph!.node!.some((n) => n.opType?.startsWith('Random'))).toBe(false);
    const bytes = encode(r.model);
    const [a, b] = [
      await run(bytes, { sample: image }, ['latent_sample']),
      await run(bytes, { sample: image }, ['latent_sample']),
    ];
    expect(a.latent_sample.dims).toEqual([1, 4, 8, 6]);
    expect(maxDiff(a.latent_sample, b.latent_sample)).toBe(0);
    // The original draws anew each run; its mean tensor (the first half of quant_conv's moments) is what we output.
    const original = withOutputs(model, ['/Slice_output_0']);
    const session = await ort.InferenceSession.create(original);
    const draws: Float32Array[] = [];
    let truth: ort.Tensor | undefined;
    for (let i = 0; i < DRAWS; i++) {
      const out = await session.run({ sample: image }, ['latent_sample', '/Slice_output_0']);
      draws.push(floats(out.latent_sample));
      truth = out['/Slice_output_0'];
    }
    await session.release();
    expect(maxDiff(draws[0], draws[1])).toBeGreaterThan(1e-3);
    expect(maxDiff(a.latent_sample, truth!)).toBe(0);
    // The draws' average converges on it: ~1/√DRAWS of one draw's distance.
    const avg = floats(a.latent_sample).map((_, i) => draws.reduce((sum, d) => sum + d[i], 0) / DRAWS);
    expect(meanAbs(avg, floats(a.latent_sample))).toBeLessThan(meanAbs(draws[0], floats(a.latent_sample)) / 3);
  });

  it('sd2v-tiny (optimum 1.24, latent_parameters): refused, no draw; the output is already deterministic', async () => {
    const model = encoder('sd2v-tiny');
    const r = vaeMean.apply(model, [], {});
    expect(!r.ok && r.reason).toMatch(/no random draw.*latent_parameters.*already deterministic/);
    const bytes = encode(model);
    const [a, b] = [
      await run(bytes, { sample: image }, ['latent_parameters']),
      await run(bytes, { sample: image }, ['latent_parameters']),
    ];
    expect(a.latent_parameters.dims).toEqual([1, 8, 8, 6]);
    expect(maxDiff(a.latent_parameters, b.latent_parameters)).toBe(0);
  });
});

function meanAbs(a: Float32Array, b: Float32Array): number {
  return a.reduce((sum, v, i) => sum + Math.abs(v - b[i]), 0) / a.length;
}
