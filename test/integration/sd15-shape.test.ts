// sd15-shape: the SD 1.5-sized benchmark model. The full model (3.4 GB, ~2 min) is never generated here. Instead:
// its UNet's parameter count, computed from the preset with diffusers' layout, is SD 1.5's 859,520,964; a copy
// scaled down to a tenth of the widths is generated and must have exactly the parameters and block layout that
// layout predicts, and run; and the UNet streamed to disk during generation must be byte-for-byte the one built in
// memory (also for fp16 weights).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import {
  SD15_SHAPE_VARIANT,
  SD_VARIANTS,
  buildSdPipeline,
  generateSdModel,
  type SdVariant,
} from '../../engine/src/models/generate/tiny-sd';
import { loadDiffusionModel } from '../../engine/src/models/sd-model';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sd15-shape-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** SD 1.5's widths divided by 10; 8 heads and 32 groups still divide every width (and every skip concat). */
const SCALED: SdVariant = {
  ...SD15_SHAPE_VARIANT,
  name: 'sd15-shape-scaled',
  channels: [32, 64, 128, 128],
  hiddenSize: 64,
  vaeChannels: [32, 32, 64, 64],
};

/** The scaled copy, generated once (seed 3) and shared by the tests. */
let scaledDir: string | undefined;
function scaled(): string {
  if (!scaledDir) {
    scaledDir = path.join(root, 'scaled');
    generateSdModel(scaledDir, SCALED, 3);
  }
  return scaledDir;
}

/** Weights and biases of a diffusers UNet2DConditionModel in the SD 1.x layout (no attention at the lowest level). */
function unetParameters(v: SdVariant): number {
  const conv = (i: number, o: number, k = 3) => o * i * k * k + o;
  const linear = (i: number, o: number, bias = true) => i * o + (bias ? o : 0);
  const norm = (c: number) => 2 * c;
  const ch = v.channels;
  const tdim = 4 * ch[0];
  const layers = v.layersPerBlock ?? 1;
  const resnet = (i: number, o: number) =>
    norm(i) + conv(i, o) + linear(tdim, o) + norm(o) + conv(o, o) + (i === o ? 0 : conv(i, o, 1));
  const transformer = (c: number) =>
    norm(c) +
    conv(c, c, 1) +
    3 * norm(c) +
    (3 * linear(c, c, false) + linear(c, c)) +
    (linear(c, c, false) + 2 * linear(v.hiddenSize, c, false) + linear(c, c)) +
    (linear(c, 8 * c) + linear(4 * c, c)) +
    conv(c, c, 1);
  const last = ch.length - 1;
  let total = linear(ch[0], tdim) + linear(tdim, tdim) + conv(v.latentChannels, ch[0]);
  let c = ch[0];
  const skips = [c];
  ch.forEach((w, i) => {
    for (let j = 0; j < layers; j++) {
      total += resnet(c, w) + (i < last ? transformer(w) : 0);
      c = w;
      skips.push(c);
    }
    if (i < last) {
      total += conv(c, c);
      skips.push(c);
    }
  });
  total += 2 * resnet(c, c) + transformer(c);
  for (let level = last; level >= 0; level--) {
    for (let j = 0; j < layers + 1; j++) {
      total += resnet(c + skips.pop()!, ch[level]) + (level < last ? transformer(ch[level]) : 0);
      c = ch[level];
    }
    if (level > 0) total += conv(c, c);
  }
  return total + norm(c) + conv(c, v.latentChannels);
}

function initializers(file: string): Map<string, number> {
  const model = onnx.ModelProto.decode(fs.readFileSync(file));
  return new Map(
    (model.graph?.initializer ?? []).map((t) => [t.name!, (t.dims ?? []).reduce<number>((a, d) => a * Number(d), 1)]),
  );
}

describe('sd15-shape', () => {
  it("is SD 1.5's UNet in size, with the layout its config declares", () => {
    const v = SD15_SHAPE_VARIANT;
    expect(v).toMatchObject({
      name: 'sd15-shape',
      channels: [320, 640, 1280, 1280],
      layersPerBlock: 2,
      heads: 8,
      hiddenSize: 768,
      sampleSize: 64,
      latentChannels: 4,
      vaeScale: 8,
      vaeChannels: [128, 256, 512, 512],
      normGroups: 32,
      fp16: false,
      externalData: 'model.onnx_data',
    });
    expect(unetParameters(v)).toBe(859_520_964);
  });

  it('generates a scaled-down copy with the predicted weights and blocks, and it runs', async () => {
    const dir = scaled();
    const inits = initializers(path.join(dir, 'unet', 'model.onnx'));
    const params = [...inits].filter(([n]) => /\.(weight|bias)$/.test(n)).reduce((a, [, e]) => a + e, 0);
    expect(params).toBe(unetParameters(SCALED));

    const modules = (block: string, kind: string) => [
      ...new Set([...inits.keys()].flatMap((n) => new RegExp(`^${block}\\.${kind}\\.(\\d+)\\.`).exec(n)?.[1] ?? [])),
    ];
    for (let i = 0; i < 4; i++) {
      expect(modules(`down_blocks.${i}`, 'resnets')).toEqual(['0', '1']);
      expect(modules(`down_blocks.${i}`, 'attentions')).toEqual(i < 3 ? ['0', '1'] : []);
      expect(modules(`up_blocks.${i}`, 'resnets')).toEqual(['0', '1', '2']);
      expect(modules(`up_blocks.${i}`, 'attentions')).toEqual(i > 0 ? ['0', '1', '2'] : []);
    }
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'unet', 'config.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    expect(config).toMatchObject({
      layers_per_block: 2,
      attention_head_dim: 8,
      cross_attention_dim: 64,
      down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
      up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
    });

    const model = await loadDiffusionModel(dir, { graphCache: null });
    try {
      const emb = await model.encodePrompts(['a red car']);
      const sample = Float32Array.from({ length: 4 * 16 * 16 }, (_, i) => Math.sin(i));
      const out = await model.predict(sample, 1, 16, 16, 500, emb.data);
      expect(out.eps).toHaveLength(sample.length);
      expect(out.eps.every((x) => Number.isFinite(x))).toBe(true);
      expect(new Set(out.eps).size).toBeGreaterThan(100);
    } finally {
      await model.release();
    }
  });

  it.each([
    ['scaled sd15-shape', SCALED, 3],
    ['olive-fp16 (float16 weights)', SD_VARIANTS['olive-fp16'], 5],
  ])('streams the UNet to disk byte-for-byte as built in memory: %s', (_, v, seed) => {
    let dir = scaled();
    if (v !== SCALED) {
      dir = path.join(root, v.name);
      generateSdModel(dir, v, seed);
    }
    const unet = buildSdPipeline(v, seed).components.unet;
    expect(
      Buffer.from(fs.readFileSync(path.join(dir, 'unet', 'model.onnx'))).equals(Buffer.from(unet.saved.model)),
    ).toBe(true);
    expect(
      Buffer.from(fs.readFileSync(path.join(dir, 'unet', unet.dataFile!))).equals(Buffer.from(unet.saved.data!)),
    ).toBe(true);
  });
});
