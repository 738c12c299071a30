// Reading a model's graph without its weights (onnx/graph-file.ts) and the rewritten-graph cache (onnx/graph-cache.ts)
// on small graphs built here: large initializers become references to their own bytes in the file, everything else
// is what onnx-proto decodes from the file, ORT runs the result bit-identically, damaged files say where and what to
// do, and the cache hits, misses and survives what a cache folder can go through.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from '../../engine/src/models/ort';
import { onnx } from 'onnx-proto';
import { openSession } from '../../engine/src/models/providers';
import { codeHash, GRAPH_CACHE_ENTRIES, rewriteGraph, rewriterIdentity } from '../../engine/src/onnx/graph-cache';
import { encodeGraph, graphIdentity, readGraphFile, GraphFileError } from '../../engine/src/onnx/graph-file';
import { editableCopy, makeNode, valueInfo } from '../../engine/src/onnx/graph-edit';
import type { GraphPass } from '../../engine/src/onnx/pass';
import { varint } from '../support/graph-checks';

const DT = onnx.TensorProto.DataType;
const EXTERNAL = onnx.TensorProto.DataLocation.EXTERNAL;
const KIB = 1024;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'reshoot-graph-file-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

let dirCount = 0;
function freshDir(): string {
  const dir = path.join(tmp, `case-${dirCount++}`);
  fs.mkdirSync(dir);
  return dir;
}

const floats = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.013 + seed));
const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();
const vi = (name: string, elemType: number, dims: number[]) =>
  onnx.ValueInfoProto.create({
    name,
    type: { tensorType: { elemType, shape: { dim: dims.map((d) => ({ dimValue: d })) } } },
  });

/**
 * x [1, 64] → MatMul W1 [64, 1024] (256 KiB) → Add b1 (4 KiB) → MatMul Cast(W2 fp16 [1024, 40], 80 KiB) → y;
 * z = ReduceSum(edge, exactly 64 KiB) + ReduceSum(Cast(below, 64 KiB − 1 bytes of uint8)) + ReduceSum(big Constant)
 * + ReduceSum(W3, already external in weights.bin). Model-level oddities: model_version −1 (a 10-byte varint),
 * metadata, a doc string.
 */
function smallModel(dir: string): { file: string; model: onnx.ModelProto } {
  const w3 = floats(40 * 8, 3);
  fs.writeFileSync(path.join(dir, 'weights.bin'), Buffer.concat([Buffer.alloc(100), Buffer.from(bytesOf(w3))]));
  const half = new Uint16Array(1024 * 40).map((_, i) => 0x3000 + (i % 512));
  const below = Uint8Array.from({ length: 64 * KIB - 1 }, (_, i) => i % 251);
  const constant = onnx.TensorProto.create({ dims: [25600], dataType: DT.FLOAT, rawData: bytesOf(floats(25600, 9)) });
  const graph = onnx.GraphProto.create({
    name: 'small',
    docString: 'graph doc',
    input: [vi('x', DT.FLOAT, [1, 64])],
    output: [vi('y', DT.FLOAT, [1, 40]), vi('z', DT.FLOAT, [])],
    initializer: [
      { name: 'W1', dims: [64, 1024], dataType: DT.FLOAT, rawData: bytesOf(floats(64 * 1024, 1)) },
      { name: 'b1', dims: [1024], dataType: DT.FLOAT, rawData: bytesOf(floats(1024, 2)) },
      { name: 'W2', dims: [1024, 40], dataType: DT.FLOAT16, rawData: bytesOf(half) },
      { name: 'edge', dims: [16 * KIB], dataType: DT.FLOAT, rawData: bytesOf(floats(16 * KIB, 4)) },
      { name: 'below', dims: [below.length], dataType: DT.UINT8, rawData: below },
      { name: 'axes', dims: [1], dataType: DT.INT64, int64Data: [0] },
      {
        name: 'W3',
        dims: [40, 8],
        dataType: DT.FLOAT,
        dataLocation: EXTERNAL,
        externalData: [
          { key: 'location', value: 'weights.bin' },
          { key: 'offset', value: '100' },
          { key: 'length', value: String(w3.byteLength) },
        ],
      },
    ],
    node: [
      { opType: 'MatMul', input: ['x', 'W1'], output: ['h0'], name: 'mm1' },
      { opType: 'Add', input: ['h0', 'b1'], output: ['h1'], name: 'add1' },
      { opType: 'Cast', input: ['W2'], output: ['W2f'], name: 'cast', attribute: [intAttr('to', DT.FLOAT)] },
      { opType: 'MatMul', input: ['h1', 'W2f'], output: ['y'], name: 'mm2' },
      { opType: 'ReduceSum', input: ['edge'], output: ['s1'], name: 'r1', attribute: [intAttr('keepdims', 0)] },
      { opType: 'Cast', input: ['below'], output: ['belowf'], name: 'cast2', attribute: [intAttr('to', DT.FLOAT)] },
      { opType: 'ReduceSum', input: ['belowf'], output: ['s2'], name: 'r2', attribute: [intAttr('keepdims', 0)] },
      {
        opType: 'Constant',
        output: ['big'],
        name: 'const',
        attribute: [{ name: 'value', type: onnx.AttributeProto.AttributeType.TENSOR, t: constant }],
      },
      { opType: 'ReduceSum', input: ['big'], output: ['s3'], name: 'r3', attribute: [intAttr('keepdims', 0)] },
      { opType: 'ReduceSum', input: ['W3'], output: ['s4'], name: 'r4', attribute: [intAttr('keepdims', 0)] },
      { opType: 'Sum', input: ['s1', 's2', 's3', 's4'], output: ['z'], name: 'sum' },
    ],
  });
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'graph-file test',
    modelVersion: -1,
    docString: 'model doc',
    opsetImport: [{ domain: '', version: 17 }],
    metadataProps: [{ key: 'k', value: 'v' }],
    graph,
  });
  const file = path.join(dir, 'model.onnx');
  fs.writeFileSync(file, encodeGraph(model));
  return { file, model: onnx.ModelProto.decode(fs.readFileSync(file)) };
}

function intAttr(name: string, i: number): onnx.IAttributeProto {
  return { name, type: onnx.AttributeProto.AttributeType.INT, i };
}

function ext(t: onnx.ITensorProto): Record<string, string> {
  return Object.fromEntries((t.externalData ?? []).map((e): [string, string] => [e.key ?? '', e.value ?? '']));
}

const encodeTensor = (t: onnx.ITensorProto) => Buffer.from(onnx.TensorProto.encode(t).finish());

/** The model with its initializers removed, encoded: everything that must come through byte for byte. */
function withoutInitializers(m: onnx.IModelProto): Buffer {
  const copy = onnx.ModelProto.decode(encodeGraph(m));
  copy.graph!.initializer = [];
  return Buffer.from(encodeGraph(copy));
}

/** Checks `read` against the file's own decode: large raw_data by reference to the same bytes, the rest equal. */
function expectFaithful(file: string, read: onnx.ModelProto, inlineBelow: number): number {
  const original = onnx.ModelProto.decode(fs.readFileSync(file));
  const bytes = fs.readFileSync(file);
  expect(withoutInitializers(read).equals(withoutInitializers(original))).toBe(true);
  const got = read.graph!.initializer!;
  const want = original.graph!.initializer!;
  expect(got.map((t) => t.name)).toEqual(want.map((t) => t.name));
  let referenced = 0;
  want.forEach((o, i) => {
    const t = got[i];
    if (!(o.rawData?.byteLength && o.rawData.byteLength >= inlineBelow)) {
      expect(encodeTensor(t).equals(encodeTensor(o))).toBe(true);
      return;
    }
    referenced++;
    expect(t.rawData?.byteLength ?? 0).toBe(0);
    expect(t.dataLocation).toBe(EXTERNAL);
    const e = ext(t);
    expect(Object.keys(e).sort()).toEqual(['length', 'location', 'offset']);
    expect(e.location).toBe(path.basename(file));
    expect(Number(e.length)).toBe(o.rawData.byteLength);
    const at = Number(e.offset);
    expect(Buffer.from(bytes.subarray(at, at + Number(e.length))).equals(Buffer.from(o.rawData))).toBe(true);
    // Everything else about the tensor is unchanged.
    const rest = (x: onnx.ITensorProto) =>
      encodeTensor({ ...x, rawData: undefined, dataLocation: 0, externalData: [] });
    expect(rest(t).equals(rest(o))).toBe(true);
  });
  return referenced;
}

async function runAll(source: string | { bytes: Uint8Array; dir: string; file: string }) {
  const { session } = await openSession(source, { threads: 1 });
  try {
    const x = new ort.Tensor('float32', floats(64, 5), [1, 64]);
    const out = await session.run({ x });
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, Buffer.from(bytesOf(v.data as Float32Array))]));
  } finally {
    await session.release();
  }
}

function damagedMessage(file: string): string {
  try {
    readGraphFile(file);
  } catch (err) {
    expect(err).toBeInstanceOf(GraphFileError);
    return (err as Error).message;
  }
  throw new Error('readGraphFile accepted a damaged file');
}

describe('readGraphFile', () => {
  it('leaves raw_data of 64 KiB and more in the file and copies the rest byte for byte', () => {
    const { file } = smallModel(freshDir());
    const g = readGraphFile(file);
    expect(g.file).toBe(file);
    expect(g.dir).toBe(path.dirname(file));
    // W1, W2 and edge (exactly 64 KiB); not b1, below (one byte short), axes, the external W3 or the Constant.
    expect(expectFaithful(file, g.model, 64 * KIB)).toBe(3);
    expect(g.referenced).toBe(3);
    const byName = new Map(g.model.graph!.initializer!.map((t) => [t.name, t]));
    expect(ext(byName.get('W3')!)).toEqual({ location: 'weights.bin', offset: '100', length: String(40 * 8 * 4) });
    const constant = g.model.graph!.node!.find((n) => n.opType === 'Constant')!.attribute![0].t!;
    expect(constant.rawData!.byteLength).toBe(25600 * 4);
    expect(String(g.model.modelVersion)).toBe('-1');
  });

  it('honours inlineBelow: everything inline reproduces the file, a low bound references every raw tensor', () => {
    const { file } = smallModel(freshDir());
    const inline = readGraphFile(file, { inlineBelow: Infinity });
    expect(inline.referenced).toBe(0);
    expect(Buffer.from(encodeGraph(inline.model)).equals(fs.readFileSync(file))).toBe(true);
    const all = readGraphFile(file, { inlineBelow: 1 });
    // Every initializer with raw_data: W1, b1, W2, edge, below (axes uses int64_data, W3 is already external).
    expect(all.referenced).toBe(5);
    expect(expectFaithful(file, all.model, 1)).toBe(5);
  });

  it('gives a graph that ORT runs bit-identically to the file, reading the weights from the file itself', async () => {
    const { file } = smallModel(freshDir());
    const want = await runAll(file);
    for (const inlineBelow of [undefined, 1]) {
      const g = readGraphFile(file, { inlineBelow });
      const got = await runAll({ bytes: encodeGraph(g.model), dir: g.dir, file });
      expect(Object.keys(got).sort()).toEqual(['y', 'z']);
      for (const k of Object.keys(want)) expect(got[k].equals(want[k])).toBe(true);
    }
  });

  it('merges a graph field that occurs twice, as protobuf (and ORT) read it', async () => {
    const dir = freshDir();
    const { file, model } = smallModel(dir);
    // The same model written as two graph fields: nodes and outputs in one, initializers and inputs in the other.
    const a = onnx.ModelProto.decode(encodeGraph(model));
    const b = onnx.GraphProto.decode(onnx.GraphProto.encode(a.graph!).finish());
    a.graph!.initializer = [];
    a.graph!.input = [];
    b.node = [];
    b.output = [];
    b.name = '';
    b.docString = '';
    const second = onnx.ModelProto.encode({ graph: b }).finish();
    const split = path.join(dir, 'split.onnx');
    fs.writeFileSync(split, Buffer.concat([encodeGraph(a), second]));
    const g = readGraphFile(split);
    expect(g.model.graph!.node!.length).toBe(model.graph!.node!.length);
    expect(g.model.graph!.initializer!.map((t) => t.name)).toEqual(model.graph!.initializer!.map((t) => t.name));
    expect(g.referenced).toBe(3);
    const got = await runAll({ bytes: encodeGraph(g.model), dir, file: split });
    const want = await runAll(file);
    for (const k of Object.keys(want)) expect(got[k].equals(want[k])).toBe(true);
  });

  it('reads through many window refills: 9 MiB of small tensors between large ones', () => {
    const dir = freshDir();
    const initializer: onnx.ITensorProto[] = [];
    for (let i = 0; i < 300; i++) {
      initializer.push({ name: `small${i}`, dims: [7000], dataType: DT.FLOAT, rawData: bytesOf(floats(7000, i)) });
      if (i % 6 === 0) {
        const n = 20000 + i;
        initializer.push({ name: `big${i}`, dims: [n], dataType: DT.FLOAT, rawData: bytesOf(floats(n, -i)) });
      }
    }
    const file = path.join(dir, 'model.onnx');
    fs.writeFileSync(
      file,
      encodeGraph({ irVersion: 8, opsetImport: [{ version: 17 }], graph: { name: 'g', initializer } }),
    );
    const g = readGraphFile(file);
    expect(g.referenced).toBe(50);
    expect(expectFaithful(file, g.model, 64 * KIB)).toBe(50);
  });

  describe('varints', () => {
    const tag = (field: number, wire: number) => varint(field * 8 + wire);
    const len = (field: number, payload: Uint8Array) => Buffer.concat([tag(field, 2), varint(payload.length), payload]);

    /** A big tensor whose fields are interleaved with unknown fields of every wire type and extreme values. */
    function oddModel(dir: string): { file: string; raw: Buffer; rawAt: number } {
      const raw = Buffer.from(bytesOf(floats(20000, 7)));
      const max64 = Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
      const unknown = Buffer.concat([
        tag(536870911, 0), // the largest field number, with the largest 64-bit value (10 bytes)
        max64,
        tag(1000, 1),
        Buffer.alloc(8, 0xff),
        tag(1001, 5),
        Buffer.alloc(4, 0xff),
        len(1002, Buffer.from('unknown')),
      ]);
      const head = Buffer.concat([
        unknown,
        tag(1, 0),
        varint(20000), // dims
        tag(2, 0),
        varint(DT.FLOAT),
        len(8, Buffer.from('W')),
        // A non-canonical 10-byte varint for data_location 0 (DEFAULT): protobuf accepts padding.
        tag(14, 0),
        Buffer.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),
      ]);
      const rawHeader = Buffer.concat([tag(9, 2), varint(raw.length)]);
      const tensor = Buffer.concat([head, rawHeader, raw, unknown]);
      const graph = Buffer.concat([unknown, len(2, Buffer.from('g')), tag(5, 2), varint(tensor.length)]);
      const graphTail = Buffer.concat([tensor, unknown]);
      const model = Buffer.concat([tag(1, 0), varint(8), unknown, tag(7, 2), varint(graph.length + graphTail.length)]);
      const file = path.join(dir, 'odd.onnx');
      fs.writeFileSync(file, Buffer.concat([model, graph, graphTail]));
      const rawAt = model.length + graph.length + head.length + rawHeader.length;
      return { file, raw, rawAt };
    }

    it('skips 10-byte varints, the largest field number and every wire type, and keeps offsets exact', () => {
      const { file, raw, rawAt } = oddModel(freshDir());
      const g = readGraphFile(file);
      const t = g.model.graph!.initializer![0];
      expect(t.name).toBe('W');
      expect(t.dataLocation).toBe(EXTERNAL);
      expect(ext(t)).toEqual({ location: 'odd.onnx', offset: String(rawAt), length: String(raw.length) });
      expect(
        fs
          .readFileSync(file)
          .subarray(rawAt, rawAt + raw.length)
          .equals(raw),
      ).toBe(true);
    });

    it('refuses an 11-byte varint', () => {
      const file = path.join(freshDir(), 'model.onnx');
      fs.writeFileSync(file, Buffer.concat([tag(99, 0), Buffer.alloc(10, 0xff), Buffer.from([0x01])]));
      expect(damagedMessage(file)).toMatch(/at byte 2: a varint in the model is longer than 10 bytes/);
    });

    it('refuses field number 0 and tags beyond 32 bits', () => {
      const dir = freshDir();
      const zero = path.join(dir, 'zero.onnx');
      fs.writeFileSync(zero, Buffer.from([0x00, 0x01]));
      expect(damagedMessage(zero)).toMatch(/at byte 0: invalid field number 0/);
      const huge = path.join(dir, 'huge.onnx');
      fs.writeFileSync(huge, Buffer.concat([varint(2 ** 35), Buffer.from([0x01])]));
      expect(damagedMessage(huge)).toMatch(/invalid field number/);
    });
  });

  describe('damaged files', () => {
    it('names the file and offset when the file is cut short, wherever the cut falls', () => {
      const dir = freshDir();
      const { file } = smallModel(dir);
      const bytes = fs.readFileSync(file);
      for (const cut of [1, 3, 40, 1000, bytes.length >> 1, bytes.length - 1]) {
        const cutFile = path.join(dir, `cut-${cut}.onnx`);
        fs.writeFileSync(cutFile, bytes.subarray(0, cut));
        const message = damagedMessage(cutFile);
        expect(message).toContain(cutFile);
        expect(message).toMatch(/damaged ONNX file at byte \d+: .*(truncated|ends)/);
        expect(message).toMatch(/re-export the model or download it again$/);
      }
    });

    it('rejects protobuf groups and unknown wire types', () => {
      const dir = freshDir();
      const group = path.join(dir, 'group.onnx');
      fs.writeFileSync(group, Buffer.from([(4 << 3) | 3, 0x00]));
      expect(damagedMessage(group)).toMatch(/field 4 of the model is a protobuf group, which no ONNX message uses/);
      const wire7 = path.join(dir, 'wire7.onnx');
      fs.writeFileSync(wire7, Buffer.from([(4 << 3) | 7, 0x00]));
      expect(damagedMessage(wire7)).toMatch(/unknown wire type 7/);
    });

    it('catches a tensor longer than the graph holding it', () => {
      const file = path.join(freshDir(), 'model.onnx');
      // graph (field 7) of 4 bytes holding an initializer (field 5) that claims 100.
      fs.writeFileSync(file, Buffer.from([0x3a, 0x04, 0x2a, 0x64, 0x00, 0x00, ...new Array<number>(200).fill(0)]));
      expect(damagedMessage(file)).toMatch(/at byte 2: field 5 of the graph runs past the end of the graph/);
    });

    it('points at the file offset of damage inside a node, which the walk copies without looking', () => {
      const file = path.join(freshDir(), 'model.onnx');
      // graph { node { field 15 with wire type 6 } }: the bad tag is byte 4 of the file.
      fs.writeFileSync(file, Buffer.from([0x3a, 0x04, 0x0a, 0x02, (15 << 3) | 6, 0x00]));
      const message = damagedMessage(file);
      expect(message).toMatch(/model\.onnx: damaged ONNX file at byte [45]: /);
      expect(message).toMatch(/a node or declaration inside the graph does not decode \(invalid wire type 6\)/);
    });

    it('says what to pass when the file holds no graph', () => {
      const dir = freshDir();
      const empty = path.join(dir, 'empty.onnx');
      fs.writeFileSync(empty, '');
      expect(() => readGraphFile(empty)).toThrow(/no graph in this file; pass an ONNX model/);
      const text = path.join(dir, 'text.onnx');
      fs.writeFileSync(text, 'not a model at all\n');
      expect(() => readGraphFile(text)).toThrow(GraphFileError);
    });

    it('reports a missing file or a folder as such', () => {
      expect(() => readGraphFile(path.join(tmp, 'nowhere', 'model.onnx'))).toThrow(/ENOENT/);
      expect(() => readGraphFile(tmp)).toThrow(/: not a file; pass the model's \.onnx file/);
    });
  });
});

describe('graphIdentity', () => {
  it('follows the content, the mtime and the external files the graph references', () => {
    const dir = freshDir();
    const { file } = smallModel(dir);
    // Whole seconds: a Date restores them exactly (the file system's sub-millisecond part it would not).
    const t0 = new Date('2024-01-01T00:00:00Z');
    fs.utimesSync(file, t0, t0);
    const id = graphIdentity(file);
    expect(graphIdentity(file)).toBe(id);
    expect(readGraphFile(file).identity).toBe(graphIdentity(file, ['weights.bin']));
    const withWeights = graphIdentity(file, ['weights.bin']);
    expect(withWeights).not.toBe(id);

    fs.utimesSync(file, t0, new Date(t0.getTime() + 5000));
    expect(graphIdentity(file)).not.toBe(id);
    fs.utimesSync(file, t0, t0);
    expect(graphIdentity(file)).toBe(id);

    // Same size, same mtime, one byte changed in the head: the hash notices.
    const bytes = fs.readFileSync(file);
    bytes[5] ^= 1;
    fs.writeFileSync(file, bytes);
    fs.utimesSync(file, t0, t0);
    expect(graphIdentity(file)).not.toBe(id);

    const weights = path.join(dir, 'weights.bin');
    const w = fs.readFileSync(weights);
    w[0] ^= 1;
    fs.writeFileSync(weights, w);
    expect(graphIdentity(file, ['weights.bin'])).not.toBe(withWeights);
  });
});

/** Adds `y` again as a second output under another name: the smallest pass with a port. */
const echo: GraphPass<{ suffix?: string }> = {
  name: 'echo',
  apply(model, _sites, options) {
    const { model: out, graph } = editableCopy(model);
    const name = `reshoot/echo/y${options.suffix ?? ''}`;
    graph.node.push(makeNode('Identity', ['y'], name));
    graph.output.push(valueInfo(name, DT.FLOAT));
    return { ok: true, model: out, ports: { inputs: [], outputs: [{ name, type: 'float32', role: 'y again' }] } };
  },
};
const refuse: GraphPass = { name: 'refuse', apply: () => ({ ok: false, reason: 'not this graph' }) };

describe('rewriteGraph', () => {
  const cacheFiles = (dir: string) => fs.readdirSync(dir).filter((f) => /^[0-9a-f]{64}\.(onnx|json)$/.test(f));

  it('applies passes in order, caches the result and hits without reading the source graph', async () => {
    const dir = freshDir();
    const cacheDir = path.join(dir, 'cache');
    const { file } = smallModel(dir);
    const passes = [{ pass: echo }, { pass: echo, options: { suffix: '2' } }];
    const first = await rewriteGraph(file, passes, { cacheDir });
    if (!first.ok) throw new Error(first.reason);
    expect(first.cached).toBe(false);
    expect(first.dir).toBe(dir);
    expect(first.ports.outputs.map((o) => o.name)).toEqual(['reshoot/echo/y', 'reshoot/echo/y2']);
    expect(first.sites.pattern).toBe('none');
    expect(cacheFiles(cacheDir)).toHaveLength(2);
    if (process.platform !== 'win32') {
      // Private like the rest of the data folder it lives in.
      expect(fs.statSync(cacheDir).mode & 0o777).toBe(0o700);
      for (const f of fs.readdirSync(cacheDir))
        expect([f, fs.statSync(path.join(cacheDir, f)).mode & 0o777]).toEqual([f, 0o600]);
    }

    const second = await rewriteGraph(file, passes, { cacheDir });
    if (!second.ok) throw new Error(second.reason);
    expect(second.cached).toBe(true);
    expect(Buffer.from(second.bytes).equals(Buffer.from(first.bytes))).toBe(true);
    expect(second.ports).toEqual(first.ports);
    expect(second.sites).toEqual(first.sites);

    const out = await runAll({ bytes: second.bytes, dir, file });
    const want = await runAll(file);
    expect(out.y.equals(want.y)).toBe(true);
    expect(out['reshoot/echo/y2'].equals(want.y)).toBe(true);
  });

  it('with no passes gives the externalised graph alone', async () => {
    const { file } = smallModel(freshDir());
    const r = await rewriteGraph(file, [], { cacheDir: null });
    if (!r.ok) throw new Error(r.reason);
    expect(r.cached).toBe(false);
    expect(r.ports).toEqual({ inputs: [], outputs: [] });
    expect(Buffer.from(r.bytes).equals(Buffer.from(encodeGraph(readGraphFile(file).model)))).toBe(true);
  });

  it('names the pass that refused', async () => {
    const dir = freshDir();
    const { file } = smallModel(dir);
    const cacheDir = path.join(dir, 'cache');
    expect(await rewriteGraph(file, [{ pass: echo }, { pass: refuse }], { cacheDir })).toEqual({
      ok: false,
      reason: 'not this graph',
      pass: 'refuse',
    });
    expect(fs.existsSync(cacheDir) ? cacheFiles(cacheDir) : []).toHaveLength(0);
  });

  it('misses when the source, an external file, the passes, their options or the site options change', async () => {
    const dir = freshDir();
    const cacheDir = path.join(dir, 'cache');
    const { file } = smallModel(dir);
    const cached = async (passes: Parameters<typeof rewriteGraph>[1], opts = {}) => {
      const r = await rewriteGraph(file, passes, { cacheDir, ...opts });
      if (!r.ok) throw new Error(r.reason);
      return r.cached;
    };
    expect(await cached([{ pass: echo, options: { suffix: 'a' } }])).toBe(false);
    expect(await cached([{ pass: echo, options: { suffix: 'a' } }])).toBe(true);
    expect(await cached([{ pass: echo, options: { suffix: 'b' } }])).toBe(false);
    expect(await cached([{ pass: echo, options: { suffix: 'a' } }], { textLength: 64 })).toBe(false);
    expect(await cached([{ pass: echo, options: { suffix: 'a' } }], { latent: { height: 8, width: 8 } })).toBe(false);
    expect(await cached([])).toBe(false);

    const stat = fs.statSync(file);
    fs.utimesSync(file, stat.atime, new Date(stat.mtimeMs + 5000));
    expect(await cached([{ pass: echo, options: { suffix: 'a' } }])).toBe(false);
    expect(await cached([{ pass: echo, options: { suffix: 'a' } }])).toBe(true);

    const weights = path.join(dir, 'weights.bin');
    fs.appendFileSync(weights, Buffer.alloc(4));
    expect(await cached([{ pass: echo, options: { suffix: 'a' } }])).toBe(false);
    expect(await cached([{ pass: echo, options: { suffix: 'a' } }])).toBe(true);
  });

  it('misses when the rewriting code or the engine version differs from the one that wrote the entry', async () => {
    // The identity hashes the real passes' modules: a change to any of them (a fixed pass, an upgrade) makes every
    // rewritten graph stale.
    const onnxDir = path.join(__dirname, '..', '..', 'engine', 'src', 'onnx');
    expect(rewriterIdentity()).toMatch(new RegExp(`:${codeHash([onnxDir, path.join(onnxDir, 'passes')])}$`));
    const code = path.join(freshDir(), 'code');
    fs.mkdirSync(code);
    fs.writeFileSync(path.join(code, 'pass.js'), 'one');
    fs.writeFileSync(path.join(code, 'pass.d.ts'), 'types');
    const before = codeHash([code]);
    fs.writeFileSync(path.join(code, 'pass.d.ts'), 'other types');
    expect(codeHash([code])).toBe(before);
    fs.writeFileSync(path.join(code, 'pass.js'), 'two');
    expect(codeHash([code])).not.toBe(before);
    expect(codeHash([path.join(code, 'missing')])).toBe(codeHash([]));

    // An entry written by this engine is not taken by one of another version (a fresh module registry).
    const dir = freshDir();
    const cacheDir = path.join(dir, 'cache');
    const { file } = smallModel(dir);
    const first = await rewriteGraph(file, [{ pass: echo }], { cacheDir });
    expect(first).toMatchObject({ ok: true, cached: false });
    expect(await rewriteGraph(file, [{ pass: echo }], { cacheDir })).toMatchObject({ ok: true, cached: true });
    let other: typeof rewriteGraph | undefined;
    await jest.isolateModulesAsync(async () => {
      jest.doMock('../../engine/src/version', () => ({ VERSION: '99.0.0' }));
      ({ rewriteGraph: other } = await import('../../engine/src/onnx/graph-cache'));
    });
    expect(await other!(file, [{ pass: echo }], { cacheDir })).toMatchObject({ ok: true, cached: false });
    jest.dontMock('../../engine/src/version');
  });

  it('keeps port values JSON cannot write (±Infinity, NaN, −0) through the cache', async () => {
    const dir = freshDir();
    const { file } = smallModel(dir);
    const cacheDir = path.join(dir, 'cache');
    const values = [-Infinity, Infinity, NaN, -0];
    const pass: GraphPass = {
      name: 'odd-ports',
      apply(model) {
        const inputs = values.map((neutralValue, i) => ({
          name: `reshoot/odd/${i}`,
          type: 'float32' as const,
          neutralShape: [1],
          neutralValue,
          role: 'unused',
        }));
        return { ok: true, model, ports: { inputs, outputs: [] } };
      },
    };
    for (const cached of [false, true]) {
      const r = await rewriteGraph(file, [{ pass }], { cacheDir });
      if (!r.ok) throw new Error(r.reason);
      expect(r.cached).toBe(cached);
      r.ports.inputs.forEach((p, i) => expect(Object.is(p.neutralValue, values[i])).toBe(true));
    }
  });

  it('keys options by value, not by the order their keys were written in', async () => {
    const dir = freshDir();
    const { file } = smallModel(dir);
    const cacheDir = path.join(dir, 'cache');
    const pass: GraphPass<{ a: number; b: number }> = {
      ...echo,
      name: 'echo-ab',
      apply: (m, s) => echo.apply(m, s, {}),
    };
    expect(await rewriteGraph(file, [{ pass, options: { a: 1, b: 2 } }], { cacheDir })).toMatchObject({
      cached: false,
    });
    expect(await rewriteGraph(file, [{ pass, options: { b: 2, a: 1 } }], { cacheDir })).toMatchObject({ cached: true });
  });

  it('rewrites an entry that is damaged or does not match, and keeps serving', async () => {
    const dir = freshDir();
    const cacheDir = path.join(dir, 'cache');
    const { file } = smallModel(dir);
    const passes = [{ pass: echo }];
    const first = await rewriteGraph(file, passes, { cacheDir });
    if (!first.ok) throw new Error(first.reason);
    const [json] = cacheFiles(cacheDir).filter((f) => f.endsWith('.json'));
    const graph = path.join(cacheDir, json.replace(/json$/, 'onnx'));
    const damage: (() => void)[] = [
      () => fs.writeFileSync(path.join(cacheDir, json), '{ not json'),
      () => fs.writeFileSync(graph, Buffer.from(first.bytes).subarray(0, 100)),
      () => fs.rmSync(graph),
      () => fs.writeFileSync(path.join(cacheDir, json), JSON.stringify({ format: 0 })),
    ];
    for (const spoil of damage) {
      spoil();
      const again = await rewriteGraph(file, passes, { cacheDir });
      if (!again.ok) throw new Error(again.reason);
      expect(again.cached).toBe(false);
      expect(Buffer.from(again.bytes).equals(Buffer.from(first.bytes))).toBe(true);
      expect(await rewriteGraph(file, passes, { cacheDir })).toMatchObject({ ok: true, cached: true });
    }
  });

  it('runs uncached when the cache folder cannot be created', async () => {
    const dir = freshDir();
    const { file } = smallModel(dir);
    const blocker = path.join(dir, 'a-file');
    fs.writeFileSync(blocker, 'in the way');
    for (let i = 0; i < 2; i++) {
      expect(await rewriteGraph(file, [{ pass: echo }], { cacheDir: path.join(blocker, 'cache') })).toMatchObject({
        ok: true,
        cached: false,
      });
    }
  });

  it(`keeps the ${GRAPH_CACHE_ENTRIES} most recently used entries and touches no other file`, async () => {
    const dir = freshDir();
    const cacheDir = path.join(dir, 'cache');
    fs.mkdirSync(cacheDir);
    const old = new Date(Date.now() - 3600_000 * 24);
    const oldKeys: string[] = [];
    for (let i = 0; i < GRAPH_CACHE_ENTRIES + 8; i++) {
      const key = i.toString(16).padStart(64, '0');
      oldKeys.push(key);
      for (const e of ['onnx', 'json']) {
        fs.writeFileSync(path.join(cacheDir, `${key}.${e}`), 'x');
        fs.utimesSync(path.join(cacheDir, `${key}.${e}`), old, new Date(old.getTime() + i * 1000));
      }
    }
    const foreign = ['notes.txt', `${'f'.repeat(63)}.onnx`, `${'a'.repeat(64)}.onnx.bak`];
    for (const f of foreign) fs.writeFileSync(path.join(cacheDir, f), 'keep me');
    const staleTemp = `${'b'.repeat(64)}.onnx.123.abcd.tmp`;
    fs.writeFileSync(path.join(cacheDir, staleTemp), 'crashed write');
    fs.utimesSync(path.join(cacheDir, staleTemp), old, old);

    const { file } = smallModel(dir);
    expect(await rewriteGraph(file, [{ pass: echo }], { cacheDir })).toMatchObject({ ok: true, cached: false });
    const left = cacheFiles(cacheDir);
    expect(left).toHaveLength(2 * GRAPH_CACHE_ENTRIES);
    // The new entry and the newest 31 old ones survive.
    const keysLeft = new Set(left.map((f) => f.slice(0, 64)));
    expect(oldKeys.filter((k) => keysLeft.has(k))).toEqual(oldKeys.slice(-(GRAPH_CACHE_ENTRIES - 1)));
    for (const f of foreign) expect(fs.existsSync(path.join(cacheDir, f))).toBe(true);
    expect(fs.existsSync(path.join(cacheDir, staleTemp))).toBe(false);
    expect(await rewriteGraph(file, [{ pass: echo }], { cacheDir })).toMatchObject({ ok: true, cached: true });
  });

  it('rejects for a damaged source, naming it', async () => {
    const dir = freshDir();
    const file = path.join(dir, 'model.onnx');
    fs.writeFileSync(file, Buffer.from([0x3a, 0x64]));
    await expect(rewriteGraph(file, [], { cacheDir: path.join(dir, 'cache') })).rejects.toThrow(
      /model\.onnx: damaged ONNX file/,
    );
  });
});
