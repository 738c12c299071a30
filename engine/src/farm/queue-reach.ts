// Whether the engine reaches its render queue now. ioredis waits out an outage by itself (the queue's commands must
// never fail for a retry count, connection.ts), so a job sent meanwhile waits without a word: this is what tells
// /v1/health and the waiting jobs that Redis is down, and when it is back.
import type { Redis } from 'ioredis';

export interface QueueReach {
  reachable: boolean;
  /** ioredis' last reason while unreachable (it holds no password). */
  detail?: string;
}

export class QueueReachability {
  private state: QueueReach = { reachable: true };
  private readonly listeners = new Set<(r: QueueReach) => void>();

  /** `redis`: a connection that is ready now. */
  constructor(redis: Redis) {
    redis.on('ready', () => this.set({ reachable: true }));
    redis.on('close', () => this.set({ reachable: false, detail: this.state.detail }));
    redis.on('error', (err: Error) => {
      if (!this.state.reachable) this.set({ reachable: false, detail: err.message });
    });
  }

  now(): QueueReach {
    return { ...this.state };
  }

  /** Calls `listener` on every change; returns the function that stops it. */
  watch(listener: (r: QueueReach) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private set(next: QueueReach): void {
    const changed = next.reachable !== this.state.reachable || next.detail !== this.state.detail;
    this.state = next;
    if (changed) for (const l of this.listeners) l(this.now());
  }
}
