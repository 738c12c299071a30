// One progress fraction over a whole run (encode, invert, edit, decode), and the cancellation check between UNet calls.
import { CanceledError, type Progress, type RunHooks, type Stage } from '../types';

/** Counts work units over a whole run so progress is one fraction across stages. */
export class ProgressTracker {
  done = 0;
  constructor(
    readonly total: number,
    private readonly frames: number,
    private readonly hooks: RunHooks,
  ) {}
  checkStop(): void {
    if (this.hooks.shouldStop?.()) throw new CanceledError();
  }
  /** `units`: how much of a unit this piece of work is (a stage that splits the loop's calls into more). */
  advance(stage: Stage, frame: number, extra: Partial<Progress> = {}, units = 1): void {
    this.done += units;
    this.hooks.onProgress?.({ stage, done: this.done, total: this.total, frame, frames: this.frames, ...extra });
  }
}
