// A node that cannot reach Redis for longer than a job's lock has lost the job: the other nodes' stalled check hands
// it out again, and two nodes would write the same output. BullMQ says so ('lockRenewalFailed') only when Redis
// answers; while Redis does not answer at all, its renewal just waits. So each running job is watched from its last
// renewal that went through: past the lock's duration, the lock has run out in Redis, and the node stops the job.
export class LockWatch {
  private readonly jobs = new Map<string, { renewedAt: number; lost: () => void }>();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly lockMs: number) {
    this.timer = setInterval(() => this.check(), Math.max(50, lockMs / 4));
    this.timer.unref();
  }

  /** `id`: BullMQ's job id. `lost` is called once, when its lock may be another node's. Returns the unwatch. */
  watch(id: string, lost: () => void): () => void {
    this.jobs.set(id, { renewedAt: Date.now(), lost });
    return () => this.jobs.delete(id);
  }

  renewed(ids: string[]): void {
    const now = Date.now();
    for (const id of ids) {
      const job = this.jobs.get(id);
      if (job) job.renewedAt = now;
    }
  }

  failed(ids: string[]): void {
    for (const id of ids) this.lose(id);
  }

  close(): void {
    clearInterval(this.timer);
  }

  private check(): void {
    const now = Date.now();
    for (const [id, job] of this.jobs) if (now - job.renewedAt > this.lockMs) this.lose(id);
  }

  private lose(id: string): void {
    const job = this.jobs.get(id);
    if (!job) return;
    this.jobs.delete(id);
    job.lost();
  }
}
