// PnP structure lock (onnx/passes/structure-lock.ts) on real ONNX Runtime sessions: on graphs a real exporter wrote
// (test/fixtures/real-export: folded heads, torch 1 baddbmm; upcast_attention's Casts), on this project's generated
// tiny-sd (split heads, Kᵀ only; float32 and float16 I/O) and on a hand-built float16 attention block (split heads,
// K before its transpose, float16 ports). The ports sit on the decoder's self-attention sites and on
// up_blocks.1.resnets.1; at their neutral values the UNet computes the original bit for bit, and so it does when
// every row injects its own Q, K and features (weight 1); with item 0 as the source of both items, item 0 stays
// exactly as it was and item 1 changes; at weight 0.5 a rewritten site computes the attention a TypeScript reference
// computes from the blended Q and K; injecting features alone makes item 1's residual branch item 0's, exactly;
// attention slicing still applies after the pass and gives the same output; and what the pass cannot do it refuses
// with the reason.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { toHalf } from '../../engine/src/diffusion/half';
import * as ort from '../../engine/src/models/ort';
import type { InputPort, Ports } from '../../engine/src/onnx/pass';
import { attentionSlicing } from '../../engine/src/onnx/passes/attention-slicing';
import {
  structureLock,
  structureLockPorts,
  type StructureLockOptions,
} from '../../engine/src/onnx/passes/structure-lock';
import { maxDiff, neutralFeeds, withOutputs } from '../support/graph-checks';
import {
  encodeModel,
  generatedSubject,
  realExportSubject,
  runGraph as run,
  tensorDiff as diff,
  values,
  type UnetSubject as Subject,
  fp16AttentionSubject,
} from '../support/unet-subjects';

const [LH, LW] = [8, 8];
const RESNET = 'up_blocks.1.resnets.1';
const realExport = (name: 'sd15-tiny' | 'sd2v-tiny') => realExportSubject(name, [LH, LW]);
const generated = (variant: 'optimum' | 'olive-fp16') =>
  generatedSubject(path.join(tmp, `tiny-sd-${variant}`), variant, [LH, LW]);

let tmp: string;
beforeAll(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'structure-lock-'))));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function lockPass(s: Subject, options: StructureLockOptions = {}): { model: onnx.ModelProto; ports: Ports } {
  const before = encodeModel(s.model);
  const r = structureLock.apply(s.model, s.sites, options);
  if (!r.ok) throw new Error(r.reason);
  expect(Buffer.compare(encodeModel(s.model), before)).toBe(0);
  return r;
}

/** Batch item `item` of two: the first or second half of the elements (batch leads every layout). */
const half = (t: ort.Tensor | Float32Array, item: number) => {
  const x = t instanceof Float32Array ? t : values(t);
  return x.subarray((item * x.length) / 2, ((item + 1) * x.length) / 2);
};

const decoderSites = (s: Subject) => s.self.filter((x) => x.module.startsWith('up_blocks.'));

/** Rows of the first axis per batch item: the heads where they are folded into the batch, else 1. */
function rowsPerItem(s: Subject, module: string): number {
  const site = s.sites.find((x) => x.module === module);
  return site && site.layout !== 'split' ? site.heads : 1;
}

/** Per batch item: the item it takes its structure from, and the weight. */
interface Injection {
  from: number[];
  weight: number[];
}

/**
 * Feeds of every port: Q/K ports (attention sites) from `qk`, resnet ports from `features`, neutral where left out;
 * item-level sources are expanded to rows (folded heads: row b·heads + h reads row from(b)·heads + h).
 */
function lockFeeds(s: Subject, ports: Ports, qk?: Injection, features?: Injection): Record<string, ort.Tensor> {
  const feeds = neutralFeeds(ports.inputs);
  const modules = [...new Set(ports.inputs.map((p) => p.site!))];
  for (const module of modules) {
    const injection = s.sites.some((x) => x.module === module) ? qk : features;
    if (!injection) continue;
    const names = structureLockPorts(module);
    const weightPort = ports.inputs.find((p) => p.name === names.weight)!;
    const heads = rowsPerItem(s, module);
    const rows = injection.from.flatMap((from) => Array.from({ length: heads }, (_, h) => from * heads + h));
    feeds[names.source] = new ort.Tensor(
      'int64',
      BigInt64Array.from(rows, (r) => BigInt(r)),
      [rows.length],
    );
    const w = injection.weight.flatMap((x) => new Array<number>(heads).fill(x));
    const dims = [w.length, ...weightPort.neutralShape.slice(1)];
    feeds[names.weight] = floatTensor(weightPort.type, Float32Array.from(w), dims);
  }
  return feeds;
}

function floatTensor(type: InputPort['type'], data: Float32Array, dims: number[]): ort.Tensor {
  return type === 'float16' ? new ort.Tensor('float16', toHalf(data), dims) : new ort.Tensor('float32', data, dims);
}

/** The rewritten graph's name for the tensor a node of the original graph read as `tensor`. */
function readAs(model: onnx.IModelProto, nodeName: string, original: onnx.IModelProto, tensor: string): string {
  const before = original.graph!.node!.find((n) => n.name === nodeName)!;
  const after = model.graph!.node!.find((n) => n.name === nodeName)!;
  return after.input![before.input!.indexOf(tensor)];
}

/** [groups, d, N] → [groups, N, d]. */
function transposeLast(x: Float32Array, groups: number, d: number): Float32Array {
  const n = x.length / (groups * d);
  const out = new Float32Array(x.length);
  for (let g = 0; g < groups; g++)
    for (let c = 0; c < d; c++) for (let j = 0; j < n; j++) out[(g * n + j) * d + c] = x[(g * d + c) * n + j];
  return out;
}

/** (1 − w)·x + w·x[source row] per group of `size` elements, in float64. */
function blendRows(x: Float32Array, source: number[], weight: number[], size: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < source.length; r++) {
    for (let e = 0; e < size; e++)
      out[r * size + e] = (1 - weight[r]) * x[r * size + e] + weight[r] * x[source[r] * size + e];
  }
  return out;
}

/** softmax(Q·Kᵀ/√d)·V per group of [N, d] rows, in float64. */
function attend(q: Float32Array, k: Float32Array, v: Float32Array, groups: number, d: number): Float32Array {
  const n = q.length / (groups * d);
  const out = new Float32Array(q.length);
  const row = new Float64Array(n);
  for (let g = 0; g < groups; g++) {
    for (let i = 0; i < n; i++) {
      let max = -Infinity;
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let c = 0; c < d; c++) s += q[(g * n + i) * d + c] * k[(g * n + j) * d + c];
        row[j] = s / Math.sqrt(d);
        max = Math.max(max, row[j]);
      }
      let z = 0;
      for (let j = 0; j < n; j++) z += row[j] = Math.exp(row[j] - max);
      for (let c = 0; c < d; c++) {
        let acc = 0;
        for (let j = 0; j < n; j++) acc += row[j] * v[(g * n + j) * d + c];
        out[(g * n + i) * d + c] = acc / z;
      }
    }
  }
  return out;
}

const sliceNodes = (m: onnx.IModelProto) =>
  (m.graph?.node ?? []).filter((n) => n.opType === 'Slice' && n.name?.startsWith('reshoot/attention-slicing/')).length;

const SOURCE_0: Injection = { from: [0, 0], weight: [0, 1] };

describe.each([
  ['sd15-tiny (real export, folded heads, baddbmm)', () => realExport('sd15-tiny')],
  ['sd2v-tiny (real export, folded heads, upcast_attention)', () => realExport('sd2v-tiny')],
  ['generated tiny-sd optimum (split heads, Kᵀ only)', () => generated('optimum')],
  ['generated tiny-sd olive-fp16 (float16 I/O)', () => generated('olive-fp16')],
] as const)('%s', (label, make) => {
  let s: Subject;
  beforeAll(() => (s = make()));

  it('ports: source and weight per decoder self-attention site and for up_blocks.1.resnets.1, nowhere else', () => {
    const { ports } = lockPass(s);
    const decoder = decoderSites(s);
    expect(decoder.length).toBeGreaterThanOrEqual(2);
    expect(decoder.length).toBeLessThan(s.self.length);
    expect(ports.outputs).toEqual([]);
    expect([...new Set(ports.inputs.map((p) => p.site))]).toEqual([...decoder.map((x) => x.module), RESNET]);
    for (const module of [...decoder.map((x) => x.module), RESNET]) {
      const names = structureLockPorts(module);
      const site = s.sites.find((x) => x.module === module);
      const rank = site?.layout === 'folded' ? 3 : 4;
      expect(
        ports.inputs.filter((p) => p.site === module).map((p) => [p.name, p.type, p.neutralShape, p.neutralValue]),
      ).toEqual([
        [names.source, 'int64', [1], 0],
        [names.weight, 'float32', new Array(rank).fill(1), 0],
      ]);
    }
  });

  it('at the neutral values the output is the original, bit for bit', async () => {
    const { model, ports } = lockPass(s);
    const feeds = s.feeds(2);
    const original = await run(s, s.model, feeds, [s.out]);
    const neutral = await run(s, model, { ...feeds, ...neutralFeeds(ports.inputs) }, [s.out]);
    const d = diff(neutral[s.out], original[s.out]);
    console.log(`${label}: neutral vs original ${d}`);
    expect(d).toBe(0);
  });

  it('every row injecting its own Q, K and features at weight 1 changes nothing, bit for bit', async () => {
    const { model, ports } = lockPass(s);
    const feeds = s.feeds(2);
    const own: Injection = { from: [0, 1], weight: [1, 1] };
    const original = await run(s, s.model, feeds, [s.out]);
    const r = await run(s, model, { ...feeds, ...lockFeeds(s, ports, own, own) }, [s.out]);
    // Not a no-op: swapping the items' structure changes both.
    const swap: Injection = { from: [1, 0], weight: [1, 1] };
    const swapped = await run(s, model, { ...feeds, ...lockFeeds(s, ports, swap, swap) }, [s.out]);
    const [dOwn, dSwap] = [diff(r[s.out], original[s.out]), diff(swapped[s.out], original[s.out])];
    console.log(`${label}: own structure ${dOwn}, swapped ${dSwap}`);
    expect(dOwn).toBe(0);
    expect(dSwap).toBeGreaterThan(1e-3);
  });

  it('item 0 as the source of both items (weight 0 for item 0, 1 for item 1): item 0 stays exactly, item 1 changes', async () => {
    const { model, ports } = lockPass(s);
    const feeds = s.feeds(2);
    const original = await run(s, s.model, feeds, [s.out]);
    const r = await run(s, model, { ...feeds, ...lockFeeds(s, ports, SOURCE_0, SOURCE_0) }, [s.out]);
    // Weight 1 for item 0 too: its source is itself.
    const both = await run(s, model, { ...feeds, ...lockFeeds(s, ports, { from: [0, 0], weight: [1, 1] }) }, [s.out]);
    const [d0, d1] = [0, 1].map((i) => maxDiff(half(r[s.out], i), half(original[s.out], i)));
    const d0Both = maxDiff(half(both[s.out], 0), half(original[s.out], 0));
    console.log(`${label}: item 0 ${d0} (weight 1 from itself: ${d0Both}), item 1 ${d1}`);
    expect(d0).toBe(0);
    expect(d0Both).toBe(0);
    expect(d1).toBeGreaterThan(1e-3);
  });

  it('at weight 0.5 from item 0 each rewritten site computes softmax(Q′K′ᵀ/√d)·V of the blended Q and K', async () => {
    const { model, ports } = lockPass(s);
    const feeds = { ...s.feeds(2), ...lockFeeds(s, ports, { from: [0, 0], weight: [0.5, 0.5] }, SOURCE_0) };
    let worst = 0;
    let injected = 0;
    for (const site of decoderSites(s)) {
      const attention = model.graph!.node!.find((n) => n.name === site.nodes.output)!.output![0];
      const { query, key, value } = site.tensors;
      const r = await run(s, withOutputs(model, [query, key, value, attention]), feeds, [query, key, value, attention]);
      const groups = 2 * site.heads;
      const d = site.headDim;
      const perItem = values(r[query]).length / 2;
      const rows =
        site.layout === 'split'
          ? [0, 0]
          : [...new Array<number>(site.heads).keys(), ...new Array<number>(site.heads).keys()];
      const w = site.layout === 'split' ? [0.5, 0.5] : new Array<number>(groups).fill(0.5);
      const size = site.layout === 'split' ? perItem : perItem / site.heads;
      const k = site.keyTransposed ? transposeLast(values(r[key]), groups, d) : values(r[key]);
      const q = values(r[query]);
      const v = values(r[value]);
      const expected = attend(blendRows(q, rows, w, size), blendRows(k, rows, w, size), v, groups, d);
      worst = Math.max(worst, diff(r[attention], expected));
      // The reference is not trivially met: item 1's attention from its own Q and K differs.
      injected = Math.max(injected, maxDiff(half(r[attention], 1), half(attend(q, k, v, groups, d), 1)));
      // Item 0 blends with itself: its own attention.
      expect(maxDiff(half(r[attention], 0), half(attend(q, k, v, groups, d), 0))).toBeLessThanOrEqual(1e-5);
    }
    console.log(`${label}: attention vs reference ${worst}; item 1 vs its un-injected attention ${injected}`);
    expect(worst).toBeLessThanOrEqual(1e-5);
    expect(injected).toBeGreaterThan(1e-4);
  });

  it('features alone (Q/K weight 0, resnet weight 1 from item 0): item 1’s residual branch is item 0’s, exactly', async () => {
    const { model, ports } = lockPass(s);
    const feeds = { ...s.feeds(2), ...lockFeeds(s, ports, undefined, { from: [0, 0], weight: [1, 1] }) };
    const add = `/${RESNET.replace('.resnets.', '/resnets.')}/Add_1`;
    const conv = `/${RESNET.replace('.resnets.', '/resnets.')}/conv2/Conv_output_0`;
    const injected = readAs(model, add, s.model, conv);
    expect(injected).not.toBe(conv);
    const original = await run(s, s.model, s.feeds(2), [s.out]);
    const r = await run(s, withOutputs(model, [conv, injected]), feeds, [s.out, conv, injected]);
    const dItems = maxDiff(half(r[injected], 1), half(r[injected], 0));
    const dOwn = maxDiff(half(r[conv], 1), half(r[conv], 0));
    const d0 = maxDiff(half(r[s.out], 0), half(original[s.out], 0));
    const d1 = maxDiff(half(r[s.out], 1), half(original[s.out], 1));
    console.log(
      `${label}: injected item 1 vs item 0 ${dItems} (own conv2 outputs differ by ${dOwn}); out item 0 ${d0}, item 1 ${d1}`,
    );
    expect(dItems).toBe(0);
    expect(maxDiff(half(r[injected], 0), half(r[conv], 0))).toBe(0);
    expect(dOwn).toBeGreaterThan(1e-3);
    expect(d0).toBe(0);
    expect(d1).toBeGreaterThan(1e-3);
  });

  it('attention slicing (2 slices) applies after the pass, slices every self-attention site, and gives the unsliced output', async () => {
    const { model, ports } = lockPass(s);
    const sliced = attentionSlicing.apply(model, s.sites, { slices: 2 });
    if (!sliced.ok) throw new Error(sliced.reason);
    expect(sliceNodes(sliced.model)).toBe(2 * s.self.length);
    const feeds = s.feeds(2);
    const live = { ...feeds, ...lockFeeds(s, ports, { from: [0, 0], weight: [0.5, 0.7] }, SOURCE_0) };
    const original = await run(s, s.model, feeds, [s.out]);
    const whole = await run(s, model, live, [s.out]);
    const parts = await run(s, sliced.model, live, [s.out]);
    const neutral = await run(s, sliced.model, { ...feeds, ...neutralFeeds(ports.inputs) }, [s.out]);
    const [dLive, dSliced] = [diff(whole[s.out], original[s.out]), diff(parts[s.out], whole[s.out])];
    const dNeutral = diff(neutral[s.out], original[s.out]);
    console.log(`${label}: injected vs original ${dLive}, sliced vs unsliced ${dSliced}, sliced neutral ${dNeutral}`);
    expect(dLive).toBeGreaterThan(1e-3);
    expect(dSliced).toBeLessThanOrEqual(1e-5);
    expect(dNeutral).toBeLessThanOrEqual(1e-5);
  });

  it('refuses a cross-attention site, an unknown resnet, and a second application', () => {
    const cross = s.cross[0].module;
    expect(structureLock.apply(s.model, s.sites, { sites: [decoderSites(s)[0].module, cross] })).toEqual({
      ok: false,
      reason: `${cross} is a cross-attention site; structure-lock injects self-attention queries and keys only`,
    });
    expect(structureLock.apply(s.model, s.sites, { features: ['up_blocks.1.resnets.7'] })).toEqual({
      ok: false,
      reason: 'up_blocks.1.resnets.7 is not a resnet of this graph (no Conv node /up_blocks.1/resnets.7/conv2/Conv)',
    });
    const once = lockPass(s).model;
    const site = decoderSites(s)[0].module;
    expect(structureLock.apply(once, s.sites, {})).toEqual({
      ok: false,
      reason: `${site}: the pass was already applied to this site`,
    });
    expect(structureLock.apply(once, s.sites, { sites: [] })).toEqual({
      ok: false,
      reason: `${RESNET}: the pass was already applied to this resnet`,
    });
    // Other sites and resnets still take it.
    const more = structureLock.apply(once, s.sites, { sites: [s.self[0].module], features: ['up_blocks.1.resnets.0'] });
    expect(more.ok && more.ports.inputs.map((p) => p.site)).toEqual([
      s.self[0].module,
      s.self[0].module,
      'up_blocks.1.resnets.0',
      'up_blocks.1.resnets.0',
    ]);
  });
});

describe('choices and refusals', () => {
  const sd15 = () => realExport('sd15-tiny');

  it('sites: [] injects features only; features: [] Q/K only; an empty choice is refused', () => {
    const s = sd15();
    expect(lockPass(s, { sites: [] }).ports.inputs.map((p) => p.site)).toEqual([RESNET, RESNET]);
    const qk = lockPass(s, { features: [] }).ports.inputs.map((p) => p.site);
    expect(qk).toEqual(decoderSites(s).flatMap((x) => [x.module, x.module]));
    expect(structureLock.apply(s.model, s.sites, { sites: [], features: [] })).toEqual({
      ok: false,
      reason: 'no site and no resnet chosen: nothing to inject',
    });
    expect(structureLock.apply(s.model, s.sites, { sites: ['no.such.module'] })).toEqual({
      ok: false,
      reason: 'no.such.module is not an attention site of this graph',
    });
  });

  it('no decoder self-attention site: refused unless sites are named', () => {
    const s = sd15();
    const encoder = s.sites.filter((x) => !x.module.startsWith('up_blocks.'));
    expect(structureLock.apply(s.model, encoder, {})).toEqual({
      ok: false,
      reason: 'the graph has no self-attention site in the decoder (up_blocks.*); name the sites to inject',
    });
    const named = structureLock.apply(s.model, encoder, { sites: [encoder[0].module] });
    expect(named.ok).toBe(true);
  });

  it('a graph whose nodes carry no diffusers names: no default features, and a named resnet is refused', () => {
    const s = sd15();
    const model = onnx.ModelProto.decode(encodeModel(s.model));
    model.graph!.node!.forEach((n, i) => (n.name = `node${i}`));
    const r = structureLock.apply(model, s.sites, {});
    expect(r.ok && r.ports.inputs.some((p) => p.site === RESNET)).toBe(false);
    expect(structureLock.apply(model, s.sites, { features: [RESNET] })).toEqual({
      ok: false,
      reason: `${RESNET}: the graph's nodes carry no diffusers module names (no "…/resnets.<i>/…"), so resnet features cannot be found`,
    });
  });
});

describe('a float16 attention block (split heads, K before its transpose)', () => {
  const [heads, headDim, tokens] = [2, 4, 16];
  let s: Subject;
  beforeAll(() => {
    s = fp16AttentionSubject(heads, headDim, tokens, 'up_blocks.1.attentions.0.transformer_blocks.0.attn1');
  });

  it('float16 weight; neutral and own-structure are the original; item 0 as source changes item 1 alone', async () => {
    expect(s.sites.map((x) => [x.kind, x.layout, x.keyTransposed])).toEqual([['self', 'split', false]]);
    const { model, ports } = lockPass(s);
    const module = s.self[0].module;
    expect(ports.inputs.map((p) => [p.site, p.type, p.neutralShape])).toEqual([
      [module, 'int64', [1]],
      [module, 'float16', [1, 1, 1, 1]],
    ]);
    const feeds = s.feeds(2);
    const original = await run(s, s.model, feeds, ['y']);
    const neutral = await run(s, model, { ...feeds, ...neutralFeeds(ports.inputs) }, ['y']);
    const own = await run(s, model, { ...feeds, ...lockFeeds(s, ports, { from: [0, 1], weight: [1, 1] }) }, ['y']);
    const r = await run(s, model, { ...feeds, ...lockFeeds(s, ports, SOURCE_0) }, ['y']);
    const [d0, d1] = [0, 1].map((i) => maxDiff(half(r.y, i), half(original.y, i)));
    const dItems = maxDiff(half(r.y, 1), half(original.y, 0));
    console.log(
      `float16 block: neutral ${diff(neutral.y, original.y)}, own ${diff(own.y, original.y)}, item 0 ${d0}, item 1 ${d1}`,
    );
    expect(diff(neutral.y, original.y)).toBe(0);
    expect(diff(own.y, original.y)).toBe(0);
    expect(d0).toBe(0);
    expect(d1).toBeGreaterThan(1e-2);
    // Weight 1 from item 0: item 1 attends with item 0's Q and K to its own V, not item 0's output.
    expect(dItems).toBeGreaterThan(1e-3);
  });
});
