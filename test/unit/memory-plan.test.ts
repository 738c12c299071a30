import type { JobRequest } from '../../engine/src/api/schemas';
import {
  CPU_TOKENS_PER_CALL,
  itemsPerFrame,
  marginBytes,
  planMemory,
  type PlanInput,
} from '../../engine/src/jobs/memory-plan';
import type { ModelInfo } from '../../engine/src/models/sd-model';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

/** The fields the plan reads; a model of SD's size (512 px native, VAE factor 8) unless told otherwise. */
function model(o: Partial<Pick<ModelInfo, 'nativeSize' | 'vaeScale' | 'provider' | 'attention'>> = {}): ModelInfo {
  const attention = {
    pattern: 'split-heads',
    sites: [{ module: 'down_blocks.0', kind: 'self', resolution: 1, heads: 8 }],
    slices: 8,
  };
  return { nativeSize: 512, vaeScale: 8, provider: 'cpu', attention, ...o } as ModelInfo;
}

const req = (o: Partial<PlanInput['req']> = {}): PlanInput['req'] => ({
  batchSize: 4,
  method: 'inversion',
  guidance: 7.5,
  prompt: 'a blue car',
  sourcePrompt: 'a red car',
  directInversion: true,
  ...o,
});

const cost = { baseBytes: 500 * MiB, unetItemBytes: 50 * MiB, measuredAt: '2026-12-07T00:00:00Z', measureMs: 1 };
const plenty = { availableBytes: 16 * GiB, processBytes: 1 * GiB, totalBytes: 24 * GiB };

function plan(o: Partial<PlanInput>) {
  return planMemory({
    req: req(),
    model: model(),
    latent: { height: 64, width: 64 },
    mediaBytes: 0,
    budget: plenty,
    ...o,
  });
}

describe('memory plan', () => {
  it('counts the UNet items of a frame from the branches the edit really runs', () => {
    expect(itemsPerFrame(req())).toBe(4);
    expect(itemsPerFrame(req({ guidance: 1 }))).toBe(2);
    expect(itemsPerFrame(req({ directInversion: false }))).toBe(2);
    // An empty source prompt is the unconditional prompt: the source branch's two evaluations are one.
    expect(itemsPerFrame(req({ sourcePrompt: '' }))).toBe(3);
    expect(itemsPerFrame(req({ method: 'sdedit' as JobRequest['method'] }))).toBe(2);
    expect(itemsPerFrame(req({ method: 'fast' as JobRequest['method'] }))).toBe(1);
  });

  it('on CPU, a large latent takes one frame per call, a small one the requested batch', () => {
    const big = plan({ cost });
    expect(big).toMatchObject({ ok: true, memory: { batchSize: 1, requestedBatchSize: 4 } });
    if (big.ok) expect(big.memory.reason).toBe('a 64×64 latent fills the CPU at 1 frame per call');
    const small = plan({ latent: { height: 32, width: 32 }, cost });
    expect(small).toMatchObject({
      ok: true,
      memory: { batchSize: CPU_TOKENS_PER_CALL / 1024, reason: 'as requested' },
    });
  });

  it('a GPU keeps the requested batch; a small model is neither capped nor measured', () => {
    expect(plan({ model: model({ provider: 'cuda' }) })).toMatchObject({
      ok: true,
      memory: { batchSize: 4, reason: 'as requested (cuda memory is not measured)' },
    });
    const tiny = plan({ model: model({ nativeSize: 128, vaeScale: 8 }) });
    expect(tiny).toEqual({ ok: true, memory: { batchSize: 4, requestedBatchSize: 4, reason: 'as requested' } });
    // The oracle: latents the size of its 128-px frames, and no attention to blow up.
    const oracle = plan({
      model: model({ nativeSize: 128, vaeScale: 1, attention: { pattern: 'none', sites: [], slices: 1 } }),
    });
    expect(oracle).toEqual({ ok: true, memory: { batchSize: 4, requestedBatchSize: 4, reason: 'as requested' } });
  });

  it('lowers the batch until the estimate fits the limit, and says so', () => {
    // 32² latent: 4 frames would be fast. Each frame costs 4 items × 50 MiB; the limit leaves room for two frames.
    const limit = 500 * MiB + 2 * 200 * MiB + 64 * MiB;
    const r = plan({
      latent: { height: 32, width: 32 },
      cost,
      mediaBytes: 64 * MiB,
      budget: { ...plenty, limitBytes: limit },
    });
    expect(r).toEqual({
      ok: true,
      memory: {
        batchSize: 2,
        requestedBatchSize: 4,
        reason: '2 frames per call fit in the --max-memory limit of 0.9 GiB',
        estimatedPeakBytes: limit,
        budgetBytes: limit,
      },
    });
  });

  it('free memory counts what the engine holds already, less a margin for other applications', () => {
    expect(marginBytes(24 * GiB)).toBeCloseTo(2.4 * GiB);
    expect(marginBytes(2 * GiB)).toBe(512 * MiB);
    const budget = { availableBytes: 0.2 * GiB, processBytes: 0.9 * GiB, totalBytes: 2 * GiB };
    // 0.9 + 0.2 − 0.5 = 0.6 GiB: room for the model and one frame (0.49 + 0.2), not two.
    const r = plan({ latent: { height: 32, width: 32 }, cost: { ...cost, baseBytes: 0.4 * GiB }, budget });
    expect(r).toMatchObject({ ok: true, memory: { batchSize: 1, reason: '1 frame per call fits in free memory' } });
  });

  it('refuses a job that does not fit one frame per call, with what it needs and what to do', () => {
    const r = plan({ cost, budget: { ...plenty, limitBytes: 600 * MiB } });
    expect(r.ok).toBe(false);
    if (!r.ok)
      expect(r.detail).toBe(
        'this edit needs about 0.7 GiB at one frame per UNet call (the model 0.5 GiB, 0.2 GiB per frame at 64×64 ' +
          'latents) and the --max-memory limit is 0.6 GiB; close other applications, raise the limit, use more ' +
          'attention slices (--attention-slices 16), or run the job on a machine with more memory',
      );
    const free = plan({ cost, budget: { availableBytes: 0.1 * GiB, processBytes: 0.6 * GiB, totalBytes: 4 * GiB } });
    expect(free.ok).toBe(false);
    if (!free.ok)
      expect(free.detail).toContain(
        "0.1 GiB is free besides the engine's 0.6 GiB, and 0.5 GiB is kept for other applications",
      );
  });
});
