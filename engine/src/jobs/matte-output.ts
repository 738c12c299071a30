// The automatic mask handed back with a job's result, so the user can see (and reuse) what the edit was allowed to
// change: a PNG sequence next to the output, one 8-bit matte per output frame at the output's size, white = edited.
// A sequence rather than a matte video because it is lossless (H.264's 4:2:0 would smear a 1-pixel soft edge) and
// Premiere imports it as a clip; the printf pattern is exactly what `mask: { type: "file", path }` accepts back.
// Written into a hidden temporary folder and renamed into place when the job succeeds, like the video itself. The folder
// is `<output>.matte` (the output's whole name, so clip.mp4 and clip.mov do not share one) and obeys the output's
// overwrite rule: an existing one is refused, and with overwrite only a previous matte sequence is replaced, never a
// folder holding anything else, a file or a symbolic link.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { removeQuietly, renameIntoPlaceSync } from '../config/atomic-rename';
import { resizeMask } from '../editing/masks/mask-ops';
import { encodePng } from '../media/png';

/** Where a job writing `outputPath` puts its matte sequence. */
export function matteFolderOf(outputPath: string): string {
  return `${outputPath}.matte`;
}

const MATTE_NAME = /^matte_\d{6}\.png$/;

/**
 * Why the matte folder of `outputPath` may not be written, or undefined. Without overwrite nothing may be there;
 * with it, only a folder of matte_NNNNNN.png images (an earlier result's matte) is replaced.
 */
export function matteFolderProblem(outputPath: string, overwrite: boolean): string | undefined {
  const dir = matteFolderOf(outputPath);
  let st: fs.Stats;
  try {
    st = fs.lstatSync(dir);
  } catch {
    return undefined;
  }
  const what = st.isSymbolicLink() ? 'a symbolic link' : st.isDirectory() ? 'a folder' : 'a file';
  if (!overwrite)
    return `${dir} already exists (${what}); the automatic mask's matte sequence goes there. Choose another output name, or allow overwriting it`;
  if (!st.isDirectory() || st.isSymbolicLink() || fs.readdirSync(dir).some((name) => !MATTE_NAME.test(name))) {
    return `${dir} is ${what} that is not a matte sequence Reshoot wrote, so it is not replaced even with overwrite. Move it, or choose another output name`;
  }
  return undefined;
}

/** Hidden temp folders a matte writer leaves when the process dies mid-job (see removePartialOutputs). */
export function partialMattePrefix(outputPath: string): string {
  return `.${path.basename(matteFolderOf(outputPath))}.partial-`;
}

export class MatteSequenceWriter {
  readonly dir: string;
  private readonly tmp: string;
  private index = 0;

  constructor(
    private readonly outputPath: string,
    private readonly width: number,
    private readonly height: number,
    private readonly overwrite: boolean,
  ) {
    this.dir = matteFolderOf(outputPath);
    this.tmp = path.join(
      path.dirname(outputPath),
      `${partialMattePrefix(outputPath)}${process.pid}-${randomBytes(4).toString('hex')}`,
    );
    fs.mkdirSync(this.tmp);
  }

  /** The printf pattern of the finished sequence. */
  get pattern(): string {
    return path.join(this.dir, 'matte_%06d.png');
  }

  /** Appends n mattes given at latent resolution [n, h, w]. */
  write(mask: Float32Array, n: number, h: number, w: number): void {
    const hw = this.width * this.height;
    for (let f = 0; f < n; f++) {
      // One frame at a time: a chunk of 4K mattes as floats would be half a gigabyte.
      const big = resizeMask(mask.subarray(f * h * w, (f + 1) * h * w), 1, h, w, this.height, this.width);
      const rgb = new Uint8Array(hw * 3);
      for (let p = 0; p < hw; p++) {
        const v = Math.round(Math.min(1, Math.max(0, big[p])) * 255);
        rgb[3 * p] = rgb[3 * p + 1] = rgb[3 * p + 2] = v;
      }
      fs.writeFileSync(
        path.join(this.tmp, `matte_${String(this.index++).padStart(6, '0')}.png`),
        encodePng(rgb, this.width, this.height, 3),
      );
    }
  }

  get frames(): number {
    return this.index;
  }

  /** Moves the sequence into place, re-checking the overwrite rule now (the folder may have appeared meanwhile). */
  finish(): string {
    const problem = matteFolderProblem(this.outputPath, this.overwrite);
    if (problem) {
      this.abort();
      throw new Error(`${problem}; the matte was discarded.`);
    }
    // Windows cannot rename a folder over another, so an earlier matte (allowed by overwrite) goes first; Node tries
    // its removal again while a viewer or scanner holds one of its images (maxRetries, recursive removal only).
    if (fs.existsSync(this.dir)) fs.rmSync(this.dir, { recursive: true, maxRetries: 5, retryDelay: 50 });
    try {
      renameIntoPlaceSync(this.tmp, this.dir);
    } catch (err) {
      this.abort();
      throw err;
    }
    return this.pattern;
  }

  abort(): void {
    // Called on the way out of a failed job: a folder still held open must not replace the job's own error.
    removeQuietly(this.tmp, { recursive: true });
  }
}
