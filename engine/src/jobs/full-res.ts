// The runner's output side. With full-resolution compositing (the default, `output.composite: "full"`) the model
// works at its size but the result is built at the source's display size from the source's own pixels:
//
//     out = source + matte · upscale(edit − reconstruction)            (media/composite.ts)
//
// The source range is decoded a second time, at the display size as raw bytes (rgb24, or rgb48le for deeper
// sources), by a second ffmpeg that streams alongside the working-size decode with exactly the same frame selection
// (one DecodeOptions object, only the size differs). It is pulled one frame at a time, only as far as the stitched,
// final working-size frames go (chunk-overlap.ts decides which are final), composited in place and written to the
// encoder at full size, which then no longer scales. Memory: one full-size frame in hand and one decoding ahead,
// whatever the size or length of the clip.
//
// `output.composite: "working"` keeps the old path: the model's frames, scaled up by the encoder.
import type { ImageBatch, MaskBatch } from '../diffusion/images';
import { compositeFrame, subtractInto, type MattePlane } from '../media/composite';
import { decodeFrameBytes, type DecodeOptions, type RawChunk } from '../media/decode';
import type { Encoder } from '../media/encode';
import type { StitchedFrames } from './chunk-overlap';

/** Rows composited between two yields to the event loop (about 15 ms of work at 4K). */
const BAND_ROWS = 270;

export interface OutputSink {
  /**
   * What the runner stitches, made from an edit result: with full compositing the frames become edit −
   * reconstruction (in place; the crossfade at chunk seams is linear, so stitching deltas is stitching edits).
   */
  prepare<T extends { frames: ImageBatch; reconstruction?: ImageBatch }>(result: T): T;
  /** Writes stitched, final frames in order. */
  write(ready: StitchedFrames): Promise<void>;
  /** After the last write: checks every frame went out and stops the second decoder. */
  finish(): Promise<void>;
  abort(): Promise<void>;
  /** Time spent compositing (upscale + add) so far. */
  readonly compositeMs: number;
  /** Whether the worker must return the reconstruction (EditParams.reconstruct). */
  readonly reconstruct: boolean;
}

/** The model's frames as they are; the encoder scales them to the output size. */
export function workingSizeOutput(encoder: Encoder): OutputSink {
  return {
    prepare: (r) => r,
    write: (ready) => encoder.write(ready),
    finish: async () => undefined,
    abort: async () => undefined,
    compositeMs: 0,
    reconstruct: false,
  };
}

export interface FullResOptions {
  file: string;
  /** The working-size decode's options with width/height set to the display size; chunkFrames is ignored. */
  decode: DecodeOptions;
  encoder: Encoder;
  /** The user's matte (box or file) at any size, for the whole range (n = 1: one for every frame). */
  mask?: MaskBatch;
}

/** One raw frame at a time from the full-size decode, with the next one in flight. */
class FramePuller {
  private readonly it: AsyncGenerator<RawChunk, void, undefined>;
  private next: Promise<IteratorResult<RawChunk, void>>;
  private closed = false;
  constructor(source: AsyncGenerator<RawChunk, void, undefined>) {
    this.it = source;
    // Starts ffmpeg now: the first frames decode while the first chunk is being edited.
    this.next = handled(this.it.next());
  }
  async take(): Promise<Buffer> {
    const r = await this.next;
    if (r.done) throw new Error('the full-size decode ended before the working-size one');
    if (!this.closed) this.next = handled(this.it.next());
    return r.value.data;
  }
  /** Ends the decoder (ffmpeg is killed if it is still running) once the read in flight has settled. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.next.catch(() => undefined);
    await this.it.return();
  }
  /** True when the decoder has delivered everything (its next read reports the end). */
  async ended(): Promise<boolean> {
    return (await this.next).done === true;
  }
}

export function fullResOutput(o: FullResOptions): OutputSink {
  const { width, height } = o.decode;
  const deep = o.decode.bitDepth === 16;
  const frames = new FramePuller(decodeFrameBytes(o.file, { ...o.decode, chunkFrames: 1 }));
  const little = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
  let written = 0;
  let compositeMs = 0;
  const userMatte = (k: number): MattePlane | undefined => {
    const m = o.mask;
    if (!m) return undefined;
    const per = m.height * m.width;
    const f = m.n === 1 ? 0 : k;
    if (f >= m.n) throw new Error(`the mask has ${m.n} frames; frame ${k} has none`);
    return { height: m.height, width: m.width, data: m.data.subarray(f * per, (f + 1) * per) };
  };
  return {
    reconstruct: true,
    get compositeMs() {
      return compositeMs;
    },
    prepare(r) {
      if (!r.reconstruction)
        throw new Error(
          'full-resolution compositing needs the reconstruction of the source; the compute worker returned none',
        );
      if (
        r.reconstruction.width !== r.frames.width ||
        r.reconstruction.height !== r.frames.height ||
        r.reconstruction.n !== r.frames.n
      ) {
        throw new Error(
          `reconstruction ${r.reconstruction.n}x${r.reconstruction.width}x${r.reconstruction.height} does not match the edit ${r.frames.n}x${r.frames.width}x${r.frames.height}`,
        );
      }
      subtractInto(r.frames.data, r.reconstruction.data);
      return r;
    },
    async write(ready) {
      for (let f = 0; f < ready.n; f++) {
        const bytes = await frames.take();
        let t = performance.now();
        let view: Uint8Array | Uint16Array;
        let swap = false;
        if (deep) {
          // rgb48le: 16-bit samples; a typed view needs even alignment and the host's byte order.
          const aligned = bytes.byteOffset % 2 === 0 ? bytes : Buffer.from(bytes);
          swap = !little;
          if (swap) aligned.swap16();
          view = new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2);
        } else view = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        const m = ready.matte;
        const matte = m
          ? {
              height: m.height,
              width: m.width,
              data: m.data.subarray(f * m.height * m.width, (f + 1) * m.height * m.width),
            }
          : userMatte(written);
        // In bands of rows, yielding between them: the main thread also answers HTTP, and a 4K frame takes ~0.1 s.
        for (let from = 0; from < height; from += BAND_ROWS) {
          if (from > 0) {
            compositeMs += performance.now() - t;
            await new Promise<void>((res) => setImmediate(res));
            t = performance.now();
          }
          compositeFrame(view, ready, f, matte, {
            width,
            height,
            bitDepth: deep ? 16 : 8,
            rows: { from, to: from + BAND_ROWS },
          });
        }
        const out = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
        if (swap) Buffer.from(out.buffer, out.byteOffset, out.byteLength).swap16();
        compositeMs += performance.now() - t;
        await o.encoder.writeRaw(out, 1);
        written++;
      }
    },
    async finish() {
      if (written !== o.decode.frameCount)
        throw new Error(`wrote ${written} full-size frames, expected ${o.decode.frameCount}`);
      if (!(await frames.ended())) throw new Error('the full-size decode has more frames than the working-size one');
      await frames.close();
    },
    abort: () => frames.close(),
  };
}

/** The promise, with its rejection marked as handled: it is awaited later, or the job has already failed. */
function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}
