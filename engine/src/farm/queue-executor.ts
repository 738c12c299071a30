// The engine's side of the render farm: a JobExecutor that puts each planned job on a BullMQ queue and follows it
// there (progress, previews, the node that runs it, the result) until it ends. The JobManager around it still
// validates, plans, records and serves every job, so the HTTP API and the panel do not know the difference.
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import type { Job, JobResult, WorkerStatus } from '../api/schemas';
import { CanceledError } from '../editing/types';
import type { JobExecutor, RunHooks } from '../jobs/manager';
import type { ModelInfo } from '../models/sd-model';
import { connectionErrors, whenReady, type QueueConnection } from './connection';
import {
  bullJobId,
  engineJobId,
  CANCEL_CHANNEL,
  CANCELED_REASON,
  canceledKey,
  PREFIX,
  KEEP_FINISHED_S,
  queueOf,
  type FarmJobData,
  type FarmJobResult,
  type FarmProgress,
} from './protocol';
import { QueueReachability, type QueueReach } from './queue-reach';
import { announcedModel, listWorkers } from './registry';

/**
 * Tries of a job whose try failed outside the nodes' own sorting of failures (farm/hand-back.ts): a node that lost
 * Redis while handing it back. A job's own fault ends it at once; a node's fault hands it to the others.
 */
const ATTEMPTS = 3;
/** How long a cancel request is remembered for a job that a node has not taken yet. */
const CANCEL_TTL_S = 24 * 3600;

interface ModelQueue {
  queue: Queue<FarmJobData, FarmJobResult>;
  events: QueueEvents;
}

export class QueueExecutor implements JobExecutor {
  /** Every job goes to the queue at once: the render nodes, not the engine, decide how many run. */
  readonly concurrency = Number.POSITIVE_INFINITY;
  private readonly following = new Map<string, { hooks: RunHooks; started: boolean }>();
  private readonly queues = new Map<string, ModelQueue>();
  private readonly reach: QueueReachability;

  private constructor(
    private readonly connection: QueueConnection,
    private readonly redis: Redis,
    private readonly onError: (err: Error) => void,
  ) {
    this.reach = new QueueReachability(redis);
  }

  /** `model`: the engine's own, whose queue is opened now so that an unreachable queue stops the start. */
  static async open(connection: QueueConnection, log: (line: string) => void, model: string): Promise<QueueExecutor> {
    const onError = connectionErrors(connection.display, log);
    const redis = new Redis(connection.options);
    redis.on('error', onError);
    const executor = new QueueExecutor(connection, redis, onError);
    const own = executor.queueOf(model);
    await whenReady(
      connection,
      Promise.all([own.queue.waitUntilReady(), own.events.waitUntilReady(), redis.ping()]),
      () => {
        // Not close(): BullMQ's close waits for a connection that never became ready.
        void own.queue.disconnect().catch(() => undefined);
        void own.events.disconnect().catch(() => undefined);
        redis.disconnect();
      },
    );
    return executor;
  }

  private queueOf(model: string): ModelQueue {
    let q = this.queues.get(model);
    if (!q) {
      const opts = { connection: this.connection.bullmq, prefix: PREFIX };
      q = {
        queue: new Queue<FarmJobData, FarmJobResult>(queueOf(model), opts),
        events: new QueueEvents(queueOf(model), opts),
      };
      q.queue.on('error', this.onError);
      q.events.on('error', this.onError);
      q.events.on('progress', ({ jobId, data }) => this.onProgress(engineJobId(jobId), data as FarmProgress));
      this.queues.set(model, q);
    }
    return q;
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
    let sent = false;
    const cancel = () =>
      void this.cancel(job.id, job.request.model!).then((gone) => gone && canceled(new CanceledError()));
    hooks.cancelHook = {
      cancel: () => {
        cancelAsked = true;
        // Not on the queue yet (Redis may be down for hours): canceled now; taken off once it gets there.
        if (!sent) canceled(new CanceledError());
        cancel();
      },
    };
    // After an engine restart, a job recorded as running has been started already.
    this.following.set(job.id, { hooks, started: job.state === 'running' });
    const unwatch = this.waitingNote(job, hooks);
    try {
      // The job id is the engine's: after an engine restart, adding it again attaches to the one already queued.
      // The manager names the model of every job it queues.
      const { queue, events } = this.queueOf(job.request.model!);
      const adding = queue.add(
        'edit',
        { job },
        {
          jobId: bullJobId(job.id),
          attempts: ATTEMPTS,
          removeOnComplete: { age: KEEP_FINISHED_S },
          removeOnFail: { age: KEEP_FINISHED_S },
        },
      );
      // A cancel that came while the job was being added found nothing to take off the queue: again, once it is on.
      void adding.then(
        () => cancelAsked && cancel(),
        () => undefined,
      );
      const added = await Promise.race([adding, removed]);
      sent = true;
      unwatch();
      return await Promise.race([added.waitUntilFinished(events), removed]);
    } catch (err) {
      if (err instanceof Error && err.message === CANCELED_REASON) throw new CanceledError();
      throw err;
    } finally {
      unwatch();
      this.following.delete(job.id);
    }
  }

  /**
   * While the job waits to be sent, its progress says when that is because the queue cannot be reached (and the
   * note goes when it can). Returns the function that stops it and takes the note away.
   */
  private waitingNote(job: Job, hooks: RunHooks): () => void {
    const show = (r: QueueReach) => {
      const progress = { ...job.progress };
      if (r.reachable) delete progress.waiting;
      else
        progress.waiting = `waiting for the render farm's queue: Redis at ${this.connection.display} cannot be reached${r.detail ? ` (${r.detail})` : ''}; the job is sent when it is back`;
      if (progress.waiting !== job.progress.waiting) hooks.onProgress(progress);
    };
    show(this.reach.now());
    const stop = this.reach.watch(show);
    return () => {
      stop();
      if (job.progress.waiting !== undefined) show({ reachable: true });
    };
  }

  /** Whether the queue answers now, for /v1/health: never the password, which is in neither field. */
  queueState(): { url: string } & QueueReach {
    return { url: this.connection.display, ...this.reach.now() };
  }

  /**
   * Asks the node running the job to stop (it sees the flag before it starts, or the message while it runs), and
   * takes a job that no node has taken yet off the queue. True when it was taken off: no node will report back.
   */
  private async cancel(jobId: string, model: string): Promise<boolean> {
    await this.redis.set(canceledKey(jobId), '1', 'EX', CANCEL_TTL_S);
    await this.redis.publish(CANCEL_CHANNEL, jobId);
    const queued = await this.queueOf(model).queue.getJob(bullJobId(jobId));
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

  modelInfo(id: string): Promise<ModelInfo | undefined> {
    return announcedModel(this.redis, id);
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.queues.values()].flatMap((q) => [q.events.close(), q.queue.close()]));
    this.redis.disconnect();
  }
}
