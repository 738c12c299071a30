// The memory plan (jobs/memory-plan.ts, models/memory-probe.ts) on a model of Stable Diffusion's latent size
// (sd-bench: 64×64 latents at its native 512 px): the first job measures the model in a child process and caches the
// figures, a second job reuses them, the batch the job used is in its result, a job that cannot fit is refused before
// it decodes anything, and `reshoot models check` prints the figures at the native size.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AttentionSpec } from '../../engine/src/api/schemas';
import type { CrossFrameParams } from '../../engine/src/editing/types';
import { planMemory, tokenFlowChunkFrames, unetWeightsBytes, type PlanInput } from '../../engine/src/jobs/memory-plan';
import { makeTestClip } from '../../engine/src/media';
import type { MemoryCost } from '../../engine/src/models/memory-probe';
import { generateSdBench, generateTinySd } from '../../engine/src/models/generate/tiny-sd';
import { loadDiffusionModel, type ModelInfo } from '../../engine/src/models/sd-model';
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

describe('the memory plan with cross-frame attention (sized from what the stage holds, not measured)', () => {
  const MiB = 2 ** 20;
  let info: ModelInfo;
  /** sd-bench's measured cost at 64×64 latents, as `reshoot models check` reports it. */
  let cost: MemoryCost;
  beforeAll(async () => {
    const m = await loadDiffusionModel(model, { threads: 1, graphCache: null });
    info = m.info;
    await m.release();
    const env = { ...process.env, RESHOOT_HOME: path.join(root, 'home-check') };
    const check = spawnSync(process.execPath, [CLI, 'models', 'check', model, '--json'], { encoding: 'utf8', env });
    cost = (JSON.parse(check.stdout) as { memory: MemoryCost }).memory;
  }, 120_000);

  /** Guidance 7.5 with direct inversion: 4 UNet items a frame, as in docs/BENCHMARKS.md. */
  const req = (crossFrame: CrossFrameParams | null, batchSize = 8): PlanInput['req'] => ({
    batchSize,
    method: 'inversion',
    guidance: 7.5,
    prompt: 'a blue car',
    sourcePrompt: 'a red car',
    directInversion: true,
    attention: { crossFrame, reweight: [], structure: 0, wordSwap: null, tokenFlow: null },
  });
  const FIRST: CrossFrameParams = { anchors: 'first', mode: 'extend', layers: 'all' };
  const budget = (limitBytes?: number) => ({
    availableBytes: 64 * 2 ** 30,
    processBytes: 0,
    totalBytes: 128 * 2 ** 30,
    ...(limitBytes ? { limitBytes } : {}),
  });
  const plan = (r: PlanInput['req'], latent: number, c: MemoryCost, limitBytes?: number) =>
    planMemory({
      req: r,
      model: info,
      latent: { height: latent, width: latent },
      mediaBytes: 0,
      cost: c,
      budget: budget(limitBytes),
    });
  const peakOf = (o: ReturnType<typeof planMemory>) => (o.ok ? o.memory.estimatedPeakBytes! : NaN);

  it('gives a cross-frame job fewer frames per call where the plain job fits all it asked for', () => {
    // 32×32 latents, where the CPU rule allows 4 frames a call; a cost of that size's order (not measured here).
    const small = { ...cost, baseBytes: 300 * MiB, unetItemBytes: 12 * MiB };
    const limit = 520 * MiB;
    const plain = plan(req(null, 4), 32, small, limit);
    const banked = plan(req(FIRST, 4), 32, small, limit);
    expect(plain).toMatchObject({ ok: true, memory: { batchSize: 4, reason: 'as requested' } });
    expect(banked.ok && banked.memory.batchSize).toBe(2);
    expect(banked.ok && banked.memory.reason).toBe(
      '2 frames per call fit in the --max-memory limit of 0.5 GiB with cross-frame attention',
    );
    // One frame per call with the previous frame as an anchor, whatever the batch: its bank does not grow with it.
    const previous = plan(req({ ...FIRST, anchors: 'first+previous' }, 4), 32, small, 2 * limit);
    expect(previous.ok && previous.memory.batchSize).toBe(4);
  });

  it('counts joint attention ("all") quadratically in the frames per call', () => {
    const all: CrossFrameParams = { anchors: 'all', mode: 'extend', layers: 'all' };
    // 32×32 latents, where the CPU rule allows 4 frames a call (at 64×64 it allows one).
    const small = { ...cost, baseBytes: 300 * MiB, unetItemBytes: 12 * MiB };
    const at = (frames: number) => peakOf(plan(req(all, frames), 32, small));
    const first = (frames: number) => peakOf(plan(req(FIRST, frames), 32, small));
    // One frame per call: alone in its branch's group, so only the rewritten session's own memory comes on top.
    expect(at(1)).toBeGreaterThan(peakOf(plan(req(null, 1), 32, small)));
    // The growth from 2 to 4 frames per call is more than twice the growth from 1 to 2 (quadratic), unlike "first".
    expect(at(4) - at(2)).toBeGreaterThan(2 * (at(2) - at(1)));
    expect(first(4) - first(2)).toBeCloseTo(2 * (first(2) - first(1)), -3);
    // A limit where "first" keeps its 4 frames a call cuts the joint job's batch.
    const limit = Math.max(first(4), at(2)) + 1;
    const joint = plan(req(all, 4), 32, small, limit);
    expect(joint.ok && joint.memory.batchSize).toBeLessThan(4);
    const refused = AttentionSpec.safeParse({ crossFrame: { anchors: 'all', mode: 'replace' } });
    expect(refused.error?.issues[0].path).toEqual(['crossFrame', 'mode']);
    expect(refused.error?.issues[0].message).toMatch(/mode "replace" drops the frame's own keys, which anchors "all"/);
  });

  it('counts TokenFlow: its keyframes held and run jointly, so more frames in a chunk cost more at any batch', () => {
    const small = { ...cost, baseBytes: 300 * MiB, unetItemBytes: 12 * MiB };
    const tokenFlow = (keyframeEvery: number, chunkFrames: number, batchSize = 1) =>
      peakOf(
        planMemory({
          req: { ...req(null, batchSize), attention: { ...req(null).attention!, tokenFlow: { keyframeEvery } } },
          model: info,
          latent: { height: 32, width: 32 },
          mediaBytes: 0,
          cost: small,
          budget: budget(),
          chunkFrames,
        }),
      );
    const plain = peakOf(plan(req(null, 1), 32, small));
    // One keyframe: the rewritten session, the fed keyframe tensors and one more call's working memory.
    expect(tokenFlow(8, 8)).toBeGreaterThan(plain + small.unetItemBytes);
    // Four keyframes instead of two: held tensors grow linearly, the joint call quadratically.
    const growth2 = tokenFlow(4, 8) - tokenFlow(8, 8);
    const growth4 = tokenFlow(2, 8) - tokenFlow(4, 8);
    expect(growth2).toBeGreaterThan(0);
    expect(growth4).toBeGreaterThan(2 * growth2);
  });

  it('gives TokenFlow the largest chunk whose keyframe call and held keyframes fit in a quarter of the room', () => {
    const chunk = (frameCount: number, limitBytes: number, latent = 64) =>
      tokenFlowChunkFrames({
        req: { ...req(null, 1), attention: { ...req(null).attention!, tokenFlow: { keyframeEvery: 8 } } },
        model: info,
        latent: { height: latent, width: latent },
        mediaBytes: 0,
        cost,
        budget: budget(limitBytes),
        frameCount,
        overlap: 4,
      });
    // 64 frames at 64×64 latents (sd-bench, 4 branches): 8 keyframes a call attend to each other, ~12 GiB of scores.
    expect(chunk(200, 64 * 2 ** 30)).toBe(64);
    expect(chunk(200, 16 * 2 ** 30)).toBeLessThan(64);
    expect(chunk(200, 16 * 2 ** 30)).toBeGreaterThan(16);
    // Nothing fits: TokenFlow still runs, per 16-frame chunk like every other method.
    expect(chunk(200, 1 * 2 ** 30)).toBe(16);
    // Never more than the range.
    expect(chunk(20, 64 * 2 ** 30)).toBe(20);
    expect(chunk(10, 1 * 2 ** 30)).toBe(10);
  });

  it('refuses a cross-frame job that cannot fit where the plain job does, saying what cross-frame attention adds', () => {
    const plainPeak = peakOf(plan(req(null), 64, cost));
    const bankedPeak = peakOf(plan(req(FIRST), 64, cost));
    const limit = (plainPeak + bankedPeak) / 2;
    expect(plan(req(null), 64, cost, limit)).toMatchObject({ ok: true, memory: { batchSize: 1 } });
    const refused = plan(req(FIRST), 64, cost, limit);
    expect(refused.ok).toBe(false);
    expect(!refused.ok && refused.detail).toMatch(
      /^this edit needs about \d+\.\d GiB at one frame per UNet call \(the model \d+\.\d GiB, \d+\.\d GiB per frame at 64×64 latents, and \d+\.\d GiB more for cross-frame attention: the UNet rewritten for it runs as a second session with its own copy of the weights, and the anchor frames' keys and values and the wider attention scores come on top\) and the --max-memory limit is \d+\.\d GiB; turn attention\.crossFrame off or limit it to the decoder's layers \(layers "decoder"\), close other applications/,
    );
  });

  it('counts the second session of structure lock, word swap, re-weighting and the attention mask, not a bank', () => {
    const plain = plan(req(null), 64, cost);
    const weights = unetWeightsBytes(info);
    expect(weights).toBeGreaterThan(0);
    const variants: PlanInput['req'][] = [
      { ...req(null), attention: { crossFrame: null, reweight: [], structure: 0.8, wordSwap: null, tokenFlow: null } },
      {
        ...req(null),
        attention: { crossFrame: null, reweight: [], structure: 0, wordSwap: { steps: 0.8 }, tokenFlow: null },
      },
      {
        ...req(null),
        attention: {
          crossFrame: null,
          reweight: [{ word: 'blue', scale: 2 }],
          structure: 0,
          wordSwap: null,
          tokenFlow: null,
        },
      },
      { ...req(null), mask: { type: 'auto', from: 'attention' } },
    ];
    // A second session: its weights, and working memory of its own beside what the base session keeps from the
    // inversion and the mask (the same for all four: none has a bank).
    const peaks = variants.map((r) => peakOf(plan(r, 64, cost)));
    for (const p of peaks) expect(p).toBe(peaks[0]);
    expect(peaks[0]).toBeGreaterThan(peakOf(plain) + weights);
    expect(peaks[0]).toBeLessThan(peakOf(plan(req(FIRST), 64, cost)));
    // The DiffEdit mask runs in the base session.
    expect(peakOf(plan({ ...req(null), mask: { type: 'auto', from: 'difference' } }, 64, cost))).toBe(peakOf(plain));
    const refused = plan(variants[0], 64, cost, (peakOf(plain) + peaks[0]) / 2);
    expect(!refused.ok && refused.detail).toMatch(
      /more for the attention methods: the UNet rewritten for them runs as a second session with its own copy of the weights\) .*; turn the attention methods off, close other applications/,
    );
  });

  it('estimates what docs/BENCHMARKS.md measured cross-frame attention to add, to within its order', () => {
    // docs/BENCHMARKS.md "Cross-frame attention" (sd-bench, 512 px, one frame per call, guidance 7.5 with direct
    // inversion, 8 slices): peak RSS 566 MiB off; +441 MiB first/extend/all layers, +464 first/replace, +674
    // first+previous/replace, +421 first/extend/decoder. The plan's increase at one frame per call, with the costs
    // measured here (about 327 MiB base, 50 MiB an item on the build machine), came out at +333, +333, +525 and +297
    // MiB: 0.70–0.78 of the measured figures. The measured runs also kept the previous frame's K/V with anchors
    // "first" (28 MiB here, no longer kept), and what is not counted is the garbage the K/V copies of every call leave
    // until V8 collects it, and the arenas' growth in blocks; the plan's margin (a tenth of the machine, ≥ 512 MiB)
    // covers that much.
    const plainPeak = peakOf(plan(req(null, 1), 64, cost));
    const measured: [CrossFrameParams, number][] = [
      [FIRST, 441],
      [{ ...FIRST, mode: 'replace' }, 464],
      [{ anchors: 'first+previous', mode: 'replace', layers: 'all' }, 674],
      [{ ...FIRST, layers: 'decoder' }, 421],
    ];
    for (const [cf, mib] of measured) {
      const added = (peakOf(plan(req(cf, 1), 64, cost)) - plainPeak) / MiB;
      console.log(`${cf.anchors}/${cf.mode}/${cf.layers}: the plan adds ${added.toFixed(0)} MiB, measured ${mib} MiB`);
      expect(added).toBeGreaterThan(0.5 * mib);
      expect(added).toBeLessThan(1.5 * mib);
    }
  });

  it('`reshoot edit --cross-frame` is refused before it starts at a limit the plain edit fits in', () => {
    // The limit halfway between the two plans, from the figures the first test cached in `home`.
    const costs = JSON.parse(fs.readFileSync(path.join(home, 'data', 'memory-costs.json'), 'utf8')) as Record<
      string,
      MemoryCost
    >;
    const cached = Object.values(costs)[0];
    const limitMiB = Math.round((peakOf(plan(req(null), 64, cached)) + peakOf(plan(req(FIRST), 64, cached))) / 2 / MiB);
    const out = path.join(root, 'cross-frame-refused.mp4');
    const r = edit(out, ['--cross-frame', 'first', '--max-memory', `${limitMiB}M`]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/more for cross-frame attention: the UNet rewritten for it runs as a second session/);
    expect(r.stderr).toContain(`turn --cross-frame off or limit it to the decoder's layers (layers "decoder")`);
    expect(events(r.stdout).filter((e) => e.event === 'progress')).toEqual([]);
    expect(fs.existsSync(out)).toBe(false);
  });
});
