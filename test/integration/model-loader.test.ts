// The loader against every generated exporter variant and against broken folders.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { inversionEdit } from '../../engine/src/editing/pipelines/inversion-edit';
import { imageBatch } from '../../engine/src/diffusion/images';
import { generateSdModel, SD_VARIANTS } from '../../engine/src/models/generate/tiny-sd';
import { loadDiffusionModel, guidanceScaleEmbedding } from '../../engine/src/models/sd-model';
import { FEATURE_TAP_OUTPUT } from '../../engine/src/onnx/passes/feature-tap';

let root: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'loader-'));
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const expectations: Record<
  string,
  { ids: string; timestep: string; unetOut: string; enc: RegExp; dec: string; ext?: string; pred: string }
> = {
  optimum: {
    ids: 'input_ids:int64',
    timestep: 'float32[]',
    unetOut: 'out_sample',
    enc: /^latent_parameters \(mean/,
    dec: 'sample',
    ext: 'model.onnx_data',
    pred: 'epsilon',
  },
  'optimum-legacy': {
    ids: 'input_ids:int64',
    timestep: 'int64[1]',
    unetOut: 'out_sample',
    enc: /^latent_sample$/,
    dec: 'sample',
    ext: 'model.onnx_data',
    pred: 'epsilon',
  },
  'diffusers-script': {
    ids: 'input_ids:int32',
    timestep: 'float32[batch]',
    unetOut: 'out_sample',
    enc: /^latent_sample$/,
    dec: 'sample',
    ext: 'weights.pb',
    pred: 'epsilon',
  },
  'olive-fp16': {
    ids: 'input_ids:int32',
    timestep: 'float16[batch]',
    unetOut: 'out_sample',
    enc: /^latent_sample$/,
    dec: 'sample',
    ext: 'weights.pb',
    pred: 'epsilon',
  },
  'ort-demo': {
    ids: 'input_ids:int32',
    timestep: 'float32[1]',
    unetOut: 'latent',
    enc: /^latent_sample$/,
    dec: 'images',
    pred: 'epsilon',
  },
  'sd2-v': {
    ids: 'input_ids:int64',
    timestep: 'float32[]',
    unetOut: 'out_sample',
    enc: /^latent_parameters/,
    dec: 'sample',
    ext: 'model.onnx_data',
    pred: 'v_prediction',
  },
  'sd-turbo': {
    ids: 'input_ids:int64',
    timestep: 'int64[1]',
    unetOut: 'out_sample',
    enc: /^latent_parameters/,
    dec: 'sample',
    ext: 'model.onnx_data',
    pred: 'epsilon',
  },
  lcm: {
    ids: 'input_ids:int64',
    timestep: 'float32[]',
    unetOut: 'out_sample',
    enc: /^latent_parameters/,
    dec: 'sample',
    ext: 'model.onnx_data',
    pred: 'epsilon',
  },
  'vae-f4-c16': {
    ids: 'input_ids:int64',
    timestep: 'float32[]',
    unetOut: 'out_sample',
    enc: /^latent_parameters/,
    dec: 'sample',
    ext: 'model.onnx_data',
    pred: 'epsilon',
  },
};

describe.each(Object.keys(SD_VARIANTS))('variant %s', (name) => {
  it('loads by reading the session metadata and runs an edit end to end', async () => {
    const v = SD_VARIANTS[name];
    const e = expectations[name];
    expect(e).toBeDefined();
    const dir = path.join(root, name);
    generateSdModel(dir, v, 3);
    const model = await loadDiffusionModel(dir, { threads: 1 });
    try {
      const { info } = model;
      expect(info.provider).toBe('cpu');
      expect(info.latentChannels).toBe(v.latentChannels);
      expect(info.vaeScale).toBe(v.vaeScale);
      expect(info.scalingFactor).toBeCloseTo(v.scalingFactor, 6);
      expect(info.hiddenSize).toBe(v.hiddenSize);
      expect(info.fp16).toBe(v.fp16);
      expect(info.timestepCondDim).toBe(v.timestepCond);
      expect(info.variant.inputIds).toBe(e.ids);
      expect(info.variant.timestep).toBe(e.timestep);
      expect(info.variant.unetOutput).toBe(e.unetOut);
      expect(info.variant.vaeEncoderOutput).toMatch(e.enc);
      expect(info.variant.vaeDecoderOutput).toBe(e.dec);
      expect(info.variant.externalData.unet).toBe(e.ext);
      expect(model.scheduler.predictionType).toBe(e.pred);
      expect(model.tokenizer.padId).toBe(v.pad === '!' ? 0 : model.tokenizer.eosId);

      const emb = await model.encodePrompts(['a red car on a gray road', '']);
      expect(emb.data.length).toBe(2 * 77 * v.hiddenSize);
      const s = v.vaeScale;
      const frames = imageBatch(
        3,
        8 * s,
        16 * s,
        Float32Array.from({ length: 3 * 3 * 8 * s * 16 * s }, (_, i) => Math.sin(i * 0.37)),
      );
      const latents = await model.encodeImages(frames);
      expect(latents.length).toBe(3 * v.latentChannels * 8 * 16);
      expect(latents.every(Number.isFinite)).toBe(true);
      const { eps: out } = await model.predict(
        latents,
        3,
        8,
        16,
        500,
        new Float32Array(3 * 77 * v.hiddenSize).fill(0.1),
        { guidanceEmbedding: 7 },
      );
      expect(out.length).toBe(latents.length);
      expect(out.every(Number.isFinite)).toBe(true);
      const decoded = await model.decodeLatents(latents, 3, 8, 16);
      expect([decoded.n, decoded.height, decoded.width]).toEqual([3, 8 * s, 16 * s]);

      // The last up block's output, exposed by rewriting the graph (external weights resolved from its folder).
      expect(info.decoderFeatures).toBe('/up_blocks.1/attentions.1/Add_output_0');
      const tapped = await model.predict(latents, 3, 8, 16, 500, new Float32Array(3 * 77 * v.hiddenSize).fill(0.1), {
        outputs: [FEATURE_TAP_OUTPUT],
      });
      const feats = tapped.outputs[FEATURE_TAP_OUTPUT];
      expect(feats.dims).toEqual([3, v.channels[0], 8, 16]);
      expect(feats.data.every(Number.isFinite)).toBe(true);

      const evals = model.stats.unetEvals;
      const r = await inversionEdit(model, frames, {
        sourcePrompt: 'a red car',
        prompt: 'a blue car',
        steps: 3,
        strength: 1,
        guidance: 3,
        directInversion: true,
        batchSize: 2,
        consistency: { latentCorrection: { steps: 2, weights: [0.25, 0.5, 0.25] } },
      });
      expect([r.frames.n, r.frames.height, r.frames.width]).toEqual([3, 8 * s, 16 * s]);
      expect(r.frames.data.every(Number.isFinite)).toBe(true);
      expect(r.trajectory.latents).toHaveLength(4);
      // Latent correction matched frames by those features: one more UNet evaluation per frame (3 inversion + 3 × 4 edit + 1).
      expect(r.correspondences).toBe('decoder features');
      expect(model.stats.unetEvals - evals).toBe(3 * (3 + 3 * 4 + 1));
    } finally {
      await model.release();
    }
  });
});

describe('broken model folders fail at load with the file and what was expected', () => {
  let good: string;
  beforeAll(() => {
    good = path.join(root, 'good');
    generateSdModel(good, SD_VARIANTS.optimum, 5);
  });
  const broken = (name: string, damage: (dir: string) => void) => {
    const dir = path.join(root, `broken-${name}`);
    fs.cpSync(good, dir, { recursive: true });
    damage(dir);
    return dir;
  };

  it('a missing folder', async () => {
    await expect(loadDiffusionModel(path.join(root, 'absent'))).rejects.toThrow(/absent: model folder does not exist/);
  });

  it('a file instead of a folder', async () => {
    const file = path.join(root, 'a-file');
    fs.writeFileSync(file, 'x');
    await expect(loadDiffusionModel(file)).rejects.toThrow(/not a folder/);
  });

  it('missing parts are all named at once', async () => {
    const dir = broken('missing', (d) => {
      fs.rmSync(path.join(d, 'unet', 'model.onnx'));
      fs.rmSync(path.join(d, 'tokenizer'), { recursive: true });
    });
    await expect(loadDiffusionModel(dir)).rejects.toThrow(/missing unet\/model\.onnx, tokenizer\//);
  });

  it('a corrupt ONNX file', async () => {
    const dir = broken('corrupt', (d) =>
      fs.writeFileSync(path.join(d, 'vae_decoder', 'model.onnx'), Buffer.from('not an onnx model at all')),
    );
    await expect(loadDiffusionModel(dir)).rejects.toThrow(
      /vae_decoder\/model\.onnx: ONNX Runtime could not load this model/,
    );
  });

  it('missing external data', async () => {
    const dir = broken('nodata', (d) => fs.rmSync(path.join(d, 'unet', 'model.onnx_data')));
    await expect(loadDiffusionModel(dir)).rejects.toThrow(/unet\/model\.onnx: ONNX Runtime could not load/);
  });

  it('a UNet with unexpected inputs', async () => {
    const dir = broken('inputs', (d) =>
      fs.copyFileSync(path.join(d, 'vae_decoder', 'model.onnx'), path.join(d, 'unet', 'model.onnx')),
    );
    await expect(loadDiffusionModel(dir)).rejects.toThrow(
      /unet\/model\.onnx: missing input sample, timestep, encoder_hidden_states/,
    );
  });

  it('a text encoder in the UNet slot is caught by its inputs too', async () => {
    const dir = broken('swap', (d) =>
      fs.copyFileSync(path.join(d, 'text_encoder', 'model.onnx'), path.join(d, 'unet', 'model.onnx')),
    );
    await expect(loadDiffusionModel(dir)).rejects.toThrow(/unet\/model\.onnx: missing input/);
  });

  it('invalid JSON in the scheduler config', async () => {
    const dir = broken('json', (d) =>
      fs.writeFileSync(path.join(d, 'scheduler', 'scheduler_config.json'), '{ "beta_start": '),
    );
    await expect(loadDiffusionModel(dir)).rejects.toThrow(/scheduler_config\.json: not valid JSON/);
  });

  it('an unknown prediction type', async () => {
    const dir = broken('pred', (d) => {
      const f = path.join(d, 'scheduler', 'scheduler_config.json');
      fs.writeFileSync(f, JSON.stringify({ ...JSON.parse(fs.readFileSync(f, 'utf8')), prediction_type: 'flow' }));
    });
    await expect(loadDiffusionModel(dir)).rejects.toThrow(/prediction_type/);
  });
});

describe('decoder features', () => {
  it("leave the UNet's own output as it was, and fall back to latents (saying why) where they cannot be exposed", async () => {
    const dir = path.join(root, 'features');
    generateSdModel(dir, SD_VARIANTS.optimum, 5);
    const withFeatures = await loadDiffusionModel(dir, { threads: 1 });
    const without = await loadDiffusionModel(dir, { threads: 1, decoderFeatures: false });
    try {
      expect(without.info.decoderFeatures).toBeNull();
      expect(without.info.decoderFeaturesNote).toBe('turned off');
      const sample = Float32Array.from({ length: 2 * 4 * 8 * 8 }, (_, i) => Math.cos(i * 0.21));
      const emb = new Float32Array(2 * 77 * SD_VARIANTS.optimum.hiddenSize).fill(0.05);
      const { eps: a } = await withFeatures.predict(sample, 2, 8, 8, 300, emb);
      const { eps: b } = await without.predict(sample, 2, 8, 8, 300, emb);
      let maxDiff = 0;
      for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
      expect(maxDiff).toBeLessThan(1e-5);
      // Without features the correspondences come from the latents, and no UNet evaluation is added.
      const frames = imageBatch(
        3,
        64,
        64,
        Float32Array.from({ length: 3 * 3 * 64 * 64 }, (_, i) => Math.sin(i * 0.11)),
      );
      const evals = without.stats.unetEvals;
      const r = await inversionEdit(without, frames, {
        sourcePrompt: '',
        prompt: 'a blue car',
        steps: 2,
        strength: 1,
        guidance: 1,
        directInversion: false,
        batchSize: 3,
        consistency: { latentCorrection: { steps: 1, weights: [0.25, 0.5, 0.25] } },
      });
      expect(r.correspondences).toBe('latents');
      expect(without.stats.unetEvals - evals).toBe(3 * (2 + 2));
    } finally {
      await withFeatures.release();
      await without.release();
    }
  });
});

describe('VAE factor without a config', () => {
  it('is measured by decoding a small latent instead of assuming 8', async () => {
    const dir = path.join(root, 'noconfig');
    generateSdModel(dir, SD_VARIANTS['vae-f4-c16'], 4);
    for (const c of ['vae_encoder', 'vae_decoder']) {
      const f = path.join(dir, c, 'config.json');
      const cfg = JSON.parse(fs.readFileSync(f, 'utf8')) as Record<string, unknown>;
      delete cfg.block_out_channels;
      fs.writeFileSync(f, JSON.stringify(cfg));
    }
    const model = await loadDiffusionModel(dir, { threads: 1 });
    try {
      expect(model.info.vaeScale).toBe(4);
      expect(model.info.latentChannels).toBe(16);
    } finally {
      await model.release();
    }
  });
});

describe('execution providers', () => {
  it('falls back to CPU and says why when CUDA cannot be used here', async () => {
    const dir = path.join(root, 'prov');
    generateSdModel(dir, SD_VARIANTS['ort-demo'], 2);
    const model = await loadDiffusionModel(dir, { providers: ['cuda'], threads: 1 });
    try {
      expect(model.info.provider).toBe('cpu');
      expect(model.info.providerFallbacks.length).toBeGreaterThan(0);
      expect(model.info.providerFallbacks[0]).toMatch(/^cuda: /);
    } finally {
      await model.release();
    }
  });
});

describe('LCM guidance embedding', () => {
  it('matches diffusers get_guidance_scale_embedding (sin half, then cos half of w·1000·freq)', () => {
    const e = guidanceScaleEmbedding(7.5, 8, 2);
    const half = 4;
    const scale = Math.log(10000) / (half - 1);
    for (let i = 0; i < half; i++) {
      const arg = 7500 * Math.exp(-scale * i);
      expect(e[i]).toBeCloseTo(Math.sin(arg), 5);
      expect(e[half + i]).toBeCloseTo(Math.cos(arg), 5);
      expect(e[8 + i]).toBe(e[i]);
    }
  });
});
