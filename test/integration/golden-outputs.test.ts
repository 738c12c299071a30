// Output hashes of a set of edits, pinned before the editing loop was reorganised into stages (the "Open the UNet"
// issue): every method, with and without masks, on the oracle and on generated Stable-Diffusion-shaped models. A
// change that is meant to be behaviour-neutral must leave every hash as it was, bit for bit.
//
// ONNX Runtime's CPU kernels pick code paths by instruction set, so the last bits of a UNet output can differ
// between CPUs. The fixture records the CPU it was taken on; on that CPU model the hashes must match exactly, on
// any other the recorded sample values must match to 1e-3 (still far tighter than any behaviour change).
// RESHOOT_UPDATE_GOLDEN=1 rewrites the fixture.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ImageBatch, MaskBatch } from '../../engine/src/diffusion/images';
import { fastEdit } from '../../engine/src/editing/pipelines/fast-edit';
import { inversionEdit, type InversionEditParams } from '../../engine/src/editing/pipelines/inversion-edit';
import { sdedit } from '../../engine/src/editing/pipelines/sdedit';
import type { EditOutput } from '../../engine/src/editing/types';
import { defaultConsistency } from '../../engine/src/eval/harness';
import { makeScene } from '../../engine/src/eval/synthetic-scene';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import { ORACLE } from '../../engine/src/models/generate/oracle-spec';
import { generateSdModel } from '../../engine/src/models/generate/tiny-sd';
import { loadDiffusionModel, type DiffusionModel } from '../../engine/src/models/sd-model';

const FIXTURE = path.join(__dirname, '..', 'fixtures', 'golden-outputs.json');
const UPDATE = process.env.RESHOOT_UPDATE_GOLDEN === '1';
const SAMPLES = 16;

interface Golden {
  hash: string;
  samples: number[];
}
interface GoldenFile {
  cpu: string;
  cases: Record<string, Golden>;
}

type Rgb = [number, number, number];
const RED = [...ORACLE.colours.red] as Rgb;
const SRC = 'a red car on a gray road';
const TGT = 'a blue car on a gray road';

let root: string;
const models: Record<string, DiffusionModel> = {};
const recorded: Record<string, Golden> = {};
const stored: GoldenFile | undefined = fs.existsSync(FIXTURE)
  ? (JSON.parse(fs.readFileSync(FIXTURE, 'utf8')) as GoldenFile)
  : undefined;
const cpu = os.cpus()[0]?.model ?? 'unknown';

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'golden-'));
  generateOracle(path.join(root, 'oracle'));
  generateSdModel(path.join(root, 'tiny'), 'optimum', 1);
  generateSdModel(path.join(root, 'sd2v'), 'sd2-v', 2);
  generateSdModel(path.join(root, 'lcm'), 'lcm', 3);
  for (const name of ['oracle', 'tiny', 'sd2v', 'lcm']) models[name] = await loadDiffusionModel(path.join(root, name));
});

afterAll(async () => {
  await Promise.all(Object.values(models).map((m) => m.release()));
  fs.rmSync(root, { recursive: true, force: true });
  if (UPDATE) fs.writeFileSync(FIXTURE, `${JSON.stringify({ cpu, cases: recorded }, null, 2)}\n`);
});

function clip(frames: number, width: number, height: number): ImageBatch {
  return makeScene({
    frames,
    width,
    height,
    background: [0, 0, 0],
    pattern: { amplitude: 0.25, period: 12 },
    noise: 0.08,
    frameNoise: 0.03,
    seed: 5,
    object: { shape: 'square', colour: RED, size: 12, centre: [10, height / 2], velocity: [3, 0] },
    occluders: [],
  }).frames;
}

function boxMask(width: number, height: number): MaskBatch {
  const data = new Float32Array(width * height);
  for (let y = 0; y < height / 2; y++) for (let x = 0; x < width / 2; x++) data[y * width + x] = 1;
  return { n: 1, width, height, data };
}

/** Everything an edit returns that reaches the user: frames, reconstruction, latent mask, source steps. */
function digest(out: EditOutput & { trajectory?: { latents: Float32Array[] } }): Golden {
  const h = createHash('sha256');
  const parts = [
    out.frames.data,
    out.reconstruction?.data,
    out.latentMask,
    ...(out.trajectory?.latents ?? []),
    ...(out.sourceSteps?.levels ?? []),
  ];
  for (const p of parts) if (p) h.update(Buffer.from(p.buffer, p.byteOffset, p.byteLength));
  h.update(JSON.stringify({ warnings: out.warnings, correspondences: out.correspondences ?? null }));
  const d = out.frames.data;
  const samples = Array.from({ length: SAMPLES }, (_, i) => d[Math.floor(((i + 0.5) * d.length) / SAMPLES)]);
  return { hash: h.digest('hex'), samples };
}

function check(name: string, out: EditOutput): void {
  const g = digest(out);
  recorded[name] = g;
  if (UPDATE) return;
  const want = stored?.cases[name];
  if (!want)
    throw new Error(
      `no golden output for "${name}": run with RESHOOT_UPDATE_GOLDEN=1 only when the change is meant to alter outputs`,
    );
  if (stored.cpu === cpu) expect(g.hash).toBe(want.hash);
  else g.samples.forEach((v, i) => expect(Math.abs(v - want.samples[i])).toBeLessThan(1e-3));
}

const inversion = (over: Partial<InversionEditParams> = {}): InversionEditParams => ({
  sourcePrompt: SRC,
  prompt: TGT,
  steps: 10,
  strength: 1,
  guidance: 1,
  directInversion: true,
  batchSize: 4,
  reconstruct: true,
  ...over,
});

describe('golden outputs of the oracle', () => {
  const frames = clip(6, 48, 32);
  it('inversion, direct, automatic mask with every default consistency stage', async () => {
    check(
      'oracle/inversion-auto-consistency',
      await inversionEdit(
        models.oracle,
        frames,
        inversion({ autoMask: { threshold: 0.5 }, consistency: defaultConsistency() }),
      ),
    );
  });
  it('inversion, direct, box mask, anchor statistics', async () => {
    check(
      'oracle/inversion-box-anchor',
      await inversionEdit(
        models.oracle,
        frames,
        inversion({ mask: boxMask(48, 32), consistency: { anchorStats: true } }),
      ),
    );
  });
  it('inversion without direct inversion, guidance 3, no mask', async () => {
    check(
      'oracle/inversion-plain-cfg',
      await inversionEdit(models.oracle, frames, inversion({ directInversion: false, guidance: 3 })),
    );
  });
  it('a same-prompt edit', async () => {
    check(
      'oracle/inversion-identity',
      await inversionEdit(
        models.oracle,
        frames,
        inversion({ prompt: SRC, autoMask: { threshold: 0.5 }, consistency: defaultConsistency() }),
      ),
    );
  });
  it('SDEdit with a box mask', async () => {
    check(
      'oracle/sdedit-box',
      await sdedit(models.oracle, frames, {
        prompt: TGT,
        steps: 10,
        strength: 0.6,
        guidance: 2,
        seed: 7,
        batchSize: 4,
        mask: boxMask(48, 32),
        reconstruct: true,
      }),
    );
  });
});

describe('golden outputs of generated Stable Diffusion graphs', () => {
  const frames = clip(3, 32, 32);
  it('tiny-sd (optimum): inversion, automatic mask, latent correction on decoder features', async () => {
    check(
      'tiny/inversion-auto-consistency',
      await inversionEdit(
        models.tiny,
        frames,
        inversion({ guidance: 2, autoMask: { threshold: 0.3 }, consistency: defaultConsistency(), batchSize: 2 }),
      ),
    );
  });
  it('tiny-sd (optimum): inversion, box mask', async () => {
    check('tiny/inversion-box', await inversionEdit(models.tiny, frames, inversion({ mask: boxMask(32, 32) })));
  });
  it('tiny-sd (optimum): SDEdit', async () => {
    check(
      'tiny/sdedit',
      await sdedit(models.tiny, frames, { prompt: TGT, steps: 8, strength: 0.7, guidance: 3, seed: 11, batchSize: 3 }),
    );
  });
  it('sd2-v (v-prediction): inversion, no mask, guidance 2', async () => {
    check(
      'sd2v/inversion-cfg',
      await inversionEdit(models.sd2v, frames, inversion({ guidance: 2, consistency: defaultConsistency() })),
    );
  });
  it('lcm: the fast preset, with and without a mask', async () => {
    check(
      'lcm/fast',
      await fastEdit(models.lcm, frames, { prompt: TGT, steps: 2, strength: 0.5, guidance: 4, seed: 3, batchSize: 3 }),
    );
    check(
      'lcm/fast-box',
      await fastEdit(models.lcm, frames, {
        prompt: TGT,
        steps: 3,
        strength: 0.6,
        guidance: 4,
        seed: 3,
        batchSize: 2,
        mask: boxMask(32, 32),
        reconstruct: true,
      }),
    );
  });
});
