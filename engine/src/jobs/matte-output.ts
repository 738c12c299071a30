// The automatic mask handed back with a job's result, so the user can see (and reuse) what the edit was allowed to
// change: a PNG sequence next to the output, one 8-bit matte per output frame at the output's size, white = edited.
// A sequence rather than a matte video because it is lossless (H.264's 4:2:0 would smear a 1-pixel soft edge) and
// Premiere imports it as a clip; the printf pattern is exactly what `mask: { type: "file", path }` accepts back.
// Written into a temporary folder and renamed into place when the job succeeds, like the video itself.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { resizeMask } from '../editing/mask-ops';
import { encodePng } from '../eval/png';

export class MatteSequenceWriter {
  readonly dir: string;
  private readonly tmp: string;
  private index = 0;

  constructor(
    outputPath: string,
    private readonly width: number,
    private readonly height: number,
  ) {
    this.dir = outputPath.replace(/\.[^./\\]+$/, '') + '.matte';
    this.tmp = `${this.dir}.partial-${process.pid}`;
    fs.rmSync(this.tmp, { recursive: true, force: true });
    fs.mkdirSync(this.tmp, { recursive: true });
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
      fs.writeFileSync(path.join(this.tmp, `matte_${String(this.index++).padStart(6, '0')}.png`), encodePng(rgb, this.width, this.height, 3));
    }
  }

  get frames(): number {
    return this.index;
  }

  finish(): string {
    fs.rmSync(this.dir, { recursive: true, force: true });
    fs.renameSync(this.tmp, this.dir);
    return this.pattern;
  }

  abort(): void {
    fs.rmSync(this.tmp, { recursive: true, force: true });
  }
}
