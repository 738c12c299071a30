// A UNet above the old 256 MiB in-memory rewrite limit, weights inside model.onnx as a single-file fp16 SD 1.5
// export ships them: its graph is read without its weights (JS memory grows by far less than the file), rewritten
// with the feature tap, and the session opened from the rewritten bytes reads the weights from model.onnx itself
// and computes bit-for-bit what the file does. Also both real-exporter fixture UNets through rewriteGraph.
//
// The large UNet is the sd15-tiny fixture with conv_out's weight moved to the end of a ~260 MiB initializer and cut
// back out by Slice → Reshape: every byte of that initializer is loaded, and a wrong offset or length would change
// conv_out's weight and so out_sample.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import * as ort from '../../engine/src/models/ort';
import { onnx } from 'onnx-proto';
import { openSession } from '../../engine/src/models/providers';
import { rewriteGraph, type PassRequest } from '../../engine/src/onnx/graph-cache';
import { readGraphFile } from '../../engine/src/onnx/graph-file';
import { FEATURE_TAP_OUTPUT, featureTap } from '../../engine/src/onnx/passes/feature-tap';
import { varint, wave } from '../support/graph-checks';

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'real-export');
const MIB = 1024 * 1024;
const PAD_BYTES = 260 * MIB;
const [LH, LW] = [16, 12];
const PAD = 'reshoot_test/pad';
const verbose = !!process.env.RESHOOT_TEST_VERBOSE;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'reshoot-large-unet-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function unetFeeds(fixture: 'sd15-tiny' | 'sd2v-tiny'): Record<string, ort.Tensor> {
  const timestep =
    fixture === 'sd15-tiny'
      ? new ort.Tensor('int64', BigInt64Array.of(500n), [1])
      : new ort.Tensor('float32', Float32Array.of(500), []);
  return { sample: wave([1, 4, LH, LW], 0.1), timestep, encoder_hidden_states: wave([1, 77, 32], 1) };
}

type Source = string | { bytes: Uint8Array; dir: string; file: string };

async function runUnet(source: Source, feeds: Record<string, ort.Tensor>, fetch: string[]) {
  const { session } = await openSession(source, {});
  try {
    const out = await session.run(feeds, fetch);
    return Object.fromEntries(
      fetch.map((name) => {
        const t = out[name];
        return [name, { dims: [...t.dims], bytes: Buffer.from((t.data as Float32Array).buffer.slice(0)) }];
      }),
    );
  } finally {
    await session.release();
  }
}

/** V8's collector, reached without --expose-gc (Jest's workers run without it). */
function exposeGc(): () => void {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

/**
 * Writes the large UNet without ever holding its weights: the graph's small part is encoded, the big initializer's
 * protobuf headers computed from the lengths, and its payload streamed in 8 MiB chunks.
 */
function writeLargeUnet(file: string): { rawAt: number; rawLength: number } {
  const model = onnx.ModelProto.decode(fs.readFileSync(path.join(FIXTURES, 'sd15-tiny', 'unet', 'model.onnx')));
  const graph = model.graph!;
  const conv = graph.node!.find((n) => n.output!.includes(graph.output![0].name!))!;
  const weightName = conv.input![1];
  const weight = graph.initializer!.find((t) => t.name === weightName)!;
  graph.initializer = graph.initializer!.filter((t) => t !== weight);
  const weightBytes = Buffer.from(weight.rawData!);
  const fillerFloats = PAD_BYTES / 4;
  const total = fillerFloats + weightBytes.length / 4;
  const ints = (name: string, values: number[]) =>
    onnx.TensorProto.create({
      name,
      dims: [values.length],
      dataType: onnx.TensorProto.DataType.INT64,
      int64Data: values,
    });
  graph.initializer.push(
    ints('reshoot_test/starts', [fillerFloats]),
    ints('reshoot_test/ends', [total]),
    ints('reshoot_test/axes', [0]),
    ints('reshoot_test/shape', weight.dims!.map(Number)),
  );
  graph.node!.unshift(
    {
      name: 'reshoot_test/slice',
      opType: 'Slice',
      input: [PAD, 'reshoot_test/starts', 'reshoot_test/ends', 'reshoot_test/axes'],
      output: ['reshoot_test/sliced'],
    },
    {
      name: 'reshoot_test/reshape',
      opType: 'Reshape',
      input: ['reshoot_test/sliced', 'reshoot_test/shape'],
      output: [weightName],
    },
  );
  const graphBytes = Buffer.from(onnx.GraphProto.encode(graph).finish());
  model.graph = null;
  const modelRest = Buffer.from(onnx.ModelProto.encode(model).finish());
  const padHead = Buffer.from(
    onnx.TensorProto.encode({ name: PAD, dims: [total], dataType: onnx.TensorProto.DataType.FLOAT }).finish(),
  );
  const rawLength = total * 4;
  const tensorLength = padHead.length + 1 + varint(rawLength).length + rawLength;
  const graphLength = graphBytes.length + 1 + varint(tensorLength).length + tensorLength;
  const head = Buffer.concat([
    modelRest,
    Buffer.from([(7 << 3) | 2]),
    varint(graphLength),
    graphBytes,
    Buffer.from([(5 << 3) | 2]),
    varint(tensorLength),
    padHead,
    Buffer.from([(9 << 3) | 2]),
    varint(rawLength),
  ]);
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, head);
    const chunk = Buffer.from(new Float32Array(2 * MIB).fill(0.25).buffer);
    for (let left = PAD_BYTES; left > 0; left -= chunk.length) fs.writeSync(fd, chunk, 0, Math.min(chunk.length, left));
    fs.writeSync(fd, weightBytes);
  } finally {
    fs.closeSync(fd);
  }
  return { rawAt: head.length, rawLength };
}

describe('a single-file UNet above 256 MiB', () => {
  const dir = path.join(tmp, 'unet');
  const file = path.join(dir, 'model.onnx');
  let written: { rawAt: number; rawLength: number };
  const feeds = unetFeeds('sd15-tiny');

  beforeAll(() => {
    fs.mkdirSync(dir);
    written = writeLargeUnet(file);
  });

  it('reads the graph while JS memory grows by far less than the file', () => {
    const size = fs.statSync(file).size;
    expect(size).toBeGreaterThan(256 * MIB);
    // Collected before each reading, so garbage from writing the file neither hides nor inflates the growth.
    const gc = exposeGc();
    const used = () => {
      gc();
      const m = process.memoryUsage();
      return m.arrayBuffers + m.heapUsed;
    };
    const peak = () => process.resourceUsage().maxRSS * 1024;
    const [before, peakBefore] = [used(), peak()];
    const g = readGraphFile(file);
    // Held (g is used below) while measuring: this is what the decoded graph costs, not what it costs once dropped.
    const [growth, peakGrowth] = [used() - before, peak() - peakBefore];
    if (verbose) {
      const mib = (n: number) => `${(n / MIB).toFixed(1)} MiB`;
      console.log(`file ${mib(size)}: JS heap + ArrayBuffers +${mib(growth)}, peak RSS +${mib(peakGrowth)}`);
    }
    expect(growth).toBeLessThan(64 * MIB);
    // Peak resident memory would jump by the file's size if it were read whole, even if freed straight after.
    expect(peakGrowth).toBeLessThan(64 * MIB);
    const pad = g.model.graph!.initializer!.find((t) => t.name === PAD)!;
    expect(pad.dataLocation).toBe(onnx.TensorProto.DataLocation.EXTERNAL);
    expect(Object.fromEntries(pad.externalData!.map((e) => [e.key, e.value]))).toEqual({
      location: 'model.onnx',
      offset: String(written.rawAt),
      length: String(written.rawLength),
    });
    // The fixture's own 21 initializers of 64 KiB or more, and the pad.
    expect(g.referenced).toBe(22);
  });

  it('rewrites with the feature tap: reads model.onnx, matches the file bit for bit, is cached', async () => {
    const cacheDir = path.join(tmp, 'cache');
    const want = await runUnet(file, feeds, ['out_sample']);
    const started = Date.now();
    const first = await rewriteGraph(file, [{ pass: featureTap }], { cacheDir });
    if (!first.ok) throw new Error(`${first.pass}: ${first.reason}`);
    if (verbose)
      console.log(`rewrite ${Date.now() - started} ms, graph ${(first.bytes.byteLength / MIB).toFixed(2)} MiB`);
    expect(first.cached).toBe(false);
    expect(first.dir).toBe(dir);
    expect(first.bytes.byteLength).toBeLessThan(16 * MIB);
    expect(first.ports.outputs.map((o) => o.name)).toEqual([FEATURE_TAP_OUTPUT]);
    expect(first.sites.sites).toHaveLength(12);

    const got = await runUnet({ bytes: first.bytes, dir: first.dir, file }, feeds, ['out_sample', FEATURE_TAP_OUTPUT]);
    expect(got.out_sample.dims).toEqual(want.out_sample.dims);
    expect(got.out_sample.bytes.equals(want.out_sample.bytes)).toBe(true);
    expect(got[FEATURE_TAP_OUTPUT].dims).toEqual([1, 32, LH, LW]);

    const again = await rewriteGraph(file, [{ pass: featureTap }], { cacheDir });
    if (!again.ok) throw new Error(again.reason);
    expect(again.cached).toBe(true);
    expect(Buffer.from(again.bytes).equals(Buffer.from(first.bytes))).toBe(true);
    expect(again.ports).toEqual(first.ports);

    const stat = fs.statSync(file);
    fs.utimesSync(file, stat.atime, new Date(stat.mtimeMs + 10_000));
    const touched = await rewriteGraph(file, [{ pass: featureTap }], { cacheDir });
    expect(touched).toMatchObject({ ok: true, cached: false });
  });
});

describe.each(['sd15-tiny', 'sd2v-tiny'] as const)('the %s export through rewriteGraph', (fixture) => {
  const file = path.join(FIXTURES, fixture, 'unet', 'model.onnx');
  const passes: [string, PassRequest[]][] = [
    ['no pass', []],
    ['the feature tap', [{ pass: featureTap }]],
  ];

  it.each(passes)('with %s loads in ORT and gives the file’s out_sample bit for bit', async (_name, list) => {
    const feeds = unetFeeds(fixture);
    const want = await runUnet(file, feeds, ['out_sample']);
    const r = await rewriteGraph(file, list, { cacheDir: null });
    if (!r.ok) throw new Error(`${r.pass}: ${r.reason}`);
    const fetch = list.length ? ['out_sample', FEATURE_TAP_OUTPUT] : ['out_sample'];
    const got = await runUnet({ bytes: r.bytes, dir: r.dir, file }, feeds, fetch);
    expect(got.out_sample.bytes.equals(want.out_sample.bytes)).toBe(true);
    if (list.length) expect(got[FEATURE_TAP_OUTPUT].dims).toEqual([1, 32, LH, LW]);
    // The weights of 64 KiB and more are references into model.onnx, not copies.
    expect(r.bytes.byteLength).toBeLessThan(fs.statSync(file).size - 2.5 * MIB);
  });
});
