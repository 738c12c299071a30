// From a job's request to the worker task of its method, one chunk at a time. The table is keyed by the contract's
// METHODS, so a method added there does not compile until it says here which pipeline runs it and with what.
import type { JobRequest } from '../api/schemas';
import type { ImageBatch, MaskBatch } from '../diffusion/images';
import type { ChunkCarry } from '../editing/long-clip';
import type { ConsistencyParams } from '../editing/types';
import type { MethodTask } from '../worker/protocol';

export interface ChunkTask {
  req: JobRequest;
  /** Frames per UNet call: the memory plan's, at most the request's batchSize. */
  batchSize: number;
  frames: ImageBatch;
  mask: MaskBatch | undefined;
  strength: number;
  seed: number;
  reconstruct: boolean;
  consistency: ConsistencyParams | undefined;
  /** Where trajectories are cached, and the key of this chunk's (first frame, count, size, model, prompt, steps). */
  cache?: { dir: string; maxBytes: number; key: () => string };
  /** Cross-frame attention across chunks: the clip's anchor frame kept from the first chunk, carried by the rest. */
  carry?: ChunkCarry;
}

const TASKS: { [M in JobRequest['method']]: (c: ChunkTask) => MethodTask } = {
  inversion: (c) => ({
    kind: 'inversion-edit',
    frames: c.frames,
    params: {
      ...common(c),
      sourcePrompt: c.req.sourcePrompt,
      directInversion: c.req.directInversion,
      autoMask:
        c.req.mask.type === 'auto' ? { threshold: c.req.mask.threshold ?? 0.5, from: c.req.mask.from } : undefined,
      consistency: c.consistency,
      crossFrame: c.req.attention?.crossFrame,
      reweight: c.req.attention?.reweight,
      structure: c.req.attention?.structure,
      wordSwap: c.req.attention?.wordSwap,
      tokenFlow: c.req.attention?.tokenFlow,
      steps: c.req.steps,
      strength: c.strength,
    },
    // The worker reads and writes the cache itself: on a hit it edits from the stored trajectory.
    cache: c.cache && { dir: c.cache.dir, maxBytes: c.cache.maxBytes, key: c.cache.key() },
    ...(c.carry ? { carry: c.carry } : {}),
  }),
  sdedit: (c) => ({
    kind: 'sdedit',
    frames: c.frames,
    params: { ...common(c), steps: c.req.steps, strength: c.strength, seed: c.seed },
  }),
  fast: (c) => ({
    kind: 'fast',
    frames: c.frames,
    params: { ...common(c), steps: c.req.fast?.steps ?? 2, strength: c.strength, seed: c.seed },
  }),
};

function common(c: ChunkTask) {
  return {
    prompt: c.req.prompt,
    guidance: c.req.guidance,
    batchSize: c.batchSize,
    mask: c.mask,
    reconstruct: c.reconstruct,
  };
}

export function chunkTask(c: ChunkTask): MethodTask {
  return TASKS[c.req.method](c);
}
