// The engine's side of the render farm: a JobExecutor that puts each planned job on a BullMQ queue and follows it
// there (progress, previews, the node that runs it, the result) until it ends. The JobManager around it still
// validates, plans, records and serves every job, so the HTTP API and the panel do not know the difference.
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import type { Job, JobResult, WorkerStatus } from '../api/schemas';
import { CanceledError } from '../editing/types';
import type { JobExecutor, RunHooks } from '../jobs/manager';
import { connectionErrors, whenReady, type QueueConnection } from './connection';
import {
  CANCEL_CHANNEL,
  CANCELED_REASON,
  canceledKey,
  PREFIX,
  QUEUE,
  type FarmJobData,
  type FarmJobResult,
  type FarmProgress,
} from './protocol';
import { listWorkers } from './registry';

/** Tries of a job that fails on a node (its node died twice, or could not map its paths): another node may take it. */
const ATTEMPTS = 3;
/** Finished jobs stay in Redis this long, so that an engine that was down meanwhile still learns how they ended. */
const KEEP_FINISHED_S = 7 * 24 * 3600;
/** How long a cancel request is remembered for a job that a node has not taken yet. */
const CANCEL_TTL_S = 24 * 3600;

export class QueueExecutor implements JobExecutor {
  /** Every job goes to the queue at once: the render nodes, not the engine, decide how many run. */
  readonly concurrency = Number.POSITIVE_INFINITY;
  private readonly following = new Map<string, { hooks: RunHooks; started: boolean }>();

  private constructor(
    private readonly queue: Queue<FarmJobData, FarmJobResult>,
    private readonly events: QueueEvents,
    private readonly redis: Redis,
  ) {
    events.on('progress', ({ jobId, data }) => this.onProgress(jobId, data as FarmProgress));
  }

  static async open(connection: QueueConnection, log: (line: string) => void): Promise<QueueExecutor> {
    const onError = connectionErrors(connection.display, log);
    const redis = new Redis(connection.options);
    const queue = new Queue<FarmJobData, FarmJobResult>(QUEUE, { connection: connection.bullmq, prefix: PREFIX });
    const events = new QueueEvents(QUEUE, { connection: connection.bullmq, prefix: PREFIX });
    redis.on('error', onError);
    queue.on('error', onError);
    events.on('error', onError);
    const executor = new QueueExecutor(queue, events, redis);
    await whenReady(connection, Promise.all([queue.waitUntilReady(), events.waitUntilReady(), redis.ping()]), () => {
      // Not close(): BullMQ's close waits for a connection that never became ready.
      void queue.disconnect().catch(() => undefined);
      void events.disconnect().catch(() => undefined);
      redis.disconnect();
    });
    return executor;
  }

  private onProgress(jobId: string, p: FarmProgress): void {
    const followed = this.following.get(jobId);
    if (!followed || typeof p !== 'object' || p === null) return;
    const { hooks } = followed;
    // A node that takes the job again (its first node died) starts it again: the job says where it runs now.
    if (p.kind === 'start' || !followed.started) {
      followed.started = true;
      hooks.onStart(p.worker);
    }
    if (p.kind === 'progress') hooks.onProgress(p.progress);
    else if (p.kind === 'preview') hooks.onPreview(Buffer.from(p.png, 'base64'));
    else if (p.kind === 'warning') hooks.onWarning(p.warning);
  }

  async run(job: Job, hooks: RunHooks): Promise<JobResult> {
    let canceled!: (err: Error) => void;
    const removed = new Promise<never>((_, reject) => (canceled = reject));
    let cancelAsked = false;
    const cancel = () => void this.cancel(job.id).then((gone) => gone && canceled(new CanceledError()));
    hooks.cancelHook = {
      cancel: () => {
        cancelAsked = true;
        cancel();
      },
    };
    // After an engine restart, a job recorded as running has been started already.
    this.following.set(job.id, { hooks, started: job.state === 'running' });
    try {
      // The job id is the engine's: after an engine restart, adding it again attaches to the one already queued.
      const added = await this.queue.add(
        'edit',
        { job },
        {
          jobId: job.id,
          attempts: ATTEMPTS,
          removeOnComplete: { age: KEEP_FINISHED_S },
          removeOnFail: { age: KEEP_FINISHED_S },
        },
      );
      // A cancel that came while the job was being added found nothing to take off the queue: again, now.
      if (cancelAsked) cancel();
      return await Promise.race([added.waitUntilFinished(this.events), removed]);
    } catch (err) {
      if (err instanceof Error && err.message === CANCELED_REASON) throw new CanceledError();
      throw err;
    } finally {
      this.following.delete(job.id);
    }
  }

  /**
   * Asks the node running the job to stop (it sees the flag before it starts, or the message while it runs), and
   * takes a job that no node has taken yet off the queue. True when it was taken off: no node will report back.
   */
  private async cancel(jobId: string): Promise<boolean> {
    await this.redis.set(canceledKey(jobId), '1', 'EX', CANCEL_TTL_S);
    await this.redis.publish(CANCEL_CHANNEL, jobId);
    const queued = await this.queue.getJob(jobId);
    if (!queued) return false;
    try {
      // Refused while a node holds the job's lock: that node stops it and reports it canceled.
      await queued.remove();
      return true;
    } catch {
      return false;
    }
  }

  workers(): Promise<WorkerStatus[]> {
    return listWorkers(this.redis);
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.events.close(), this.queue.close()]);
    this.redis.disconnect();
  }
}
