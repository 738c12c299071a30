// Long clips in overlapping chunks. Memory is bounded by the chunk (frames, trajectory, latents), so clip length is
// bounded only by time; but chunks edited independently disagree a little where they meet, and that shows as a
// jump at every seam. Each chunk after the first therefore starts with the last `overlap` source frames of the one
// before, and over those frames the two edits are crossfaded: the newer chunk's weight rises linearly,
// (j + 1)/(overlap + 1) for overlap frame j, so neither chunk's edge frames are used alone.
import type { ImageBatch } from '../diffusion/images';

export interface ChunkSpan {
  /** First frame of the chunk in the clip, overlap included. */
  start: number;
  count: number;
  /** Leading frames that repeat the previous chunk's last frames. */
  lead: number;
}

/** Chunks of `chunk` new frames each, every one after the first preceded by `overlap` frames of the previous. */
export function planChunks(total: number, chunk: number, overlap: number): ChunkSpan[] {
  if (!Number.isInteger(chunk) || chunk < 1) throw new Error(`chunk size must be a positive integer, got ${chunk}`);
  if (!Number.isInteger(overlap) || overlap < 0)
    throw new Error(`chunk overlap must be a non-negative integer, got ${overlap}`);
  const spans: ChunkSpan[] = [];
  for (let s = 0; s < total; s += chunk) {
    const lead = s === 0 ? 0 : Math.min(overlap, s);
    spans.push({ start: s - lead, count: Math.min(chunk, total - s) + lead, lead });
  }
  return spans;
}

/** Weight of the newer chunk at each of `lead` overlap frames. */
export function crossfadeWeights(lead: number): number[] {
  return Array.from({ length: lead }, (_, j) => (j + 1) / (lead + 1));
}

/** A batch of n frames of `per` values each (an ImageBatch's data, a [n, h, w] matte). */
interface Planes {
  n: number;
  per: number;
  data: Float32Array;
}

function tail(p: Planes, count: number): Planes {
  return { n: count, per: p.per, data: p.data.slice((p.n - count) * p.per) };
}

/**
 * Source side: prefixes each decoded chunk with the tail of the previous one. Holds only `overlap` frames. (A
 * user matte is sliced by frame range instead: it is already in memory for the whole range.)
 */
export class OverlapFeeder {
  private last?: ImageBatch;
  constructor(readonly overlap: number) {}

  next(chunk: ImageBatch): { frames: ImageBatch; lead: number } {
    const per = 3 * chunk.height * chunk.width;
    const lead = this.last ? Math.min(this.overlap, this.last.n) : 0;
    const data = new Float32Array((lead + chunk.n) * per);
    if (lead) data.set(this.last!.data.subarray((this.last!.n - lead) * per), 0);
    data.set(chunk.data, lead * per);
    const frames: ImageBatch = { n: lead + chunk.n, height: chunk.height, width: chunk.width, data };
    // A copy of the tail, so the caller may hand `frames` away (transfer it to the worker).
    const keep = Math.min(this.overlap, frames.n);
    this.last = { n: keep, height: chunk.height, width: chunk.width, data: data.slice((frames.n - keep) * per) };
    return { frames, lead };
  }
}

/**
 * Result side: crossfades each edited chunk's leading frames with the previous chunk's held-back tail and returns
 * the frames that are final. The last `overlap` frames of every chunk are held until the next chunk (or flush()).
 * An optional matte per frame ([n, per]) is stitched the same way.
 */
export class OverlapStitcher {
  private held?: { frames: ImageBatch; mask?: Planes };
  constructor(readonly overlap: number) {}

  push(
    edited: ImageBatch,
    lead: number,
    mask?: { data: Float32Array; per: number },
  ): { frames: ImageBatch; mask?: Float32Array } {
    const per = 3 * edited.height * edited.width;
    const data = Float32Array.from(edited.data);
    const m: Planes | undefined = mask && { n: edited.n, per: mask.per, data: Float32Array.from(mask.data) };
    if (lead > 0) {
      const held = this.held;
      if (!held || held.frames.n !== lead)
        throw new Error(`overlap stitcher: chunk repeats ${lead} frames but ${held?.frames.n ?? 0} are held`);
      crossfadeWeights(lead).forEach((wNew, j) => {
        blendInto(data, j * per, held.frames.data, j * per, per, wNew);
        if (m && held.mask) blendInto(m.data, j * m.per, held.mask.data, j * m.per, m.per, wNew);
      });
    }
    const hold = Math.min(this.overlap, edited.n);
    const ready = edited.n - hold;
    this.held = {
      frames: { n: hold, height: edited.height, width: edited.width, data: data.slice(ready * per) },
      mask: m && tail(m, hold),
    };
    return {
      frames: { n: ready, height: edited.height, width: edited.width, data: data.slice(0, ready * per) },
      mask: m && m.data.slice(0, ready * m.per),
    };
  }

  /** The held-back frames of the last chunk (none when nothing is held). */
  flush(): { frames: ImageBatch; mask?: Float32Array } | undefined {
    const held = this.held;
    this.held = undefined;
    if (!held || held.frames.n === 0) return undefined;
    return { frames: held.frames, mask: held.mask?.data };
  }
}

/** dst[d..d+len) ← w·dst + (1 − w)·old[o..o+len). */
function blendInto(dst: Float32Array, d: number, old: Float32Array, o: number, len: number, w: number): void {
  for (let i = 0; i < len; i++) dst[d + i] = w * dst[d + i] + (1 - w) * old[o + i];
}

/**
 * A whole in-memory clip edited chunk by chunk with overlap and crossfade: the same path the job runner takes with a
 * decoder and an encoder, for evaluation and tests. `edit` sees each chunk with its lead frames included.
 */
export async function editInChunks(
  frames: ImageBatch,
  chunk: number,
  overlap: number,
  edit: (chunk: ImageBatch, span: ChunkSpan) => Promise<{ frames: ImageBatch; mask?: Float32Array }>,
): Promise<{ frames: ImageBatch; mask?: Float32Array }> {
  const per = 3 * frames.height * frames.width;
  const stitcher = new OverlapStitcher(overlap);
  const parts: ImageBatch[] = [];
  const masks: Float32Array[] = [];
  let maskPer = 0;
  const collect = (r: { frames: ImageBatch; mask?: Float32Array }) => {
    parts.push(r.frames);
    if (r.mask) masks.push(r.mask);
  };
  for (const span of planChunks(frames.n, chunk, overlap)) {
    const input: ImageBatch = {
      n: span.count,
      height: frames.height,
      width: frames.width,
      data: frames.data.slice(span.start * per, (span.start + span.count) * per),
    };
    const r = await edit(input, span);
    if (r.mask) maskPer = r.mask.length / r.frames.n;
    collect(stitcher.push(r.frames, span.lead, r.mask ? { data: r.mask, per: maskPer } : undefined));
  }
  const last = stitcher.flush();
  if (last) collect(last);
  const out = new Float32Array(frames.n * per);
  let at = 0;
  for (const p of parts) {
    out.set(p.data, at);
    at += p.data.length;
  }
  let mask: Float32Array | undefined;
  if (masks.length) {
    mask = new Float32Array(frames.n * maskPer);
    let mAt = 0;
    for (const m of masks) {
      mask.set(m, mAt);
      mAt += m.length;
    }
  }
  return { frames: { n: frames.n, height: frames.height, width: frames.width, data: out }, mask };
}
