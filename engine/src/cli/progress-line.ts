import type { Progress } from '../editing/types';

/** One self-rewriting progress line on a terminal; plain lines every 10 % when output is a file or pipe. */
export class ProgressLine {
  private lastDecile = -1;
  private readonly start = Date.now();
  private readonly tty = Boolean(process.stderr.isTTY);

  update(p: Progress): void {
    const fraction = p.done / p.total;
    const elapsed = (Date.now() - this.start) / 1000;
    const eta = fraction > 0 ? (elapsed / fraction) * (1 - fraction) : 0;
    const step = p.step ? ` step ${p.step}/${p.steps}` : '';
    const text = `${(fraction * 100).toFixed(0).padStart(3)}% ${p.stage}${step}, frames ${p.frame + 1}+ of ${p.frames}, ETA ${eta.toFixed(0)} s`;
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
