// TokenFlow's propagation (onnx/passes/token-propagation.ts) on real ONNX Runtime sessions: on graphs a real exporter
// wrote (test/fixtures/real-export: folded heads), on this project's generated tiny-sd (split heads; float32 and the
// olive float16 variant) and on a hand-built float16 attention block. At the neutral values the UNet computes the
// original; hidden_out/output_out are the graph's own to_q input X and to_out input O; an item whose keyframes are
// itself (its own X and O, weights 0.5/0.5) gets its own output back; item 1 propagated from items 0 and 2 gets
// exactly the nearest-neighbour blend a TypeScript reference computes; and what the pass cannot rewrite it refuses.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import * as ort from '../../engine/src/models/ort';
import { findAttentionSites, type AttentionSite } from '../../engine/src/onnx/attention-sites';
import { GraphIndex } from '../../engine/src/onnx/graph-index';
import type { Ports } from '../../engine/src/onnx/pass';
import { tokenPropagation, tokenPropagationPorts } from '../../engine/src/onnx/passes/token-propagation';
import { toHalf } from '../../engine/src/diffusion/half';
import { filled, maxDiff, neutralFeeds, withOutputs } from '../support/graph-checks';
import {
  encodeModel,
  fp16Attention,
  fp16AttentionSubject,
  generatedSubject,
  realExportSubject,
  runGraph as run,
  tensorDiff as diff,
  values,
  type UnetSubject as Subject,
} from '../support/unet-subjects';

const [LH, LW] = [8, 8];
const DT = onnx.TensorProto.DataType;

let tmp: string;
beforeAll(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'token-propagation-'))));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function pass(s: Subject, options: { sites?: string[] } = {}): { model: onnx.ModelProto; ports: Ports } {
  const before = encodeModel(s.model);
  const r = tokenPropagation.apply(s.model, s.sites, options);
  if (!r.ok) throw new Error(r.reason);
  expect(Buffer.compare(encodeModel(s.model), before)).toBe(0);
  return r;
}

/** X and O of a site in the ORIGINAL graph: to_q's input and to_out's input, as the pass's ports name them. */
function siteTensors(ports: Ports, site: AttentionSite): { x: string; o: string } {
  const p = tokenPropagationPorts(site.module);
  const find = (name: string) => ports.outputs.find((o) => o.name === name)!.tensor!;
  return { x: find(p.hiddenOut), o: find(p.outputOut) };
}

const floatType = (t: ort.Tensor) => (t.type === 'float16' ? 'float16' : 'float32');

/** A tensor of `type` from float32 values. */
function tensor(type: 'float32' | 'float16', data: Float32Array, dims: number[]): ort.Tensor {
  return type === 'float16' ? new ort.Tensor('float16', toHalf(data), dims) : new ort.Tensor('float32', data, dims);
}

/** Item `i` of a [B, N, C] tensor's values. */
function item(t: ort.Tensor, i: number): Float32Array {
  const x = values(t);
  const size = x.length / t.dims[0];
  return x.subarray(i * size, (i + 1) * size);
}

/** Rows concatenated into a tensor of `dims` (e.g. [B, 2, N, C] from 2·B items). */
function stack(type: 'float32' | 'float16', rows: Float32Array[], dims: number[]): ort.Tensor {
  const out = new Float32Array(rows.reduce((n, r) => n + r.length, 0));
  let at = 0;
  for (const r of rows) {
    out.set(r, at);
    at += r.length;
  }
  return tensor(type, out, dims);
}

/** Feeds of every site: each item's keyframes are itself (its own X and O twice), weights 0.5/0.5, on. */
function selfFeeds(s: Subject, ports: Ports, own: Record<string, ort.Tensor>, batch: number) {
  const feeds: Record<string, ort.Tensor> = {};
  for (const site of s.self) {
    const p = tokenPropagationPorts(site.module);
    const [x, o] = [own[p.hiddenOut], own[p.outputOut]];
    const [n, c] = x.dims.slice(1);
    const items = Array.from({ length: batch }, (_, b) => b);
    feeds[p.keyHidden] = stack(
      floatType(x),
      items.flatMap((b) => [item(x, b), item(x, b)]),
      [batch, 2, n, c],
    );
    feeds[p.keyOutput] = stack(
      floatType(o),
      items.flatMap((b) => [item(o, b), item(o, b)]),
      [batch, 2, n, o.dims[2]],
    );
    feeds[p.source] = new ort.Tensor('int64', BigInt64Array.from(items.map(BigInt)), [batch]);
    const type = ports.inputs.find((i) => i.name === p.on)!.type;
    feeds[p.weight] = filled(type, [1, 2], 0.5);
    feeds[p.on] = filled(type, [batch, 1, 1], 1);
  }
  return feeds;
}

/** out[n] = Σ_k w_k · O_k[argmax_j cos(x[n], X_k[j])], in float64; also the smallest top-2 cosine margin. */
function reference(
  x: Float32Array,
  keys: { hidden: Float32Array; output: Float32Array; weight: number }[],
  n: number,
  c: number,
): { out: Float32Array; margin: number } {
  const out = new Float64Array(n * c);
  let margin = Infinity;
  const norm = (v: Float32Array, i: number) => {
    let s = 0;
    for (let k = 0; k < c; k++) s += v[i * c + k] ** 2;
    return Math.sqrt(s + 1e-12);
  };
  for (const key of keys) {
    const keyNorms = Array.from({ length: n }, (_, j) => norm(key.hidden, j));
    for (let i = 0; i < n; i++) {
      const xi = norm(x, i);
      let [best, second, at] = [-Infinity, -Infinity, 0];
      for (let j = 0; j < n; j++) {
        let dot = 0;
        for (let k = 0; k < c; k++) dot += x[i * c + k] * key.hidden[j * c + k];
        const cos = dot / (xi * keyNorms[j]);
        if (cos > best) [second, best, at] = [best, cos, j];
        else if (cos > second) second = cos;
      }
      margin = Math.min(margin, best - second);
      for (let k = 0; k < c; k++) out[i * c + k] += key.weight * key.output[at * c + k];
    }
  }
  return { out: Float32Array.from(out), margin };
}

const ownOutputs = (s: Subject) =>
  s.self.flatMap((site) => [
    tokenPropagationPorts(site.module).hiddenOut,
    tokenPropagationPorts(site.module).outputOut,
  ]);

describe.each([
  ['sd15-tiny (real export, folded heads)', () => realExportSubject('sd15-tiny', [LH, LW])],
  ['sd2v-tiny (real export, folded heads)', () => realExportSubject('sd2v-tiny', [LH, LW])],
  ['generated tiny-sd (split heads)', () => generatedSubject(path.join(tmp, 'optimum'), 'optimum', [LH, LW])],
  ['generated tiny-sd olive-fp16', () => generatedSubject(path.join(tmp, 'olive'), 'olive-fp16', [LH, LW])],
] as const)('%s', (name, make) => {
  let s: Subject;
  beforeAll(() => (s = make()));

  it('5 inputs and 2 outputs per self-attention site; refuses cross-attention and a second application', () => {
    const { model, ports } = pass(s);
    expect(s.self.length).toBeGreaterThanOrEqual(4);
    expect(ports.inputs).toHaveLength(5 * s.self.length);
    expect(ports.outputs).toHaveLength(2 * s.self.length);
    for (const site of s.self) {
      const p = tokenPropagationPorts(site.module);
      const mine = ports.inputs.filter((i) => i.site === site.module);
      expect(mine.map((i) => [i.name, i.neutralShape, i.neutralValue])).toEqual([
        [p.keyHidden, [1, 1, 1, 1], 0],
        [p.keyOutput, [1, 1, 1, 1], 0],
        [p.source, [1], 0],
        [p.weight, [1, 1], 0],
        [p.on, [1, 1, 1], 0],
      ]);
      expect(ports.outputs.filter((o) => o.site === site.module).map((o) => o.name)).toEqual([
        p.hiddenOut,
        p.outputOut,
      ]);
    }
    const cross = s.cross[0];
    expect(tokenPropagation.apply(s.model, s.sites, { sites: [cross.module] })).toEqual({
      ok: false,
      reason: `${cross.module} is a cross-attention site; token-propagation replaces self-attention outputs only`,
    });
    expect(tokenPropagation.apply(s.model, s.sites, { sites: ['no.such.module'] })).toEqual({
      ok: false,
      reason: 'no.such.module is not an attention site of this graph',
    });
    expect(tokenPropagation.apply(model, s.sites, { sites: [s.self[1].module] })).toEqual({
      ok: false,
      reason: `${s.self[1].module}: the pass was already applied to this site`,
    });
  });

  it('neutral: the original output; hidden_out/output_out are the graph’s own X and O; self-propagation changes nothing', async () => {
    const { model, ports } = pass(s);
    const feeds = s.feeds(2);
    const g = new GraphIndex(s.model.graph!);
    const tensors = s.self.map((site) => siteTensors(ports, site));
    const exposed = tensors.flatMap(({ x, o }) => [x, o]);
    const originalModel = withOutputs(s.model, exposed, g.elemType(exposed[0]) ?? DT.FLOAT);
    // withOutputs declares one element type; X and O share it in every subject here.
    expect(new Set(exposed.map((t) => g.elemType(t))).size).toBe(1);
    const original = await run(s, originalModel, feeds, [s.out, ...exposed]);
    const neutral = await run(s, model, { ...feeds, ...neutralFeeds(ports.inputs) }, [s.out, ...ownOutputs(s)]);
    const dNeutral = diff(neutral[s.out], original[s.out]);
    let dPorts = 0;
    for (const [i, site] of s.self.entries()) {
      const p = tokenPropagationPorts(site.module);
      expect(neutral[p.hiddenOut].dims).toEqual(original[tensors[i].x].dims);
      expect(neutral[p.outputOut].dims).toEqual([
        2,
        (LH / site.resolution) * (LW / site.resolution),
        site.heads * site.headDim,
      ]);
      dPorts = Math.max(dPorts, diff(neutral[p.hiddenOut], original[tensors[i].x]));
      dPorts = Math.max(dPorts, diff(neutral[p.outputOut], original[tensors[i].o]));
    }
    const propagated = await run(s, model, { ...feeds, ...selfFeeds(s, ports, neutral, 2) }, [s.out]);
    const dSelf = diff(propagated[s.out], original[s.out]);
    console.log(`${name}: neutral ${dNeutral}, ports vs X/O ${dPorts}, self-propagation ${dSelf}`);
    expect(dNeutral).toBe(0);
    expect(dPorts).toBe(0);
    expect(dSelf).toBeLessThanOrEqual(1e-6);
  });

  it('item 1 propagated from items 0 and 2 (weights 0.3/0.7) equals the TypeScript nearest-neighbour reference', async () => {
    const site = s.self[0];
    const { model, ports } = pass(s, { sites: [site.module] });
    const p = tokenPropagationPorts(site.module);
    const feeds = s.feeds(3);
    const own = await run(s, model, { ...feeds, ...neutralFeeds(ports.inputs) }, [p.hiddenOut, p.outputOut]);
    const [x, o] = [own[p.hiddenOut], own[p.outputOut]];
    const [n, c] = x.dims.slice(1);
    const blended = `reshoot/token-propagation/${site.module}/blended`;
    const oType = floatType(o);
    const propagation = {
      // One row broadcast to every item: keyframes 0 and 2.
      [p.keyHidden]: stack(floatType(x), [item(x, 0), item(x, 2)], [1, 2, n, c]),
      [p.keyOutput]: stack(oType, [item(o, 0), item(o, 2)], [1, 2, n, o.dims[2]]),
      [p.source]: new ort.Tensor('int64', BigInt64Array.of(0n, 1n, 2n), [3]),
      [p.weight]: tensor(oType, Float32Array.of(0.3, 0.7), [1, 2]),
      [p.on]: tensor(oType, Float32Array.of(0, 1, 0), [3, 1, 1]),
    };
    const exposed = withOutputs(model, [blended], oType === 'float16' ? DT.FLOAT16 : DT.FLOAT);
    const r = await run(s, exposed, { ...feeds, ...propagation }, [blended, s.out]);
    const keys = [
      { hidden: item(x, 0), output: item(o, 0), weight: 0.3 },
      { hidden: item(x, 2), output: item(o, 2), weight: 0.7 },
    ];
    const { out: expected, margin } = reference(item(x, 1), keys, n, c);
    const dRef = maxDiff(item(r[blended], 1), expected);
    const [d0, d2] = [0, 2].map((i) => maxDiff(item(r[blended], i), item(o, i)));
    const dOwn = maxDiff(item(r[blended], 1), item(o, 1));
    console.log(
      `${name}: ${site.module} item 1 vs reference ${dRef} (smallest top-2 cosine margin ${margin.toExponential(2)}), ` +
        `items 0/2 vs own ${d0}/${d2}, item 1 vs own ${dOwn}`,
    );
    expect(margin).toBeGreaterThan(1e-5);
    expect(dRef).toBeLessThanOrEqual(1e-5);
    expect(d0).toBe(0);
    expect(d2).toBe(0);
    expect(dOwn).toBeGreaterThan(1e-3);
  });
});

describe('a float16 attention block (split heads) and what the pass refuses', () => {
  const [heads, headDim, tokens] = [2, 4, 16];

  it('float16 ports; neutral is the original bit for bit; self-propagation changes nothing', async () => {
    const s = fp16AttentionSubject(heads, headDim, tokens);
    const { model, ports } = pass(s);
    expect(ports.inputs.map((i) => i.type)).toEqual(['float16', 'float16', 'int64', 'float16', 'float16']);
    const feeds = s.feeds(2);
    const original = await run(s, s.model, feeds, [s.out]);
    const neutral = await run(s, model, { ...feeds, ...neutralFeeds(ports.inputs) }, [s.out, ...ownOutputs(s)]);
    const propagated = await run(s, model, { ...feeds, ...selfFeeds(s, ports, neutral, 2) }, [s.out]);
    const bits = (t: ort.Tensor) => Buffer.from((t.data as Uint16Array).buffer);
    expect(Buffer.compare(bits(neutral[s.out]), bits(original[s.out]))).toBe(0);
    expect(diff(propagated[s.out], original[s.out])).toBe(0);
  });

  it('refuses a site whose to_out cannot be found (names stripped, the output projection’s weight fed at run time)', () => {
    const model = fp16Attention(heads, headDim);
    for (const n of model.graph!.node!) n.name = '';
    const wo = model.graph!.initializer!.findIndex((t) => t.name === 'wo');
    model.graph!.initializer!.splice(wo, 1);
    model.graph!.input!.push(
      onnx.ValueInfoProto.create({ name: 'wo', type: { tensorType: { elemType: DT.FLOAT16 } } }),
    );
    const sites = findAttentionSites(model).sites;
    expect(sites.map((x) => x.kind)).toEqual(['self']);
    expect(tokenPropagation.apply(model, sites, {})).toEqual({
      ok: false,
      reason: `${sites[0].module}: no to_out MatMul (a MatMul by a constant weight) reads the merged heads after the value MatMul: O cannot be found`,
    });
  });

  it('with node names stripped but the projections intact, the pass still finds X and O (by structure, not by name)', async () => {
    const s = fp16AttentionSubject(heads, headDim, tokens);
    for (const n of s.model.graph!.node!) n.name = '';
    const sites = findAttentionSites(s.model).sites;
    const r = tokenPropagation.apply(s.model, sites, {});
    if (!r.ok) throw new Error(r.reason);
    const p = tokenPropagationPorts(sites[0].module);
    expect(r.ports.outputs.map((o) => [o.name, o.tensor])).toEqual([
      [p.hiddenOut, 'x'],
      [
        p.outputOut,
        fp16Attention(heads, headDim).graph!.node!.find((n) => n.opType === 'MatMul' && n.output![0] === 'y')!
          .input![0],
      ],
    ]);
  });
});
