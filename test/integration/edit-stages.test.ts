// The loader and the denoising loop on graphs a real exporter wrote (test/fixtures/real-export): what the model
// reports it can do (attention sites, decoder features, the VAE mean), `reshoot models check --json`, rewritten
// graphs cached on disk, and an EditStage that feeds and reads ports of a UNet variant through the loop's channel
// without changing the edit.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runModels } from '../../engine/src/cli/models';
import { imageBatch, type ImageBatch } from '../../engine/src/diffusion/images';
import { denoiseFromInversion } from '../../engine/src/editing/loop/inversion-loop';
import type { EditStage, UnetCallInfo } from '../../engine/src/editing/loop/stage';
import { editFromInversion, invertFrames } from '../../engine/src/editing/pipelines/inversion-edit';
import { editStages } from '../../engine/src/editing/stages';
import type { EditParams } from '../../engine/src/editing/types';
import { loadDiffusionModel, type DiffusionModel } from '../../engine/src/models/sd-model';
import { selfAttentionKv, selfAttentionKvPorts } from '../../engine/src/onnx/passes/self-attention-kv';

const ROOT = path.join(__dirname, '..', 'fixtures', 'real-export');
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'reshoot-stages-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const load = (name: string, cache = path.join(tmp, 'graph-cache')) =>
  loadDiffusionModel(path.join(ROOT, name), { threads: 1, graphCache: cache });

function frames(n: number, size: number): ImageBatch {
  return imageBatch(
    n,
    size,
    size,
    Float32Array.from({ length: n * 3 * size * size }, (_, i) =>
      Math.sin(i * 0.013 + Math.floor(i / (3 * size * size)) * 0.4),
    ),
  );
}

async function withModel<T>(name: string, f: (m: DiffusionModel) => Promise<T>, cache?: string): Promise<T> {
  const m = await load(name, cache);
  try {
    return await f(m);
  } finally {
    await m.release();
  }
}

describe.each(['sd15-tiny', 'sd2v-tiny'])('%s through the loader', (name) => {
  it('reports 12 attention sites (6 self, 6 cross) where diffusers builds them, and the decoder features', async () => {
    await withModel(name, async (m) => {
      const a = m.info.attention;
      expect(a.pattern).toBe('torch1-baddbmm');
      expect(a.sites).toHaveLength(12);
      expect(a.sites.filter((s) => s.kind === 'self')).toHaveLength(6);
      expect(a.sites.map((s) => s.module)).toContain('mid_block.attentions.0.transformer_blocks.0.attn2');
      expect(
        a.sites.find((s) => s.module === 'down_blocks.0.attentions.0.transformer_blocks.0.attn1')?.resolution,
      ).toBe(1);
      expect(a.sites.find((s) => s.module === 'mid_block.attentions.0.transformer_blocks.0.attn1')?.resolution).toBe(2);
      expect(m.info.decoderFeatures).toBe('/up_blocks.1/attentions.2/Add_output_0');
    });
  });

  it('`reshoot models check --json` carries the attention report', async () => {
    const printed: string[] = [];
    const log = jest.spyOn(console, 'log').mockImplementation((s: string) => void printed.push(s));
    const saved = process.env.RESHOOT_HOME;
    process.env.RESHOOT_HOME = path.join(tmp, 'home');
    try {
      expect(await runModels(['check', path.join(ROOT, name), '--json'])).toBe(0);
    } finally {
      log.mockRestore();
      if (saved === undefined) delete process.env.RESHOOT_HOME;
      else process.env.RESHOOT_HOME = saved;
    }
    const report = JSON.parse(printed.join('\n')) as {
      info: {
        attention: { pattern: string; sites: { module: string; kind: string; resolution: number; heads: number }[] };
      };
    };
    expect(report.info.attention.pattern).toBe('torch1-baddbmm');
    expect(report.info.attention.sites).toHaveLength(12);
    expect(Object.keys(report.info.attention.sites[0]).sort()).toEqual([
      'heads',
      'kind',
      'layout',
      'module',
      'resolution',
    ]);
    expect(report.info.attention.sites.every((s) => s.heads > 0 && (s.kind === 'self' || s.kind === 'cross'))).toBe(
      true,
    );
  });
});

describe('the VAE encoder of an optimum < 1.24 export', () => {
  it('sd15-tiny draws inside the graph: the loader rewrites it to the mean, so two encodes agree, and says so', async () => {
    await withModel('sd15-tiny', async (m) => {
      expect(m.info.vaeEncoderNote).toMatch(/random sample inside the graph.*mean/);
      const f = frames(2, 64);
      const a = await m.encodeImages(f);
      const b = await m.encodeImages(f);
      expect(Buffer.compare(Buffer.from(a.buffer), Buffer.from(b.buffer))).toBe(0);
    });
  });

  it('sd2v-tiny outputs mean ‖ logvar already: no rewrite, no note', async () => {
    await withModel('sd2v-tiny', async (m) => {
      expect(m.info.vaeEncoderNote).toBeUndefined();
      expect(m.info.variant.vaeEncoderOutput).toMatch(/^latent_parameters/);
    });
  });
});

describe('rewritten graphs are cached on disk', () => {
  it('a second load finds them and gives the same UNet output', async () => {
    const cache = path.join(tmp, 'cache-reuse');
    const sample = Float32Array.from({ length: 4 * 8 * 8 }, (_, i) => Math.cos(i * 0.3));
    const emb = new Float32Array(77 * 32).fill(0.02);
    const first = await withModel('sd15-tiny', (m) => m.predict(sample, 1, 8, 8, 400, emb), cache);
    const entries = fs.readdirSync(cache).sort();
    expect(entries.filter((e) => e.endsWith('.onnx')).length).toBe(2); // the UNet's feature tap and the VAE mean
    const contents = entries.map((e) => fs.readFileSync(path.join(cache, e)));
    const second = await withModel('sd15-tiny', (m) => m.predict(sample, 1, 8, 8, 400, emb), cache);
    expect(fs.readdirSync(cache).sort()).toEqual(entries);
    expect(entries.map((e) => fs.readFileSync(path.join(cache, e)).equals(contents[entries.indexOf(e)]))).toEqual(
      entries.map(() => true),
    );
    expect(Array.from(second.eps)).toEqual(Array.from(first.eps));
  });
});

describe('a stage on the loop’s UNet channel', () => {
  it('feeds a variant’s ports at their neutral values and reads its outputs on every call, leaving the edit as it was', async () => {
    await withModel('sd15-tiny', async (m) => {
      const clip = frames(3, 64);
      const p: EditParams = {
        prompt: 'a blue car',
        sourcePrompt: 'a red car',
        guidance: 3,
        directInversion: true,
        batchSize: 2,
        autoMask: { threshold: 0.5 },
        consistency: { latentCorrection: { steps: 2, weights: [0.25, 0.5, 0.25] } },
      };
      const traj = await invertFrames(m, clip, { sourcePrompt: p.sourcePrompt, steps: 4, strength: 1, batchSize: 2 });
      const plain = await editFromInversion(m, traj, p);

      const site = m.info.attention.sites.find((s) => s.kind === 'self')!;
      const ports = selfAttentionKvPorts(site.module);
      const passes = [{ pass: selfAttentionKv, options: { sites: [site.module] } }];
      const variant = await m.variant(passes);
      if (!variant.ok) throw new Error(variant.reason);
      const weight = variant.ports.inputs.find((i) => i.name === ports.weight)!;
      const calls: UnetCallInfo[] = [];
      const keys: number[][] = [];
      const probe: EditStage = {
        name: 'probe',
        passes,
        outputs: [ports.keyOut],
        plan: () => true,
        beforeUnet(call) {
          calls.push(call);
          return {
            [ports.weight]: {
              data: new Float32Array(weight.neutralShape.reduce((a, d) => a * d, 1)),
              dims: weight.neutralShape,
            },
          };
        },
        afterUnet(_call, outputs) {
          keys.push([...outputs[ports.keyOut].dims]);
        },
      };
      const probed = await denoiseFromInversion(m, traj, p, [...editStages(p), probe]);

      // 4 steps × 2 batches (2 + 1 frames); guided direct inversion runs four branches.
      expect(calls.map((c) => [c.step, c.start, c.count])).toEqual(
        [1, 2, 3, 4].flatMap((s) => [
          [s, 0, 2],
          [s, 2, 1],
        ]),
      );
      expect(calls[0].branches.map((b) => `${b.latent}:${b.prompt}`)).toEqual([
        'target:a blue car',
        'target:',
        'source:a red car',
        'source:',
      ]);
      // Folded heads: [branches·count·heads, tokens, head dim] at full latent resolution (8×8).
      expect(keys[0]).toEqual([4 * 2 * site.heads, 64, keys[0][2]]);
      expect(keys[1][0]).toBe(4 * 1 * site.heads);
      expect(probed.correspondences).toBe(plain.correspondences);
      let diff = 0;
      for (let i = 0; i < plain.frames.data.length; i++)
        diff = Math.max(diff, Math.abs(probed.frames.data[i] - plain.frames.data[i]));
      console.log(`probe stage vs plain edit: max diff ${diff}`);
      expect(diff).toBeLessThanOrEqual(1e-5);
    });
  });

  it('refuses a variant whose pass does not apply, naming the pass and why', async () => {
    await withModel('sd15-tiny', async (m) => {
      const r = await m.variant([{ pass: selfAttentionKv, options: { sites: ['no.such.module'] } }]);
      expect(r.ok).toBe(false);
      expect(!r.ok && r.reason).toMatch(/self-attention-kv: .*no\.such\.module/);
    });
  });
});
