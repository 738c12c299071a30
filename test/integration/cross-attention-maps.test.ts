// Prompt-to-prompt's attention control as graph ports (onnx/passes/cross-attention-maps.ts) on real ONNX Runtime
// sessions: on graphs a real exporter wrote (test/fixtures/real-export: folded heads, a Cast between the softmax and
// the value MatMul), on this project's generated tiny-sd (split heads) and on hand-built float16 cross-attention
// blocks (softmax in float16, and upcast to float32 with a Cast back). The ports sit on the cross-attention sites
// only; at their neutral values the UNet computes the original bit for bit; `maps` is the head mean of the softmax
// output; a token's scale 0 removes exactly its contribution from the attention (no renormalisation), as a TypeScript
// reference computes it; injecting a run's own probabilities changes nothing and injecting item 0's into item 1
// changes item 1 alone; the in-graph swap (P2P's word swap: an item reads another item's maps of the same batch, each
// token those of an aligned token) changes nothing from an item to itself, and otherwise gives the attention a
// TypeScript reference computes from the exposed probabilities and values, on the items whose weight is not 0 alone;
// attention slicing still applies after the pass; and what the pass cannot rewrite it refuses with the reason.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { fromHalf, toHalf } from '../../engine/src/diffusion/half';
import * as ort from '../../engine/src/models/ort';
import { findAttentionSites, type AttentionSite } from '../../engine/src/onnx/attention-sites';
import type { InputPort, Ports } from '../../engine/src/onnx/pass';
import { attentionSlicing } from '../../engine/src/onnx/passes/attention-slicing';
import { crossAttentionMaps, crossAttentionMapsPorts } from '../../engine/src/onnx/passes/cross-attention-maps';
import { selfAttentionBank } from '../../engine/src/onnx/passes/self-attention-bank';
import { maxDiff, neutralFeeds, wave, withOutputs } from '../support/graph-checks';
import {
  encodeModel,
  generatedSubject,
  realExportSubject,
  runGraph as run,
  tensorDiff as diff,
  unetSubject as subject,
  values,
  type UnetSubject as Subject,
} from '../support/unet-subjects';

const [LH, LW] = [8, 8];
/** The token whose scale is set to 0 (an ordinary text position: not the start token, not padding-only). */
const DROPPED = 3;
/** The token map of the permutation swap: target token t reads source token π(t) for these (T ≥ 6), t elsewhere. */
const PERMUTED = new Map([
  [1, 4],
  [4, 1],
  [3, 5],
]);
const encode = encodeModel;
const realExport = (name: 'sd15-tiny' | 'sd2v-tiny') => realExportSubject(name, [LH, LW]);
const generated = () => generatedSubject(path.join(tmp, 'tiny-sd-optimum'), 'optimum', [LH, LW]);
const decodeBytes = (bytes: Uint8Array) => onnx.ModelProto.decode(bytes);

let tmp: string;
beforeAll(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cross-attention-maps-'))));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Batch item `item` of two: the first or second half of the elements (batch leads every layout). */
const half = (t: ort.Tensor | Float32Array, item: number) => {
  const x = t instanceof Float32Array ? t : values(t);
  return x.subarray((item * x.length) / 2, ((item + 1) * x.length) / 2);
};

function mapsPass(s: Subject, options: { sites?: string[] } = {}): { model: onnx.ModelProto; ports: Ports } {
  const before = encode(s.model);
  const r = crossAttentionMaps.apply(s.model, s.sites, options);
  if (!r.ok) throw new Error(r.reason);
  expect(Buffer.compare(encode(s.model), before)).toBe(0);
  return r;
}

function tensor(type: InputPort['type'], data: Float32Array, dims: number[]): ort.Tensor {
  return type === 'float16' ? new ort.Tensor('float16', toHalf(data), dims) : new ort.Tensor('float32', data, dims);
}

/** A per-token tensor, [1, 1, T] or [1, 1, 1, T] (the site's layout), of the port's type. */
function perToken(site: AttentionSite, port: InputPort, tokens: number, f: (j: number) => number): ort.Tensor {
  const dims = site.layout === 'split' ? [1, 1, 1, tokens] : [1, 1, tokens];
  return tensor(
    port.type,
    Float32Array.from({ length: tokens }, (_, j) => f(j)),
    dims,
  );
}

/** Neutral feeds of every port, with some of every site's replaced. */
function controls(
  s: Subject,
  ports: Ports,
  set: (site: AttentionSite, port: 'replace' | 'replaceWeight' | 'scale', p: InputPort) => ort.Tensor | undefined,
): Record<string, ort.Tensor> {
  const feeds = neutralFeeds(ports.inputs);
  for (const site of s.cross) {
    const names = crossAttentionMapsPorts(site.module);
    for (const key of ['replace', 'replaceWeight', 'scale'] as const) {
      const p = ports.inputs.find((i) => i.name === names[key])!;
      const t = set(site, key, p);
      if (t) feeds[p.name] = t;
    }
  }
  return feeds;
}

/** A swap in a batch of two items: the item each item reads, the token each token reads, the weight. */
interface Swap {
  source: [number, number];
  /** Source token of target token t (default t). */
  token?: (t: number) => number;
  /** Per item and token, fed per item ([2·heads, 1, T] / [2, 1, 1, T]); else `tokenWeight`. */
  weight?: (item: number, t: number) => number;
  /** Per token, fed as one row for all items ([1, 1, T] / [1, 1, 1, T]). */
  tokenWeight?: (t: number) => number;
}

const swapWeight = (swap: Swap, item: number, t: number) => swap.weight?.(item, t) ?? swap.tokenWeight!(t);

/** The swap ports of every cross-attention site fed for `swap` (a batch of two). */
function swapFeeds(s: Subject, ports: Ports, swap: Swap): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  const T = s.tokens;
  for (const site of s.cross) {
    const names = crossAttentionMapsPorts(site.module);
    const port = ports.inputs.find((i) => i.name === names.swapWeight)!;
    // Folded: a row per item and head, item b's head h at b·heads + h; split: a row per item.
    const heads = site.layout === 'split' ? 1 : site.heads;
    const row = (r: number) => swap.source[Math.floor(r / heads)] * heads + (r % heads);
    const rows = BigInt64Array.from({ length: 2 * heads }, (_, r) => BigInt(row(r)));
    feeds[names.swapSource] = new ort.Tensor('int64', rows, [rows.length]);
    const tokens = BigInt64Array.from({ length: T }, (_, t) => BigInt(swap.token?.(t) ?? t));
    feeds[names.swapToken] = new ort.Tensor('int64', tokens, [T]);
    if (swap.weight) {
      const w = Float32Array.from({ length: 2 * heads * T }, (_, e) =>
        swap.weight!(Math.floor(e / (heads * T)), e % T),
      );
      feeds[names.swapWeight] = tensor(port.type, w, site.layout === 'split' ? [2, 1, 1, T] : [2 * heads, 1, T]);
    } else {
      feeds[names.swapWeight] = perToken(site, port, T, swap.tokenWeight!);
    }
  }
  return feeds;
}

/**
 * The probabilities a swap makes of probabilities [2·heads, N_q, T] or [2, heads, N_q, T] (an item's heads are
 * contiguous in both): (1 − w)·p + w·p[source item, same head and row, source token], in float64.
 */
function swappedProbs(p: Float32Array, tokens: number, swap: Swap): Float32Array {
  const item = p.length / 2;
  const out = new Float32Array(p.length);
  for (let b = 0; b < 2; b++) {
    for (let e = 0; e < item; e++) {
      const t = e % tokens;
      const w = swapWeight(swap, b, t);
      const source = p[swap.source[b] * item + e - t + (swap.token?.(t) ?? t)];
      out[b * item + e] = (1 - w) * p[b * item + e] + w * source;
    }
  }
  return out;
}

/** Two items with item 0's latent and different texts: the source and target branches of one edit step. */
function sameLatent(s: Subject): Record<string, ort.Tensor> {
  const feeds = s.feeds(2);
  const latent = s.out === 'y' ? 'x' : 'sample';
  return { ...feeds, [latent]: item0Twice(feeds[latent]) };
}

/** Mean over the heads of probabilities [B·heads, N_q, T] or [B, heads, N_q, T] (the same element order), float64. */
function headMean(probs: Float32Array, batch: number, heads: number, rows: number, tokens: number): Float32Array {
  const out = new Float32Array(batch * rows * tokens);
  const plane = rows * tokens;
  for (let b = 0; b < batch; b++) {
    for (let e = 0; e < plane; e++) {
      let sum = 0;
      for (let h = 0; h < heads; h++) sum += probs[(b * heads + h) * plane + e];
      out[b * plane + e] = sum / heads;
    }
  }
  return out;
}

/** Σ_j p_j·scale_j·v_j per head and query row, float64: the attention after a reweight (no renormalisation). */
function weighted(p: Float32Array, v: Float32Array, scale: (j: number) => number, tokens: number, d: number) {
  const groups = v.length / (tokens * d);
  const rows = p.length / (groups * tokens);
  const out = new Float32Array(groups * rows * d);
  for (let g = 0; g < groups; g++) {
    for (let i = 0; i < rows; i++) {
      for (let c = 0; c < d; c++) {
        let acc = 0;
        for (let j = 0; j < tokens; j++) acc += p[(g * rows + i) * tokens + j] * scale(j) * v[(g * tokens + j) * d + c];
        out[(g * rows + i) * d + c] = acc;
      }
    }
  }
  return out;
}

/** Largest |row sum − 1| of maps [B, N_q, T]. */
function rowSumError(maps: Float32Array, tokens: number): number {
  let worst = 0;
  for (let r = 0; r < maps.length / tokens; r++) {
    let sum = 0;
    for (let j = 0; j < tokens; j++) sum += maps[r * tokens + j];
    worst = Math.max(worst, Math.abs(sum - 1));
  }
  return worst;
}

/** Item 0's half of a tensor, twice: item 0's probabilities for both items. */
function item0Twice(t: ort.Tensor): ort.Tensor {
  const x = t.data as Float32Array | Uint16Array;
  const both = x.slice();
  both.set(x.subarray(0, x.length / 2), x.length / 2);
  return new ort.Tensor(t.type, both, t.dims);
}

const outputOf = (m: onnx.IModelProto, site: AttentionSite) =>
  m.graph!.node!.find((n) => n.name === site.nodes.output)!.output![0];

const sliceNodes = (m: onnx.IModelProto) =>
  (m.graph?.node ?? []).filter((n) => n.opType === 'Slice' && n.name?.startsWith('reshoot/attention-slicing/')).length;

/** Checks 2–3: neutral is the original; maps is the head mean of the original probabilities, rows summing to 1. */
async function neutralAndMaps(s: Subject, label: string, tolerance: { maps: number; sums: number }) {
  const { model, ports } = mapsPass(s);
  const feeds = s.feeds(2);
  const probs = s.cross.map((x) => x.tensors.probs);
  const probsType = model.graph!.input!.find((i) => i.name === ports.inputs[0].name)!.type!.tensorType!.elemType!;
  const original = await run(s, withOutputs(s.model, probs, probsType), feeds, [s.out, ...probs]);
  const maps = s.cross.map((x) => crossAttentionMapsPorts(x.module).maps);
  const neutralPorts = neutralFeeds(ports.inputs);
  // The swap's ports too get their neutral values and nothing else: row 0, token 0, at weight 0.
  for (const site of s.cross) {
    const p = crossAttentionMapsPorts(site.module);
    for (const name of [p.swapSource, p.swapToken]) {
      expect([
        neutralPorts[name].type,
        neutralPorts[name].dims,
        [...(neutralPorts[name].data as BigInt64Array)],
      ]).toEqual(['int64', [1], [0n]]);
    }
    expect(values(neutralPorts[p.swapWeight]).every((w) => w === 0)).toBe(true);
  }
  const neutral = await run(s, model, { ...feeds, ...neutralPorts }, [s.out, ...maps]);
  const dOut = diff(neutral[s.out], original[s.out]);
  let [dMaps, dSum, dSumProbs] = [0, 0, 0];
  for (const site of s.cross) {
    const m = neutral[crossAttentionMapsPorts(site.module).maps];
    expect(m.type).toBe('float32');
    const rows = (LH / site.resolution) * (LW / site.resolution);
    if (s.out === 'out_sample') expect(m.dims).toEqual([2, rows, s.tokens]);
    const p = values(original[site.tensors.probs]);
    const expected = headMean(p, 2, site.heads, p.length / (2 * site.heads * s.tokens), s.tokens);
    dMaps = Math.max(dMaps, diff(m, expected));
    dSum = Math.max(dSum, rowSumError(m.data as Float32Array, s.tokens));
    dSumProbs = Math.max(dSumProbs, rowSumError(expected, s.tokens));
  }
  console.log(
    `${label}: neutral vs original ${dOut}; maps vs head mean ${dMaps}; |row sum − 1| ≤ ${dSum} ` +
      `(of the probabilities' head mean: ${dSumProbs})`,
  );
  expect(dOut).toBe(0);
  expect(dMaps).toBeLessThanOrEqual(tolerance.maps);
  expect(dSum).toBeLessThanOrEqual(tolerance.sums);
}

describe.each([
  ['sd15-tiny (real export, folded heads)', () => realExport('sd15-tiny')],
  ['sd2v-tiny (real export, folded heads, upcast_attention)', () => realExport('sd2v-tiny')],
  ['generated tiny-sd (split heads)', () => generated()],
] as const)('%s', (label, make) => {
  let s: Subject;
  beforeAll(() => (s = make()));
  // The unrewritten graph's output the swap tests compare with, run once per subject for each batch they feed (and
  // awaited before another run starts: a session on external data is created in its directory).
  const originals = new Map<string, Record<string, ort.Tensor>>();
  const baseline = async (batch: 'different latents' | 'same latent') => {
    const feeds = batch === 'same latent' ? sameLatent(s) : s.feeds(2);
    if (!originals.has(batch)) originals.set(batch, await run(s, s.model, feeds, [s.out]));
    return { feeds, original: originals.get(batch)! };
  };

  it('1 output and 6 inputs per cross-attention site, none on self-attention; what it cannot rewrite it refuses', () => {
    const { ports } = mapsPass(s);
    const ones = s.cross[0].layout === 'split' ? [1, 1, 1, 1] : [1, 1, 1];
    expect(s.cross.length).toBeGreaterThanOrEqual(4);
    expect(ports.inputs).toHaveLength(6 * s.cross.length);
    expect(ports.outputs).toHaveLength(s.cross.length);
    expect([...new Set([...ports.inputs, ...ports.outputs].map((p) => p.site))]).toEqual(s.cross.map((x) => x.module));
    for (const site of s.cross) {
      const p = crossAttentionMapsPorts(site.module);
      expect(
        ports.inputs.filter((i) => i.site === site.module).map((i) => [i.name, i.type, i.neutralShape, i.neutralValue]),
      ).toEqual([
        [p.replace, 'float32', ones, 0],
        [p.replaceWeight, 'float32', ones, 0],
        [p.scale, 'float32', ones, 1],
        [p.swapSource, 'int64', [1], 0],
        [p.swapToken, 'int64', [1], 0],
        [p.swapWeight, 'float32', ones, 0],
      ]);
      expect(ports.outputs.filter((o) => o.site === site.module).map((o) => [o.name, o.type])).toEqual([
        [p.maps, 'float32'],
      ]);
    }
    const self = s.self[0].module;
    expect(crossAttentionMaps.apply(s.model, s.sites, { sites: ['no.such.module'] })).toEqual({
      ok: false,
      reason: 'no.such.module is not an attention site of this graph',
    });
    expect(crossAttentionMaps.apply(s.model, s.sites, { sites: [s.cross[0].module, self] })).toEqual({
      ok: false,
      reason: `${self} is a self-attention site; the pass rewrites cross-attention only`,
    });
    const one = mapsPass(s, { sites: [s.cross[1].module] });
    expect(one.ports.inputs.map((i) => i.site)).toEqual(new Array(6).fill(s.cross[1].module));
    const twice = crossAttentionMaps.apply(mapsPass(s).model, s.sites, { sites: [s.cross[1].module] });
    expect(twice).toEqual({ ok: false, reason: `${s.cross[1].module}: the pass was already applied to this site` });
    // The self-attention bank rewrites the other sites: the two passes compose in either order.
    const bank = selfAttentionBank.apply(s.model, s.sites, {});
    expect(bank.ok && crossAttentionMaps.apply(bank.model, s.sites, {}).ok).toBe(true);
    expect(selfAttentionBank.apply(mapsPass(s).model, s.sites, {}).ok).toBe(true);
  });

  it('at the neutral values the output is the original; maps is the head mean of the probabilities', async () => {
    await neutralAndMaps(s, label, { maps: 1e-6, sums: 1e-5 });
  });

  it('reweight: scale 1 is neutral; scale 0 for one token removes exactly its contribution (no renormalisation)', async () => {
    const { model, ports } = mapsPass(s);
    const feeds = s.feeds(2);
    const site = s.cross[0];
    const attention = outputOf(model, site);
    const neutral = await run(s, model, { ...feeds, ...neutralFeeds(ports.inputs) }, [s.out]);
    const ones = controls(s, ports, (x, key, p) => (key === 'scale' ? perToken(x, p, s.tokens, () => 1) : undefined));
    const explicit = await run(s, model, { ...feeds, ...ones }, [s.out]);
    const drop = (j: number) => (j === DROPPED ? 0 : 1);
    const dropped = controls(s, ports, (x, key, p) => (key === 'scale' ? perToken(x, p, s.tokens, drop) : undefined));
    const extra = [site.tensors.probs, site.tensors.value, attention];
    const maps = crossAttentionMapsPorts(site.module).maps;
    const r = await run(s, withOutputs(model, extra), { ...feeds, ...dropped }, [s.out, maps, ...extra]);
    const [p, v] = [values(r[site.tensors.probs]), values(r[site.tensors.value])];
    const dRef = diff(r[attention], weighted(p, v, drop, s.tokens, site.headDim));
    // maps is what the model attended to, before the reweight: token t's column is still there.
    const dMaps = diff(r[maps], headMean(p, 2, site.heads, p.length / (2 * site.heads * s.tokens), s.tokens));
    // The reference is not trivially met: with token t kept the attention differs.
    const dKept = diff(
      r[attention],
      weighted(p, v, () => 1, s.tokens, site.headDim),
    );
    const dOnes = diff(explicit[s.out], neutral[s.out]);
    const dOut = diff(r[s.out], neutral[s.out]);
    console.log(
      `${label}: explicit ones vs neutral ${dOnes}; token ${DROPPED} dropped: ${site.module} attention vs reference ` +
        `${dRef} (vs keeping it ${dKept}), output change ${dOut}; maps vs head mean of the unscaled probs ${dMaps}`,
    );
    expect(dOnes).toBe(0);
    expect(dMaps).toBeLessThanOrEqual(1e-6);
    expect(dRef).toBeLessThanOrEqual(1e-5);
    expect(dKept).toBeGreaterThan(1e-4);
    expect(dOut).toBeGreaterThan(1e-4);
  });

  it('replace: a run’s own probabilities at weight 1 change nothing; item 0’s injected into item 1 change item 1 alone', async () => {
    const { model, ports } = mapsPass(s);
    const feeds = s.feeds(2);
    const probs = s.cross.map((x) => x.tensors.probs);
    const original = await run(s, withOutputs(s.model, probs), feeds, [s.out, ...probs]);
    const inject = (of: (t: ort.Tensor) => ort.Tensor) =>
      controls(s, ports, (x, key, p) => {
        if (key === 'replace') return of(original[x.tensors.probs]);
        return key === 'replaceWeight' ? perToken(x, p, s.tokens, () => 1) : undefined;
      });
    const own = await run(s, model, { ...feeds, ...inject((t) => t) }, [s.out]);
    const swapped = await run(s, model, { ...feeds, ...inject(item0Twice) }, [s.out]);
    const dOwn = diff(own[s.out], original[s.out]);
    const [d0, d1] = [0, 1].map((i) => maxDiff(half(swapped[s.out], i), half(original[s.out], i)));
    // First the replace, then the reweight: at the first site (whose probabilities nothing upstream changes) the own
    // probabilities injected and token t scaled to 0 is the reweight alone; the other order would inject the
    // unscaled probabilities over the reweight and compute the original.
    const first = s.cross[0];
    const drop = (j: number) => (j === DROPPED ? 0 : 1);
    const scaleOnly = controls(s, ports, (x, key, p) =>
      x === first && key === 'scale' ? perToken(x, p, s.tokens, drop) : undefined,
    );
    const both = controls(s, ports, (x, key, p) => {
      if (x !== first) return undefined;
      if (key === 'replace') return original[x.tensors.probs];
      return perToken(x, p, s.tokens, key === 'scale' ? drop : () => 1);
    });
    const reweighted = await run(s, model, { ...feeds, ...scaleOnly }, [s.out]);
    const replacedThenReweighted = await run(s, model, { ...feeds, ...both }, [s.out]);
    const dOrder = diff(replacedThenReweighted[s.out], reweighted[s.out]);
    const dReweight = diff(reweighted[s.out], original[s.out]);
    console.log(
      `${label}: own probabilities injected ${dOwn}; item 0's into item 1: item 0 ${d0}, item 1 ${d1}; ` +
        `own injected + token ${DROPPED} dropped vs dropped alone ${dOrder} (vs original ${dReweight})`,
    );
    expect(dOwn).toBeLessThanOrEqual(1e-6);
    expect(dOrder).toBeLessThanOrEqual(1e-6);
    expect(dReweight).toBeGreaterThan(1e-4);
    expect(d0).toBeLessThanOrEqual(1e-6);
    expect(d1).toBeGreaterThan(1e-3);
  });

  it('swap from each item to itself, identity tokens, weight 1 at every site: the original, bit for bit', async () => {
    const { model, ports } = mapsPass(s);
    const { feeds, original } = await baseline('different latents');
    const own = swapFeeds(s, ports, { source: [0, 1], tokenWeight: () => 1 });
    const r = await run(s, model, { ...feeds, ...neutralFeeds(ports.inputs), ...own }, [s.out]);
    const d = diff(r[s.out], original[s.out]);
    console.log(`${label}: every item swapped from itself, all tokens at weight 1: vs original ${d}`);
    expect(d).toBe(0);
  });

  it('swap item 0’s maps into item 1 (same latent, other text) at every site: item 1 reads them, item 0 is unchanged', async () => {
    const { model, ports } = mapsPass(s);
    const { feeds, original } = await baseline('same latent');
    const swap: Swap = { source: [0, 0], tokenWeight: () => 1 };
    const { d0, d1, dRef, dOwn, dMaps } = await swapAtSite(s, model, ports, feeds, original, swap);
    console.log(
      `${label}: item 0's maps into item 1: output change item 0 ${d0}, item 1 ${d1}; attention vs reference ` +
        `${dRef} (vs item 1's own probabilities ${dOwn}); maps vs head mean of the unswapped probs ${dMaps}`,
    );
    expect(d0).toBe(0);
    expect(d1).toBeGreaterThan(1e-3);
    expect(dRef).toBeLessThanOrEqual(1e-5);
    expect(dOwn).toBeGreaterThan(1e-4);
    expect(dMaps).toBeLessThanOrEqual(1e-6);
  });

  it('swap with a token map and per-token weights: only the chosen tokens read their source tokens', async () => {
    const { model, ports } = mapsPass(s);
    const swap: Swap = {
      source: [0, 0],
      token: (t) => PERMUTED.get(t) ?? t,
      tokenWeight: (t) => (t === 3 ? 0.5 : PERMUTED.has(t) ? 1 : 0),
    };
    const { feeds, original } = await baseline('same latent');
    const { d0, d1, dRef, dOwn } = await swapAtSite(s, model, ports, feeds, original, swap);
    console.log(
      `${label}: tokens ${[...PERMUTED].map(([t, u]) => `${t}←${u}`).join(' ')} from item 0: output change ` +
        `item 0 ${d0}, item 1 ${d1}; attention vs reference ${dRef} (vs unswapped ${dOwn})`,
    );
    expect(dRef).toBeLessThanOrEqual(1e-5);
    expect(dOwn).toBeGreaterThan(1e-4);
    expect(d0).toBeGreaterThan(1e-4);
    expect(d1).toBeGreaterThan(1e-4);
  });

  it('swap weight per item: 0 for item 0 and 1 for item 1 (each reading the other) changes item 1 alone', async () => {
    const { model, ports } = mapsPass(s);
    const swap: Swap = { source: [1, 0], weight: (item) => item };
    const { feeds, original } = await baseline('different latents');
    const { d0, d1, dRef, dOwn } = await swapAtSite(s, model, ports, feeds, original, swap);
    console.log(
      `${label}: items exchanged, weight 0 / 1: output change item 0 ${d0}, item 1 ${d1}; attention vs ` +
        `reference ${dRef} (vs unswapped ${dOwn})`,
    );
    expect(d0).toBe(0);
    expect(d1).toBeGreaterThan(1e-3);
    expect(dRef).toBeLessThanOrEqual(1e-5);
    expect(dOwn).toBeGreaterThan(1e-4);
  });

  it('attention slicing (2 slices) applies after the pass and gives the unsliced variant’s output', async () => {
    const { model, ports } = mapsPass(s);
    const sliced = attentionSlicing.apply(model, s.sites, { slices: 2 });
    if (!sliced.ok) throw new Error(sliced.reason);
    expect(sliceNodes(sliced.model)).toBe(2 * s.self.length);
    // Slicing the cross-attention sites too is refused: the maps read the probabilities besides the chain.
    const cross = attentionSlicing.apply(model, s.sites, { slices: 2, cross: true });
    console.log(`${label}: attention-slicing with cross: true after the pass: ${cross.ok ? 'applied' : cross.reason}`);
    const feeds = s.feeds(2);
    const live = {
      ...feeds,
      ...controls(s, ports, (x, key, p) =>
        key === 'scale' ? perToken(x, p, s.tokens, (j) => 0.5 + (j % 3) * 0.5) : undefined,
      ),
    };
    const original = await run(s, s.model, feeds, [s.out]);
    const whole = await run(s, model, live, [s.out]);
    const parts = await run(s, sliced.model, live, [s.out]);
    const [dLive, dSliced] = [diff(whole[s.out], original[s.out]), diff(parts[s.out], whole[s.out])];
    console.log(`${label}: reweighted vs original ${dLive}, sliced vs unsliced ${dSliced}`);
    expect(dLive).toBeGreaterThan(1e-3);
    expect(dSliced).toBeLessThanOrEqual(1e-5);
  });
});

/**
 * A swap at every cross-attention site, checked at one (the middle one: its queries, too, differ between the items
 * once item 1 read other maps upstream): per item, the largest output change against the unrewritten graph; that
 * site's attention against the reference from its exposed probabilities and values (the value MatMul reads the
 * swapped probabilities, cast to float16 where the graph's attention is), and against the unswapped attention; `maps`
 * against the head mean of the unswapped probabilities. `types`: element types of the exposed probabilities and V.
 */
async function swapAtSite(
  s: Subject,
  model: onnx.ModelProto,
  ports: Ports,
  feeds: Record<string, ort.Tensor>,
  original: Record<string, ort.Tensor>,
  swap: Swap,
  types: { probs: number; value: number; read?: (p: Float32Array) => Float32Array } = { probs: 1, value: 1 },
) {
  const site = s.cross[Math.floor(s.cross.length / 2)];
  const attention = outputOf(model, site);
  const maps = crossAttentionMapsPorts(site.module).maps;
  const exposed = withOutputs(
    decodeBytes(withOutputs(model, [site.tensors.probs], types.probs)),
    [site.tensors.value, attention],
    types.value,
  );
  const live = { ...feeds, ...neutralFeeds(ports.inputs), ...swapFeeds(s, ports, swap) };
  const r = await run(s, exposed, live, [s.out, maps, site.tensors.probs, site.tensors.value, attention]);
  const [p, v] = [values(r[site.tensors.probs]), values(r[site.tensors.value])];
  const read = types.read ?? ((x: Float32Array) => x);
  const reference = weighted(read(swappedProbs(p, s.tokens, swap)), v, () => 1, s.tokens, site.headDim);
  const unswapped = weighted(read(p), v, () => 1, s.tokens, site.headDim);
  const changed = (item: number) => maxDiff(half(r[s.out], item), half(original[s.out], item));
  return {
    d0: changed(0),
    d1: changed(1),
    dRef: diff(r[attention], reference),
    dOwn: diff(r[attention], unswapped),
    dMaps: diff(r[maps], headMean(p, 2, site.heads, p.length / (2 * site.heads * s.tokens), s.tokens)),
  };
}

/**
 * One cross-attention block in float16, as fp16 exports have it: to_q from x, to_k/to_v from the text, heads split to
 * [B, heads, N, d], K transposed to Kᵀ, scale, softmax, ·V, heads merged. With `upcast`, upcast_attention's form: Q
 * and Kᵀ cast to float32, the scores and softmax in float32, a Cast back to float16 before the value MatMul.
 */
function fp16CrossAttention(heads: number, headDim: number, upcast: boolean): onnx.ModelProto {
  const DT = onnx.TensorProto.DataType;
  const c = heads * headDim;
  const p = '/down_blocks.0/attentions.0/transformer_blocks.0/attn2';
  const nodes: onnx.INodeProto[] = [];
  const op = (type: string, inputs: string[], name: string, attribute: onnx.IAttributeProto[] = []) => {
    nodes.push({ name: `${p}/${name}`, opType: type, input: inputs, output: [`${p}/${name}_output_0`], attribute });
    return `${p}/${name}_output_0`;
  };
  const perm = (ints: number[]) => [{ name: 'perm', type: onnx.AttributeProto.AttributeType.INTS, ints }];
  const to = (t: number) => [{ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: t }];
  const tensor = (name: string, type: onnx.TensorProto.DataType, dims: number[], data: number[]) =>
    onnx.TensorProto.create({
      name,
      dataType: type,
      dims,
      rawData:
        type === DT.FLOAT16 ? new Uint8Array(toHalf(data).buffer) : new Uint8Array(Float32Array.from(data).buffer),
    });
  const weight = (name: string, seed: number) =>
    tensor(
      name,
      DT.FLOAT16,
      [c, c],
      Array.from({ length: c * c }, (_, i) => 0.4 * Math.sin(i * 0.71 + seed)),
    );
  const ints = (name: string, data: number[]) =>
    onnx.TensorProto.create({ name, dataType: DT.INT64, dims: [data.length], int64Data: data });
  const heads4 = (x: string, w: string, name: string) =>
    op(
      'Transpose',
      [op('Reshape', [op('MatMul', [x, w], `${name}/MatMul`), 'split'], `${name}/Reshape`)],
      `${name}/Transpose`,
      perm([0, 2, 1, 3]),
    );
  let q = heads4('x', 'wq', 'to_q');
  let kt = op('Transpose', [heads4('text', 'wk', 'to_k')], 'Transpose_kt', perm([0, 1, 3, 2]));
  const v = heads4('text', 'wv', 'to_v');
  if (upcast) [q, kt] = [op('Cast', [q], 'Cast_q', to(DT.FLOAT)), op('Cast', [kt], 'Cast_k', to(DT.FLOAT))];
  const scores = op('MatMul', [q, kt], 'MatMul');
  const softmax = op('Softmax', [op('Mul', [scores, 'scale'], 'Mul')], 'Softmax', [
    { name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: -1 },
  ]);
  const probs = upcast ? op('Cast', [softmax], 'Cast_probs', to(DT.FLOAT16)) : softmax;
  const attention = op('MatMul', [probs, v], 'MatMul_1');
  const merged = op(
    'Reshape',
    [op('Transpose', [attention], 'Transpose_out', perm([0, 2, 1, 3])), 'merge'],
    'Reshape_out',
  );
  nodes.push({ name: `${p}/to_out/MatMul`, opType: 'MatMul', input: [merged, 'wo'], output: ['y'] });
  const io = (name: string) => onnx.ValueInfoProto.create({ name, type: { tensorType: { elemType: DT.FLOAT16 } } });
  return onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'fp16-cross-attention',
      node: nodes,
      input: [io('x'), io('text')],
      output: [io('y')],
      initializer: [
        weight('wq', 1),
        weight('wk', 2),
        weight('wv', 3),
        weight('wo', 4),
        tensor('scale', upcast ? DT.FLOAT : DT.FLOAT16, [], [1 / Math.sqrt(headDim)]),
        ints('split', [0, -1, heads, headDim]),
        ints('merge', [0, -1, c]),
      ],
    },
  });
}

describe.each([
  ['softmax in float16', false],
  ['upcast: softmax in float32, Cast to float16', true],
] as const)('a float16 cross-attention block, %s', (label, upcast) => {
  const [heads, headDim, rows, tokens] = [2, 4, 16, 6];
  let s: Subject;
  beforeAll(() => {
    const half16 = (t: ort.Tensor) => new ort.Tensor('float16', toHalf(t.data as Float32Array), t.dims);
    s = subject(fp16CrossAttention(heads, headDim, upcast), {
      out: 'y',
      tokens,
      feeds: (batch) => ({
        x: half16(wave([batch, rows, heads * headDim], 0.2)),
        text: half16(wave([batch, tokens, heads * headDim], 1.1)),
      }),
    });
  });

  it('ports of the softmax’s type, float32 maps; neutral is the original; a dropped token matches the reference', async () => {
    expect(s.sites.map((x) => [x.kind, x.layout, x.heads, x.headDim])).toEqual([['cross', 'split', heads, headDim]]);
    const { model, ports } = mapsPass(s);
    const type = upcast ? 'float32' : 'float16';
    expect(ports.inputs.map((p) => [p.type, p.neutralShape, p.neutralValue])).toEqual([
      [type, [1, 1, 1, 1], 0],
      [type, [1, 1, 1, 1], 0],
      [type, [1, 1, 1, 1], 1],
      ['int64', [1], 0],
      ['int64', [1], 0],
      [type, [1, 1, 1, 1], 0],
    ]);
    expect(ports.outputs.map((p) => p.type)).toEqual(['float32']);
    // A float16 softmax: ONNX Runtime's CPU provider computes it in float32 between Casts it inserts, and drops the
    // float32 → float16 → float32 pair in front of the maps' Cast, so the maps are the float32 softmax the graph's
    // probabilities are rounded from: within float16's half ulp (≤ 2⁻¹² below 1) of the probabilities.
    await neutralAndMaps(
      s,
      `float16 block, ${label}`,
      upcast ? { maps: 1e-6, sums: 1e-5 } : { maps: 2.5e-4, sums: 4e-3 },
    );
    const site = s.cross[0];
    const attention = outputOf(model, site);
    const drop = (j: number) => (j === DROPPED ? 0 : 1);
    const feeds = controls(s, ports, (x, key, p) => (key === 'scale' ? perToken(x, p, tokens, drop) : undefined));
    const extra = [site.tensors.probs, site.tensors.value, attention];
    // The softmax output is float32 where upcast, V and the attention float16.
    const exposed = withOutputs(decodeBytes(withOutputs(model, [extra[0]], upcast ? 1 : 10)), extra.slice(1), 10);
    const r = await run(s, exposed, { ...s.feeds(2), ...feeds }, ['y', ...extra]);
    const p = values(r[site.tensors.probs]);
    // Where the softmax is float32 the value MatMul reads it cast to float16: so does the reference.
    const read = upcast ? fromHalf(toHalf(p)) : p;
    const dRef = diff(r[attention], weighted(read, values(r[site.tensors.value]), drop, tokens, headDim));
    const dKept = diff(
      r[attention],
      weighted(read, values(r[site.tensors.value]), () => 1, tokens, headDim),
    );
    console.log(`float16 block, ${label}: token ${DROPPED} dropped, attention vs reference ${dRef} (kept ${dKept})`);
    // V and the probabilities are float16, ORT's MatMul accumulates in float16: a few ulps at ~1.
    expect(dRef).toBeLessThanOrEqual(4e-3);
    expect(dKept).toBeGreaterThan(1e-2);
  });

  it('swap on the softmax’s type: from itself is the original (to float16 rounding); item 0’s permuted maps match the reference', async () => {
    const { model, ports } = mapsPass(s);
    const feeds = s.feeds(2);
    const original = await run(s, s.model, feeds, ['y']);
    const own = swapFeeds(s, ports, { source: [0, 1], tokenWeight: () => 1 });
    const dOwnSwap = diff(
      (await run(s, model, { ...feeds, ...neutralFeeds(ports.inputs), ...own }, ['y'])).y,
      original.y,
    );
    // Item 1 reads item 0's probabilities, tokens permuted, item 0 keeps its own (weight 0); weights 0 and 1 only, so
    // the float16 blend is exact and the reference is the gathered probabilities themselves.
    const swap: Swap = {
      source: [1, 0],
      token: (t) => PERMUTED.get(t) ?? t,
      weight: (item, t) => (item === 1 && PERMUTED.has(t) ? 1 : 0),
    };
    // Where the softmax is float32 the value MatMul reads it cast to float16: so does the reference.
    const read = upcast ? (p: Float32Array) => fromHalf(toHalf(p)) : undefined;
    const r = await swapAtSite(s, model, ports, feeds, original, swap, { probs: upcast ? 1 : 10, value: 10, read });
    console.log(
      `float16 block, ${label}: swapped from itself vs original ${dOwnSwap}; item 0's permuted maps into item 1: ` +
        `output change item 0 ${r.d0}, item 1 ${r.d1}; attention vs reference ${r.dRef} (vs unswapped ${r.dOwn})`,
    );
    // Where the softmax is float16, ONNX Runtime's CPU provider computes it, the blends and the value MatMul in float32
    // (casts it inserts, and drops where they pair up), so the original reads the float32 softmax; the swap's Gathers
    // take any type and read the float16 probabilities the graph declares: a self-swap moves y by their rounding.
    expect(dOwnSwap).toBeLessThanOrEqual(upcast ? 0 : 2e-3);
    expect(r.d0).toBe(0);
    expect(r.d1).toBeGreaterThan(1e-2);
    // The attention is float16, the reference float64 over float16 operands: a few ulps at ~1.
    expect(r.dRef).toBeLessThanOrEqual(4e-3);
    expect(r.dOwn).toBeGreaterThan(1e-2);
  });
});

describe('what the pass refuses', () => {
  it('probabilities that reach the value MatMul through anything but casts: refused, naming the tensor', () => {
    const s = realExport('sd15-tiny');
    const site = s.cross[0];
    const cast = s.model.graph!.node!.find((n) => n.input?.[0] === site.tensors.probs)!;
    expect(cast.opType).toBe('Cast');
    cast.opType = 'Relu';
    cast.attribute = [];
    expect(crossAttentionMaps.apply(s.model, s.sites, {})).toEqual({
      ok: false,
      reason: `${site.module}: no value MatMul reads the probabilities ${site.tensors.probs} (through Cast/Identity/Dropout only)`,
    });
  });

  it('an element type it cannot tell: refused', () => {
    const model = fp16CrossAttention(2, 4, false);
    for (const i of model.graph!.input!) i.type!.tensorType!.elemType = 0;
    const r = crossAttentionMaps.apply(model, findAttentionSites(model).sites, {});
    expect(r).toEqual({
      ok: false,
      reason:
        'down_blocks.0.attentions.0.transformer_blocks.0.attn2: the element type of the probabilities is not ' +
        'float32/float16 (unknown)',
    });
  });
});
