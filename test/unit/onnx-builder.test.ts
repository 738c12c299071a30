import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from '../../engine/src/models/ort';
import { GraphBuilder } from '../../engine/src/models/generate/onnx-builder';
import { fromHalf, toHalf, floatToHalfBits, halfBitsToFloat } from '../../engine/src/diffusion/half';

describe('GraphBuilder', () => {
  it('writes a model with external, fp16-stored weights that ORT runs to the expected values', async () => {
    const g = new GraphBuilder('t');
    g.input('x', 'float32', ['batch', 2048]);
    const w = g.scope('down_blocks.0', () =>
      g.weight(
        'scale',
        Float32Array.from({ length: 2048 }, (_, i) => (i % 7) - 3),
        [2048],
      ),
    );
    const y = g.scope('down_blocks.0', () => g.o('Mul', ['x', w]));
    g.o('Add', [y, g.scalar(1)], {}, 'y');
    g.output('y', 'float32', ['batch', 2048]);
    const saved = g.save({ externalData: { location: 'model.onnx_data' }, halfWeights: true });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'builder-'));
    fs.writeFileSync(path.join(dir, 'model.onnx'), saved.model);
    fs.writeFileSync(path.join(dir, 'model.onnx_data'), saved.data!);
    const s = await ort.InferenceSession.create(path.join(dir, 'model.onnx'));
    const x = Float32Array.from({ length: 4096 }, (_, i) => i / 100);
    const out = (await s.run({ x: new ort.Tensor('float32', x, [2, 2048]) })).y.data as Float32Array;
    for (const i of [0, 5, 2047, 3000, 4095]) expect(out[i]).toBeCloseTo(x[i] * (((i % 2048) % 7) - 3) + 1, 4);
    expect(saved.data!.byteLength).toBe(2048 * 2);
    fs.rmSync(dir, { recursive: true });
  });
});

describe('half floats', () => {
  it('round-trips representable values and rounds to nearest even', () => {
    const vals = [0, -0, 1, -2.5, 65504, 6.103515625e-5, 5.960464477539063e-8, 0.333251953125];
    expect(Array.from(fromHalf(toHalf(vals)))).toEqual(vals);
    expect(floatToHalfBits(1 + 2 ** -11)).toBe(0x3c00); // tie -> even
    expect(floatToHalfBits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(floatToHalfBits(1e6)).toBe(0x7c00);
    expect(Number.isNaN(halfBitsToFloat(floatToHalfBits(NaN)))).toBe(true);
    expect(halfBitsToFloat(floatToHalfBits(0.1))).toBeCloseTo(0.1, 3);
  });
});
