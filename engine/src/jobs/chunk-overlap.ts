// The job runner's side of the temporal-consistency stages: overlapping chunks crossfaded at the seams (long-clip.ts),
// the automatic mask written out as a matte sequence, and with cross-frame attention the clip's anchor frame carried
// from the first chunk to every later one. Kept out of runner.ts so the runner only calls it.
import { ConsistencySpec, type JobRequest } from '../api/schemas';
import type { ImageBatch, MaskBatch } from '../diffusion/images';
import type { ConsistencyParams } from '../editing/types';
import { OverlapFeeder, OverlapStitcher, type CarriedAnchor, type ChunkCarry } from '../editing/long-clip';
import { MatteSequenceWriter } from './matte-output';

/** Final frames, with the automatic mask stitched the same way ([n, latent h, latent w]) when the job has one. */
export type StitchedFrames = ImageBatch & { matte?: MaskBatch };

export class ChunkOverlap {
  /** What the edit loop takes (the chunk overlap is the runner's business, not the loop's). */
  readonly consistency?: ConsistencyParams;
  private readonly feeder: OverlapFeeder;
  private readonly stitcher: OverlapStitcher;
  private readonly matte?: MatteSequenceWriter;
  private readonly latentH: number;
  private readonly latentW: number;
  /** Whether chunks carry the clip's anchor frame (cross-frame attention), and the anchor once the first kept it. */
  private readonly carries: boolean;
  private anchor?: CarriedAnchor;

  constructor(
    req: JobRequest,
    o: { outputPath: string; width: number; height: number; outWidth: number; outHeight: number; vaeScale: number },
  ) {
    const inversion = req.method === 'inversion';
    const c = req.consistency ?? ConsistencySpec.parse({});
    // Seams come only from the stages that look at neighbouring frames, which only the inversion edit has.
    const overlap = inversion ? c.chunkOverlap : 0;
    if (inversion)
      this.consistency = {
        ...c,
        latentCorrection: c.latentCorrection && {
          steps: c.latentCorrection.steps,
          weights: [...c.latentCorrection.weights],
        },
      };
    // Every cross-frame anchor scheme reads the clip's frame 0; the previous frame of a chunk's first new frame is
    // one of its overlap frames already.
    // Anchors "all" read the frames of their own call only: there is no clip anchor to carry.
    this.carries = inversion && !!req.attention?.crossFrame && req.attention.crossFrame.anchors !== 'all';
    this.feeder = new OverlapFeeder(overlap);
    this.stitcher = new OverlapStitcher(overlap);
    this.latentH = o.height / o.vaeScale;
    this.latentW = o.width / o.vaeScale;
    if (inversion && req.mask.type === 'auto')
      this.matte = new MatteSequenceWriter(o.outputPath, o.outWidth, o.outHeight, req.output?.overwrite ?? false);
  }

  /** The chunk to edit: the decoded frames preceded by `lead` frames of the previous chunk. */
  next(chunk: ImageBatch): { frames: ImageBatch; lead: number } {
    return this.feeder.next(chunk);
  }

  /** What the next chunk's task carries: the first keeps the clip's frame 0 as the anchor, the later ones run it. */
  carry(): ChunkCarry | undefined {
    if (!this.carries) return undefined;
    return this.anchor ? { anchor: this.anchor } : { keep: 1 };
  }

  /** Takes the anchor the first chunk kept; the worker hands it back whenever the carry asked for it. */
  took(result: { anchor?: CarriedAnchor }): void {
    if (!this.carries || this.anchor) return;
    if (!result.anchor) throw new Error('the first chunk did not hand back its anchor frame for cross-frame attention');
    this.anchor = result.anchor;
  }

  /** The frames that are final after this chunk (its overlap crossfaded with the previous one's held tail). */
  stitch(result: { frames: ImageBatch; latentMask?: Float32Array }, lead: number): StitchedFrames {
    const per = this.latentH * this.latentW;
    const mask =
      this.matte && result.latentMask?.length === result.frames.n * per ? { data: result.latentMask, per } : undefined;
    const ready = this.stitcher.push(result.frames, lead, mask);
    if (ready.mask) this.matte!.write(ready.mask, ready.frames.n, this.latentH, this.latentW);
    return this.withMatte(ready.frames, ready.mask);
  }

  /** The last chunk's held-back frames. */
  flush(): StitchedFrames | undefined {
    const last = this.stitcher.flush();
    if (last?.mask) this.matte!.write(last.mask, last.frames.n, this.latentH, this.latentW);
    return last && this.withMatte(last.frames, last.mask);
  }

  private withMatte(frames: ImageBatch, mask?: Float32Array): StitchedFrames {
    return mask ? { ...frames, matte: { n: frames.n, height: this.latentH, width: this.latentW, data: mask } } : frames;
  }

  /** Moves the matte sequence into place; its pattern, or undefined when the job made none. */
  finish(): string | undefined {
    if (!this.matte) return undefined;
    if (this.matte.frames === 0) {
      this.matte.abort();
      return undefined;
    }
    return this.matte.finish();
  }

  abort(): void {
    this.matte?.abort();
  }
}
