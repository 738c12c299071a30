import type { JobProgress } from '../api/schemas';
import type { Progress } from '../editing/types';

/** One self-rewriting progress line on a terminal; plain lines every 10 % when output is a file or pipe. */
export class ProgressLine {
  private lastDecile = -1;
  private readonly start = Date.now();
  private readonly tty = Boolean(process.stderr.isTTY);

  /** Progress of a bare pipeline run (demo). */
  update(p: Progress): void {
    const fraction = p.done / p.total;
    const elapsed = (Date.now() - this.start) / 1000;
    const eta = fraction > 0 ? (elapsed / fraction) * (1 - fraction) : undefined;
    this.render(fraction, p.stage, p.step, p.steps, p.frame, p.frames, eta);
  }

  /** Progress of a whole job (edit). */
  updateJob(p: JobProgress): void {
    this.render(p.fraction, p.stage, p.step, p.steps, p.frame, p.frames, p.etaSec, p.frameRange, p.queuePosition);
  }

  private render(
    fraction: number,
    stage: string,
    step?: number,
    steps?: number,
    frame?: number,
    frames?: number,
    eta?: number,
    range?: JobProgress['frameRange'],
    queuePosition?: number,
  ): void {
    const parts = [`${(fraction * 100).toFixed(0).padStart(3)}% ${stage}`];
    if (queuePosition) parts.push(`${ordinal(queuePosition)} in the queue`);
    // The frames the stage works on first: the step count restarts with every chunk, so alone it would run backwards.
    if (range && frames) parts.push(`frames ${range.first}–${range.last} of ${frames}`);
    if (step) parts.push(`step ${step}/${steps}`);
    if (!range && frame !== undefined && frames) parts.push(`frames ${frame + 1}+ of ${frames}`);
    if (eta !== undefined) parts.push(`ETA ${eta.toFixed(0)} s`);
    const text = parts.join(', ');
    if (this.tty) {
      const width = 24;
      const filled = Math.round(fraction * width);
      process.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${text}\x1b[K`);
      return;
    }
    const decile = Math.floor(fraction * 10);
    if (decile !== this.lastDecile) {
      this.lastDecile = decile;
      process.stderr.write(text + '\n');
    }
  }

  done(): void {
    if (this.tty) process.stderr.write('\n');
  }
}

function ordinal(n: number): string {
  const teen = n % 100 >= 11 && n % 100 <= 13;
  const suffix = teen ? 'th' : (['th', 'st', 'nd', 'rd'][n % 10] ?? 'th');
  return `${n}${suffix}`;
}
