// Attention slicing (onnx/passes/attention-slicing.ts): self-attention computed over parts of the query axis gives
// the UNet's output unchanged, on graphs a real exporter wrote (torch 1.13 via optimum, opset 14, baddbmm's zero
// term included), on this project's generated layout, and through a whole `reshoot edit`; what it cannot slice it
// refuses with the reason.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import * as ort from '../../engine/src/models/ort';
import { makeTestClip } from '../../engine/src/media';
import { findAttentionSites } from '../../engine/src/onnx/attention-sites';
import { attentionSlicing } from '../../engine/src/onnx/passes/attention-slicing';
import { generateSdBench, generateTinySd } from '../../engine/src/models/generate/tiny-sd';
import { loadDiffusionModel } from '../../engine/src/models/sd-model';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import { selfAttentionKv } from '../../engine/src/onnx/passes/self-attention-kv';
import { CLI, reshootEdit } from '../support/cli';
import { maxDiff, neutralFeeds, run, wave } from '../support/graph-checks';

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'real-export');
const decode = (file: string) => onnx.ModelProto.decode(fs.readFileSync(file));
const encode = (m: onnx.IModelProto) => onnx.ModelProto.encode(m).finish();
let root: string;

beforeAll(() => (root = fs.mkdtempSync(path.join(os.tmpdir(), 'attention-slicing-'))));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function sliced(model: onnx.ModelProto, slices: number): onnx.ModelProto {
  const r = attentionSlicing.apply(model, findAttentionSites(model).sites, { slices });
  if (!r.ok) throw new Error(r.reason);
  expect(r.ports).toEqual({ inputs: [], outputs: [] });
  return r.model;
}

/** Slice nodes the rewrite added, per site: one per part. */
const sliceNodes = (m: onnx.IModelProto) =>
  (m.graph?.node ?? []).filter((n) => n.opType === 'Slice' && n.name?.startsWith('reshoot/attention-slicing/')).length;

describe.each([
  ['sd15-tiny', () => new ort.Tensor('int64', BigInt64Array.of(500n), [1])],
  ['sd2v-tiny', () => new ort.Tensor('float32', Float32Array.of(500), [])],
] as const)('real export %s', (name, timestep) => {
  const file = path.join(FIXTURES, name, 'unet', 'model.onnx');
  // A non-square latent whose token counts (192, 48, 12) do not divide evenly by 7: the last parts are short or empty.
  const feeds = () => ({
    sample: wave([2, 4, 16, 12]),
    timestep: timestep(),
    encoder_hidden_states: wave([2, 77, 32], 1),
  });

  it.each([2, 3, 7])(
    '%i slices: the UNet output is the unsliced one (≤ 1e-5), the source graph untouched',
    async (n) => {
      const model = decode(file);
      const before = encode(model);
      const rewritten = sliced(model, n);
      expect(Buffer.compare(encode(model), before)).toBe(0);
      expect(sliceNodes(rewritten)).toBe(6 * n);
      const [a, b] = await Promise.all([
        run(before, feeds(), ['out_sample']),
        run(encode(rewritten), feeds(), ['out_sample']),
      ]);
      expect(maxDiff(a.out_sample, b.out_sample)).toBeLessThanOrEqual(1e-5);
    },
  );

  it("drops baddbmm's zero term: no chain reads a [B·heads, N_q, N_k] tensor of zeros any more", () => {
    const rewritten = sliced(decode(file), 2);
    const adds = rewritten.graph!.node!.filter(
      (n) => n.name?.startsWith('reshoot/attention-slicing/') && n.opType === 'Add' && /attn1/.test(n.name),
    );
    const identities = rewritten.graph!.node!.filter(
      (n) => n.name?.startsWith('reshoot/attention-slicing/') && n.opType === 'Identity',
    );
    // sd15-tiny and sd2v-tiny were both exported by torch 1.13: baddbmm with β = 0 at every site.
    expect(adds.filter((n) => !/\/(n_plus)$/.test(n.name!))).toEqual([]);
    expect(identities.length).toBe(6 * 2);
  });
});

describe('after the self-attention K/V pass (slicing runs last)', () => {
  it('the sliced K/V variant at its neutral values gives the original output', async () => {
    const model = decode(path.join(FIXTURES, 'sd15-tiny', 'unet', 'model.onnx'));
    const sites = findAttentionSites(model).sites;
    const kv = selfAttentionKv.apply(model, sites, {});
    if (!kv.ok) throw new Error(kv.reason);
    const both = attentionSlicing.apply(kv.model, sites, { slices: 3 });
    if (!both.ok) throw new Error(both.reason);
    const feeds = () => ({
      sample: wave([1, 4, 16, 12]),
      timestep: new ort.Tensor('int64', BigInt64Array.of(500n), [1]),
      encoder_hidden_states: wave([1, 77, 32], 1),
    });
    const [a, b] = await Promise.all([
      run(encode(model), feeds(), ['out_sample']),
      run(encode(both.model), { ...feeds(), ...neutralFeeds(kv.ports.inputs) }, ['out_sample']),
    ]);
    expect(sliceNodes(both.model)).toBe(6 * 3);
    expect(maxDiff(a.out_sample, b.out_sample)).toBeLessThanOrEqual(1e-5);
  });
});

describe('the default', () => {
  it('8 slices for a model whose native latent is 64×64 (sd-bench); whole for a small one; an explicit 1 wins', async () => {
    const bench = path.join(root, 'sd-bench');
    generateSdBench(bench);
    const small = path.join(root, 'tiny-sd-default');
    generateTinySd(small, 'optimum');
    const slicesOf = async (dir: string, attentionSlices?: number) => {
      const m = await loadDiffusionModel(dir, {
        graphCache: null,
        threads: 1,
        ...(attentionSlices ? { attentionSlices } : {}),
      });
      try {
        return [m.info.attention.slices, m.info.attention.slicingNote];
      } finally {
        await m.release();
      }
    };
    expect(await slicesOf(bench)).toEqual([8, undefined]);
    expect(await slicesOf(small)).toEqual([1, undefined]);
    expect(await slicesOf(bench, 1)).toEqual([1, undefined]);
    // A graph with no attention at all (the embedded oracle): quietly whole by default, the reason when asked for.
    const oracle = path.join(root, 'oracle');
    generateOracle(oracle);
    expect(await slicesOf(oracle)).toEqual([1, undefined]);
    expect(await slicesOf(oracle, 4)).toEqual([1, 'the graph has no attention site to slice']);
  });
});

describe('generated tiny-sd (split heads, opset 21)', () => {
  it('4 slices: the UNet output is the unsliced one', async () => {
    const dir = path.join(root, 'tiny-sd');
    generateTinySd(dir, 'optimum');
    const model = decode(path.join(dir, 'unet', 'model.onnx'));
    const rewritten = sliced(model, 4);
    const cwd = process.cwd();
    // The generated UNet keeps its weights in model.onnx_data beside it; a graph from bytes resolves them from cwd.
    process.chdir(path.join(dir, 'unet'));
    try {
      const hidden = Number(
        (JSON.parse(fs.readFileSync('config.json', 'utf8')) as { cross_attention_dim: number }).cross_attention_dim,
      );
      const feeds = () => ({
        sample: wave([2, 4, 16, 16]),
        timestep: new ort.Tensor('float32', Float32Array.of(500), []),
        encoder_hidden_states: wave([2, 77, hidden], 1),
      });
      const out = (await ort.InferenceSession.create(encode(model))).outputNames[0];
      const [a, b] = await Promise.all([run(encode(model), feeds(), [out]), run(encode(rewritten), feeds(), [out])]);
      expect(maxDiff(a[out], b[out])).toBeLessThanOrEqual(1e-5);
    } finally {
      process.chdir(cwd);
    }
  });
});

describe('refusals', () => {
  const model = () => decode(path.join(FIXTURES, 'sd15-tiny', 'unet', 'model.onnx'));

  it('fewer than 2 slices', () => {
    const m = model();
    expect(attentionSlicing.apply(m, findAttentionSites(m).sites, { slices: 1 })).toEqual({
      ok: false,
      reason: 'slices must be an integer of at least 2 (got 1)',
    });
  });

  it('an opset before 13 (Softmax over a flattened block, not one axis)', () => {
    const m = model();
    m.opsetImport = [{ domain: '', version: 12 }];
    const r = attentionSlicing.apply(m, findAttentionSites(model()).sites, { slices: 2 });
    expect(r).toEqual({ ok: false, reason: 'opset 12: slicing needs opset 13 or later (per-axis Softmax)' });
  });

  it('a chain that adds something that varies by query (a real mask) is left alone, with the reason', () => {
    const m = model();
    const sites = findAttentionSites(m).sites;
    const site = sites.find((s) => s.kind === 'self')!;
    // Make the first site's zero term a graph input: no longer provably zero, and unknown along N_q.
    const add = m.graph!.node!.find(
      (n) => n.opType === 'Add' && n.name === site.nodes.softmax.replace(/Softmax$/, 'Add'),
    )!;
    add.input![1] = 'some_mask';
    m.graph!.input!.push(onnx.ValueInfoProto.create({ name: 'some_mask', type: { tensorType: { elemType: 1 } } }));
    const r = attentionSlicing.apply(m, sites, { slices: 2 });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toBe(`${site.module}: Add ${add.name} reads some_mask, which may vary by query`);
  });
});

describe('reshoot edit --attention-slices', () => {
  it('gives the same file as the whole attention; a bad count is a usage error', async () => {
    const model = path.join(root, 'tiny-sd-edit');
    generateTinySd(model, 'optimum');
    const clip = path.join(root, 'clip.mp4');
    await makeTestClip({
      file: clip,
      width: 96,
      height: 64,
      fps: { num: 8, den: 1 },
      frames: 4,
      content: 'moving-square',
    });
    const edit = (slices: number) => {
      const out = path.join(root, `edited-${slices}.mp4`);
      // A home of its own per run: the second must compute its inversion, not reuse the first's.
      const r = reshootEdit({
        clip,
        model,
        home: path.join(root, `home-${slices}`),
        args: ['--steps', '3', '--seed', '5', '--attention-slices', String(slices), '-o', out],
      });
      expect(r.stderr).not.toMatch(/^reshoot: |not applied/m);
      expect(r.status).toBe(0);
      if (slices > 1) expect(r.stderr).toContain(`self-attention in ${slices} slices`);
      return fs.readFileSync(out);
    };
    expect(Buffer.compare(edit(1), edit(3))).toBe(0);
    const bad = spawnSync(
      process.execPath,
      [CLI, 'edit', clip, '--prompt', 'x', '--model', model, '--attention-slices', '0'],
      {
        encoding: 'utf8',
        env: { ...process.env, RESHOOT_HOME: path.join(root, 'home-bad') },
      },
    );
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--attention-slices must be an integer from 1 to 64, got "0"/);
  });
});
