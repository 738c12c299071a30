// The UNet rewrite that exposes the decoder features, on the output-head shapes exporters write: torch's decomposed
// GroupNorm (opset < 18) with a data-dependent Reshape, SiLU as x·sigmoid(x), a Cast to fp16 outputs; and the
// refusals that make the loader fall back to latents.
import * as ort from 'onnxruntime-node';
import { exposeDecoderFeatures } from '../../engine/src/models/decoder-features';
import { GraphBuilder } from '../../engine/src/models/generate/onnx-builder';

const C = 4;
const F = 8;

/** x → conv (the "last up block", F channels) → head → conv_out (C channels) → optional Cast → output. */
function head(kind: 'decomposed' | 'groupnorm' | 'no-norm', castOut = false): { bytes: Uint8Array; features: string } {
  const g = new GraphBuilder('unet');
  g.input('sample', 'float32', ['batch', C, 'height', 'width']);
  const w1 = g.weight('up.weight', Float32Array.from({ length: F * C }, (_, i) => Math.sin(i + 1)), [F, C, 1, 1]);
  const features = g.scope('up_blocks.1', () => g.o('Conv', ['sample', w1], { kernel_shape: [1, 1] }));
  let h = features;
  if (kind === 'decomposed') {
    g.scope('conv_norm_out', () => {
      // torch: Reshape(x, [0, G, -1]) → InstanceNormalization → Reshape(·, Shape(x)) → Mul(γ) → Add(β).
      const grouped = g.o('Reshape', [h, g.ints([0, 2, -1])]);
      const normed = g.o('InstanceNormalization', [grouped, g.constant([1, 1], [2]), g.constant([0, 0], [2])], { epsilon: 1e-5 });
      const back = g.o('Reshape', [normed, g.o('Shape', [h])]);
      h = g.o('Add', [g.o('Mul', [back, g.constant(Array(F).fill(1.5), [F, 1, 1])]), g.constant(Array(F).fill(0.1), [F, 1, 1])]);
    });
  } else if (kind === 'groupnorm') {
    h = g.scope('conv_norm_out', () => g.o('GroupNormalization', [h, g.constant(Array(F).fill(1), [F]), g.constant(Array(F).fill(0), [F])], { num_groups: 2, epsilon: 1e-5 }));
  }
  if (kind !== 'no-norm') h = g.scope('conv_act', () => g.o('Mul', [h, g.o('Sigmoid', [h])]));
  else h = g.o('Relu', [h]);
  const w2 = g.weight('conv_out.weight', Float32Array.from({ length: C * F }, (_, i) => Math.cos(i)), [C, F, 1, 1]);
  const out = g.scope('conv_out', () => g.o('Conv', [h, w2], { kernel_shape: [1, 1] }, castOut ? undefined : 'out_sample'));
  if (castOut) g.o('Cast', [out], { to: 10 }, 'out_sample');
  g.output('out_sample', castOut ? 'float16' : 'float32', ['batch', C, 'height', 'width']);
  return { bytes: g.save().model, features };
}

async function run(bytes: Uint8Array, fetch: string[]): Promise<Record<string, ort.Tensor>> {
  const s = await ort.InferenceSession.create(bytes);
  const sample = new ort.Tensor('float32', Float32Array.from({ length: 2 * C * 3 * 3 }, (_, i) => Math.sin(i * 0.7)), [2, C, 3, 3]);
  try {
    return await s.run({ sample }, fetch);
  } finally {
    await s.release();
  }
}

describe('exposing the decoder features', () => {
  it.each(['decomposed', 'groupnorm'] as const)('finds the tensor entering the output normalisation (%s), outputs it, and leaves the UNet output as it was', async (kind) => {
    for (const castOut of [false, true]) {
      const { bytes, features } = head(kind, castOut);
      const r = exposeDecoderFeatures(bytes);
      if (!r.ok) throw new Error(r.reason);
      expect(r.tensor).toBe(features);
      const before = await run(bytes, ['out_sample']);
      const after = await run(r.bytes, ['out_sample', r.tensor]);
      expect(after[r.tensor].dims).toEqual([2, F, 3, 3]);
      expect(after[r.tensor].type).toBe('float32');
      expect(Array.from(after.out_sample.data as ArrayLike<number>)).toEqual(Array.from(before.out_sample.data as ArrayLike<number>));
    }
  });

  it('refuses a head it does not recognise, and bytes that are not a model, with the reason', () => {
    const r = exposeDecoderFeatures(head('no-norm').bytes);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.reason).toMatch(/unexpected Relu/);
    const bad = exposeDecoderFeatures(new Uint8Array([1, 2, 3, 4, 5]));
    expect(bad.ok).toBe(false);
  });
});
