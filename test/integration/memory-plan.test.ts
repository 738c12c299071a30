// The memory plan (jobs/memory-plan.ts, models/memory-probe.ts) on a model of Stable Diffusion's latent size
// (sd-bench: 64×64 latents at its native 512 px): the first job measures the model in a child process and caches the
// figures, a second job reuses them, the batch the job used is in its result, a job that cannot fit is refused before
// it decodes anything, and `reshoot models check` prints the figures at the native size.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { makeTestClip } from '../../engine/src/media';
import { generateSdBench, generateTinySd } from '../../engine/src/models/generate/tiny-sd';
import { loadDiffusionModel } from '../../engine/src/models/sd-model';
import { CLI, reshootEdit, startServe } from '../support/cli';

let root: string;
let model: string;
let clip: string;
let home: string;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'memory-plan-'));
  model = path.join(root, 'sd-bench');
  generateSdBench(model);
  clip = path.join(root, 'clip.mp4');
  await makeTestClip({
    file: clip,
    width: 64,
    height: 64,
    fps: { num: 8, den: 1 },
    frames: 2,
    content: 'moving-square',
  });
  home = path.join(root, 'home');
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** The JSON lines `reshoot edit --json` printed. */
function events(stdout: string): { event: string; stage?: string; result?: Record<string, unknown> }[] {
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { event: string });
}

const edit = (out: string, more: string[] = []) =>
  reshootEdit({
    clip,
    model,
    home,
    args: ['--steps', '1', '--seed', '2', '--batch', '8', '--json', '-o', out, ...more],
  });

describe('memory plan on a Stable-Diffusion-size latent', () => {
  it('measures the model once, then plans from the cached figures; the result says which batch ran and why', () => {
    const first = edit(path.join(root, 'a.mp4'));
    expect(first.stderr).toBe('');
    expect(first.status).toBe(0);
    const e1 = events(first.stdout);
    expect(e1.some((e) => e.stage === 'measuring memory')).toBe(true);
    const done = e1.find((e) => e.event === 'done')!.result!;
    expect(done.frames).toBe(2);
    const memory = done.memory as Record<string, number | string>;
    expect(memory).toMatchObject({
      batchSize: 1,
      requestedBatchSize: 8,
      reason: 'a 64×64 latent fills the CPU at 1 frame per call',
    });
    expect(memory.estimatedPeakBytes).toBeGreaterThan(100 * 2 ** 20);
    expect(memory.budgetBytes).toBeGreaterThan(memory.estimatedPeakBytes as number);

    const costs = JSON.parse(fs.readFileSync(path.join(home, 'data', 'memory-costs.json'), 'utf8')) as Record<
      string,
      { baseBytes: number; unetItemBytes: number }
    >;
    const entries = Object.entries(costs);
    expect(entries).toHaveLength(1);
    expect(entries[0][0]).toMatch(/\|cpu\|s8\|64x64\|v1$/);
    expect(entries[0][1].baseBytes).toBeGreaterThan(entries[0][1].unetItemBytes);
    expect(entries[0][1].unetItemBytes).toBeGreaterThan(0);

    const second = edit(path.join(root, 'b.mp4'));
    expect(second.status).toBe(0);
    const e2 = events(second.stdout);
    expect(e2.some((e) => e.stage === 'measuring memory')).toBe(false);
    expect(e2.find((e) => e.event === 'done')!.result!.memory).toEqual(
      expect.objectContaining({ batchSize: 1, requestedBatchSize: 8 }),
    );
  });

  it('refuses a job that cannot fit before it starts, and writes nothing', () => {
    const out = path.join(root, 'refused.mp4');
    const r = edit(out, ['--max-memory', '256M']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /reshoot: this edit needs about \d+\.\d GiB at one frame per UNet call \(the model \d+\.\d GiB, \d+\.\d GiB per frame at 64×64 latents\) and the --max-memory limit is 0\.3 GiB; close other applications/,
    );
    // Refused from the cached figures while planning: no progress at all, no file.
    expect(events(r.stdout).filter((e) => e.event === 'progress')).toEqual([]);
    expect(fs.existsSync(out)).toBe(false);
    const bad = reshootEdit({ clip, model, home, args: ['--max-memory', '6 potatoes', '-o', out] });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('--max-memory takes a size with a unit of at least 256M, e.g. --max-memory 6G');
  });

  it('an engine started with --max-memory answers a submission that cannot fit with 422, naming batchSize', async () => {
    // The figures were cached by the first test: the refusal comes at submission, and no job is queued.
    const { proc, url, token } = await startServe(['--model', model, '--max-memory', '300M'], home);
    try {
      const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
      const body = {
        source: { path: clip, in: 0, out: 0.25 },
        prompt: 'a blue square',
        sourcePrompt: 'a red square',
        steps: 1,
      };
      const res = await fetch(`${url}/v1/jobs`, { method: 'POST', headers, body: JSON.stringify(body) });
      const problem = (await res.json()) as Record<string, string>;
      expect(res.status).toBe(422);
      expect(problem).toMatchObject({ title: 'Not enough memory', field: 'batchSize' });
      expect(problem.detail).toMatch(
        /needs about \d+\.\d GiB at one frame per UNet call .* the --max-memory limit is 0\.3 GiB/,
      );
      const jobs = (await (await fetch(`${url}/v1/jobs`, { headers })).json()) as { jobs: unknown[] };
      expect(jobs.jobs).toEqual([]);
    } finally {
      proc.kill();
    }
  });

  it('`reshoot models check` prints the memory a UNet evaluation takes at the native size', () => {
    const env = { ...process.env, RESHOOT_HOME: path.join(root, 'home-check') };
    const json = spawnSync(process.execPath, [CLI, 'models', 'check', model, '--json'], { encoding: 'utf8', env });
    expect(json.status).toBe(0);
    const m = (JSON.parse(json.stdout) as { memory: Record<string, unknown> }).memory;
    expect(m).toMatchObject({ measured: true, latent: 64 });
    expect(m.baseBytes as number).toBeGreaterThan(m.unetItemBytes as number);
    expect(m.unetItemBytes as number).toBeGreaterThan(0);
    const text = spawnSync(process.execPath, [CLI, 'models', 'check', model], { encoding: 'utf8', env });
    const mib = (b: unknown) => Math.round((b as number) / 2 ** 20);
    // The second run reads the cached figures: the same numbers.
    expect(text.stdout).toContain(
      `memory     ${mib(m.baseBytes)} MiB plus ${mib(m.unetItemBytes)} MiB per UNet batch item at 64×64 latents`,
    );
  });

  it('the VAE halves take turns on the CPU: encoding after a decode reopens the encoder and gives the same latents', async () => {
    const dir = path.join(root, 'tiny-sd');
    generateTinySd(dir, 'optimum');
    const model = await loadDiffusionModel(dir, { graphCache: null });
    try {
      const frames = {
        n: 3,
        height: 32,
        width: 48,
        data: Float32Array.from({ length: 3 * 3 * 32 * 48 }, (_, i) => Math.sin(i / 7)),
      };
      const first = await model.encodeImages(frames);
      const decoded = await model.decodeLatents(first, 3, 32 / model.info.vaeScale, 48 / model.info.vaeScale);
      const again = await model.encodeImages(frames);
      const decodedAgain = await model.decodeLatents(again, 3, 32 / model.info.vaeScale, 48 / model.info.vaeScale);
      expect(Buffer.from(again.buffer).equals(Buffer.from(first.buffer))).toBe(true);
      expect(Buffer.from(decodedAgain.data.buffer).equals(Buffer.from(decoded.data.buffer))).toBe(true);
      expect([decoded.n, decoded.height, decoded.width]).toEqual([3, 32, 48]);
    } finally {
      await model.release();
    }
  });
});
