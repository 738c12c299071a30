// The feature-tap pass on the output-head shapes exporters write: torch's decomposed GroupNorm (opset < 18) with a
// data-dependent Reshape, SiLU as x·sigmoid(x), a Cast to fp16 outputs, and the refusals that make the loader fall
// back to latents — plus constants an exporter routed through Identity nodes, which a walk must not take for data.
import * as ort from '../../engine/src/models/ort';
import { onnx } from 'onnx-proto';
import { GraphBuilder } from '../../engine/src/models/generate/onnx-builder';
import { FEATURE_TAP_OUTPUT, featureTap } from '../../engine/src/onnx/passes/feature-tap';

const C = 4;
const F = 8;

/** x → conv (the "last up block", F channels) → head → conv_out (C channels) → optional Cast → output. */
function head(kind: 'decomposed' | 'groupnorm' | 'no-norm', castOut = false): { bytes: Uint8Array; features: string } {
  const g = new GraphBuilder('unet');
  g.input('sample', 'float32', ['batch', C, 'height', 'width']);
  const w1 = g.weight(
    'up.weight',
    Float32Array.from({ length: F * C }, (_, i) => Math.sin(i + 1)),
    [F, C, 1, 1],
  );
  const features = g.scope('up_blocks.1', () => g.o('Conv', ['sample', w1], { kernel_shape: [1, 1] }));
  let h = features;
  if (kind === 'decomposed') {
    g.scope('conv_norm_out', () => {
      // torch: Reshape(x, [0, G, -1]) → InstanceNormalization → Reshape(·, Shape(x)) → Mul(γ) → Add(β).
      const grouped = g.o('Reshape', [h, g.ints([0, 2, -1])]);
      const normed = g.o('InstanceNormalization', [grouped, g.constant([1, 1], [2]), g.constant([0, 0], [2])], {
        epsilon: 1e-5,
      });
      const back = g.o('Reshape', [normed, g.o('Shape', [h])]);
      const gamma = g.constant(Array(F).fill(1.5), [F, 1, 1]);
      h = g.o('Add', [g.o('Mul', [back, gamma]), g.constant(Array(F).fill(0.1), [F, 1, 1])]);
    });
  } else if (kind === 'groupnorm') {
    const [gamma, beta] = [g.constant(Array(F).fill(1), [F]), g.constant(Array(F).fill(0), [F])];
    h = g.scope('conv_norm_out', () => g.o('GroupNormalization', [h, gamma, beta], { num_groups: 2, epsilon: 1e-5 }));
  }
  if (kind !== 'no-norm') h = g.scope('conv_act', () => g.o('Mul', [h, g.o('Sigmoid', [h])]));
  else h = g.o('Relu', [h]);
  const w2 = g.weight(
    'conv_out.weight',
    Float32Array.from({ length: C * F }, (_, i) => Math.cos(i)),
    [C, F, 1, 1],
  );
  const out = g.scope('conv_out', () =>
    g.o('Conv', [h, w2], { kernel_shape: [1, 1] }, castOut ? undefined : 'out_sample'),
  );
  if (castOut) g.o('Cast', [out], { to: 10 }, 'out_sample');
  g.output('out_sample', castOut ? 'float16' : 'float32', ['batch', C, 'height', 'width']);
  return { bytes: g.save().model, features };
}

/**
 * What deduplicating exporters write: every constant operand of the output head (here γ and β of the decomposed
 * GroupNorm) becomes Identity(shared initializer), so no node reads an initializer directly.
 */
function viaIdentity(bytes: Uint8Array): Uint8Array {
  const model = onnx.ModelProto.decode(bytes);
  const graph = model.graph!;
  const copies: onnx.INodeProto[] = [];
  for (const t of graph.initializer!.filter((t) => t.name!.startsWith('conv_norm_out.'))) {
    const shared = `shared::${t.name}`;
    copies.push({ name: `Identity_${t.name}`, opType: 'Identity', input: [shared], output: [t.name!] });
    t.name = shared;
  }
  graph.node = [...copies, ...graph.node!];
  return onnx.ModelProto.encode(model).finish();
}

async function run(bytes: Uint8Array, fetch: string[]): Promise<Record<string, ort.Tensor>> {
  const s = await ort.InferenceSession.create(bytes);
  const sample = new ort.Tensor(
    'float32',
    Float32Array.from({ length: 2 * C * 3 * 3 }, (_, i) => Math.sin(i * 0.7)),
    [2, C, 3, 3],
  );
  try {
    return await s.run({ sample }, fetch);
  } finally {
    await s.release();
  }
}

const values = (t: ort.Tensor) => Array.from(t.data as ArrayLike<number>);

async function expectTapped(bytes: Uint8Array, features: string): Promise<void> {
  const model = onnx.ModelProto.decode(bytes);
  const r = featureTap.apply(model, [], {});
  if (!r.ok) throw new Error(r.reason);
  expect(r.ports.inputs).toEqual([]);
  expect(r.ports.outputs.map((p) => [p.name, p.type])).toEqual([[FEATURE_TAP_OUTPUT, 'float32']]);
  expect(r.ports.outputs[0].role).toContain(features);
  // Pure: the input model is untouched.
  expect(onnx.ModelProto.encode(model).finish()).toEqual(bytes);
  const rewritten = onnx.ModelProto.encode(r.model).finish();
  const before = await run(bytes, ['out_sample']);
  const after = await run(rewritten, ['out_sample', FEATURE_TAP_OUTPUT]);
  const truth = await run(addOutput(bytes, features), [features]);
  expect(after[FEATURE_TAP_OUTPUT].dims).toEqual([2, F, 3, 3]);
  expect(after[FEATURE_TAP_OUTPUT].type).toBe('float32');
  expect(values(after[FEATURE_TAP_OUTPUT])).toEqual(values(truth[features]));
  expect(values(after.out_sample)).toEqual(values(before.out_sample));
}

function addOutput(bytes: Uint8Array, name: string): Uint8Array {
  const model = onnx.ModelProto.decode(bytes);
  model.graph!.output!.push({ name, type: { tensorType: { elemType: 1 } } });
  return onnx.ModelProto.encode(model).finish();
}

describe('the feature-tap pass', () => {
  it.each(['decomposed', 'groupnorm'] as const)(
    'taps the tensor entering the output normalisation (%s), leaving the UNet output as it was',
    async (kind) => {
      for (const castOut of [false, true]) {
        const { bytes, features } = head(kind, castOut);
        await expectTapped(bytes, features);
      }
    },
  );

  it('sees constants through Identity nodes (merged constants), which are not data', async () => {
    const { bytes, features } = head('decomposed');
    const merged = viaIdentity(bytes);
    await expectTapped(merged, features);
  });

  it('refuses a head it does not recognise, and a model without a graph, with the reason', () => {
    const r = featureTap.apply(onnx.ModelProto.decode(head('no-norm').bytes), [], {});
    expect(!r.ok && r.reason).toMatch(/unexpected Relu/);
    const empty = featureTap.apply(onnx.ModelProto.create({}), [], {});
    expect(!empty.ok && empty.reason).toMatch(/no graph/);
  });
});
