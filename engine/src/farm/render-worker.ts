// A render node: takes edits off the BullMQ queue and runs each with the same runner and compute worker as the local
// engine (jobs/runner.ts, worker/pipeline-worker.ts), on this machine's paths for the shared storage. Faults are the
// queue's: a node killed mid-job stops renewing its lock, and BullMQ's stalled-job check hands the job to another
// node (or to this one after a restart); the result is written to a hidden temp file and renamed into place, so the
// expected path never holds a partial file.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DelayedError, UnrecoverableError, Worker, type Job as BullJob } from 'bullmq';
import { Redis } from 'ioredis';
import type { JobProgress, JobRequest, WorkerStatus } from '../api/schemas';
import { CanceledError } from '../editing/types';
import { removePartialOutputs } from '../jobs/manager';
import { planJob, runJob } from '../jobs/runner';
import { InversionCache } from '../store/inversion-cache';
import type { PipelineWorker } from '../worker/pipeline-worker';
import { connectionErrors, whenReady, type QueueConnection } from './connection';
import { deviceName } from './device-name';
import { handBack, isJobFault, refusedBy } from './hand-back';
import { LockWatch } from './lock-watch';
import { resultForEngine, toLocal, type PathMapping } from './path-map';
import {
  CANCEL_CHANNEL,
  CANCELED_REASON,
  canceledKey,
  PREFIX,
  committedKey,
  KEEP_FINISHED_S,
  queueOf,
  resultKey,
  type FarmJobData,
  type FarmJobResult,
  type FarmProgress,
} from './protocol';
import { announce, withdraw } from './registry';

export interface RenderWorkerOptions {
  connection: QueueConnection;
  /** The models this node loaded, one compute worker each: it takes the jobs of these models only. */
  models: PipelineWorker[];
  /** This node's data folder: its inversion cache lives there unless `cacheDir` says otherwise. */
  dataDir: string;
  /**
   * An inversion cache the nodes share (`--cache`, on shared storage): a re-edit of a range that another node inverted
   * skips the inversion wherever it runs (docs/BENCHMARKS.md, "Render farm: where the inversion cache lives").
   */
  cacheDir?: string;
  maps: PathMapping[];
  /** Jobs of each model at once (a big GPU may run several; they share that model's compute worker). */
  concurrency: number;
  /**
   * How long a job's lock lasts without renewal, and how often nodes look for jobs whose lock ran out: the time a
   * killed node's job waits before another node takes it. BullMQ's defaults (30 s, 30 s) unless given.
   */
  lockDurationMs?: number;
  stalledIntervalMs?: number;
  heartbeatMs: number;
  memoryLimitBytes?: number;
  log: (line: string) => void;
}

/** Progress messages at most this often (stage changes always go through): Redis carries every one to the engine. */
const PROGRESS_INTERVAL_MS = 250;
/** A job whose node died this many times is failed rather than handed out again. */
const MAX_STALLS = 2;
/** BullMQ's default lockDuration. */
const DEFAULT_LOCK_MS = 30_000;

/** This node's lock on a job ran out (Redis out of reach too long): another node may run the job now. */
class LockLostError extends Error {
  override name = 'LockLostError';
}

export class RenderWorker {
  readonly id = `${os.hostname()}-${process.pid}`;
  private readonly running = new Map<string, { cancel(): void }>();
  private heartbeat?: NodeJS.Timeout;
  private readonly locks: LockWatch;
  private device?: string;

  private constructor(
    private readonly o: RenderWorkerOptions,
    private readonly redis: Redis,
    private readonly subscriber: Redis,
    private readonly cache: InversionCache,
    private readonly bulls: Worker<FarmJobData, FarmJobResult>[] = [],
  ) {
    this.locks = new LockWatch(o.lockDurationMs ?? DEFAULT_LOCK_MS);
  }

  static async start(o: RenderWorkerOptions): Promise<RenderWorker> {
    const onError = connectionErrors(o.connection.display, o.log);
    const redis = new Redis(o.connection.options);
    const subscriber = new Redis(o.connection.options);
    redis.on('error', onError);
    subscriber.on('error', onError);
    await whenReady(o.connection, Promise.all([redis.ping(), subscriber.ping()]), () => {
      redis.disconnect();
      subscriber.disconnect();
    });
    const cache = new InversionCache(o.cacheDir ?? path.join(o.dataDir, 'cache', 'inversions'), 2 * 1024 ** 3);
    const node = new RenderWorker(o, redis, subscriber, cache);
    node.device = await deviceName(o.models[0]?.info.provider ?? 'cpu');
    subscriber.on('message', (_channel: string, jobId: string) => node.running.get(jobId)?.cancel());
    await subscriber.subscribe(CANCEL_CHANNEL);
    for (const model of o.models) {
      const bull = new Worker<FarmJobData, FarmJobResult>(
        queueOf(model.info.name),
        (job, token) => node.process(job, model, token),
        {
          connection: o.connection.bullmq,
          prefix: PREFIX,
          concurrency: o.concurrency,
          maxStalledCount: MAX_STALLS,
          ...(o.lockDurationMs ? { lockDuration: o.lockDurationMs } : {}),
          ...(o.stalledIntervalMs ? { stalledInterval: o.stalledIntervalMs } : {}),
        },
      );
      bull.on('error', onError);
      bull.on('locksRenewed', ({ jobIds }) => node.locks.renewed(jobIds));
      bull.on('lockRenewalFailed', (jobIds) => node.locks.failed(jobIds));
      node.bulls.push(bull);
    }
    await Promise.all(node.bulls.map((b) => b.waitUntilReady()));
    await node.beat();
    node.heartbeat = setInterval(() => void node.beat().catch(() => undefined), o.heartbeatMs);
    return node;
  }

  status(): WorkerStatus {
    const infos = this.o.models.map((m) => m.info);
    return {
      id: this.id,
      host: os.hostname(),
      provider: [...new Set(infos.map((i) => i.provider))].join(', '),
      ...(this.device ? { device: this.device } : {}),
      models: infos.map((i) => i.name),
      concurrency: this.o.concurrency,
      currentJobs: [...this.running.keys()],
      lastHeartbeat: new Date().toISOString(),
    };
  }

  private beat(): Promise<void> {
    const modelInfo = Object.fromEntries(this.o.models.map((m) => [m.info.name, m.info]));
    return announce(this.redis, { status: this.status(), modelInfo }, this.o.heartbeatMs);
  }

  private async process(
    bullJob: BullJob<FarmJobData, FarmJobResult>,
    model: PipelineWorker,
    token: string | undefined,
  ): Promise<FarmJobResult> {
    const job = bullJob.data.job;
    const worker = { id: this.id, host: os.hostname() };
    const send = (p: DistributiveOmit<FarmProgress, 'worker'>) =>
      bullJob.updateProgress({ ...p, worker }).catch(() => undefined);
    if (await this.redis.exists(canceledKey(job.id))) throw new UnrecoverableError(CANCELED_REASON);
    const refuse = (reason?: string) =>
      handBack(
        this.redis,
        bullJob,
        token,
        reason === undefined ? undefined : { node: this.id, reason },
        model.info.name,
      );
    // It would fail here again: the other nodes get it, or it fails once none is left to try.
    if (refusedBy(bullJob.data, this.id)) return refuse();
    let request: JobRequest;
    let outputPath: string;
    try {
      request = this.localRequest(job.request, job.outputPath);
      outputPath = this.local(job.outputPath, 'output');
    } catch (err) {
      this.o.log(`job ${job.id}: ${(err as Error).message}; leaving it to the other render nodes`);
      return refuse((err as Error).message);
    }
    let canceledEarly = false;
    let lockLost!: (err: Error) => void;
    const lost = new Promise<never>((_, reject) => (lockLost = reject));
    lost.catch(() => undefined);
    let lockGone = false;
    const ctx = {
      worker: model,
      cache: this.cache,
      seed: job.seed,
      onProgress: throttled((progress) => void send({ kind: 'progress', progress })),
      onPreview: (png: Buffer) => void send({ kind: 'preview', png: png.toString('base64') }),
      onWarning: (warning: string) => void send({ kind: 'warning', warning }),
      cancelHook: undefined as { cancel(): void } | undefined,
      memoryLimitBytes: this.o.memoryLimitBytes,
      cacheNames: { source: job.request.source.path, model: model.info.name },
      beforeCommit: async () => {
        // The last moment to find out that another node has the job: after this, the result is renamed into place.
        await Promise.race([this.holdsLock(bullJob, token), lost]);
        await this.redis.set(committedKey(job.id), '1', 'EX', KEEP_FINISHED_S);
      },
    };
    const stop = () => (ctx.cancelHook ? ctx.cancelHook.cancel() : (canceledEarly = true));
    this.running.set(job.id, { cancel: stop });
    const unwatch = this.locks.watch(bullJob.id!, () => {
      lockGone = true;
      this.o.log(
        `job ${job.id}: this node's lock on it ran out (Redis out of reach for ${(this.o.lockDurationMs ?? DEFAULT_LOCK_MS) / 1000} s or more); stopping it here, another render node takes it`,
      );
      lockLost(new LockLostError(`render node ${this.id} lost its lock on job ${job.id}`));
      stop();
    });
    void this.beat().catch(() => undefined);
    this.o.log(`job ${job.id} (attempt ${bullJob.attemptsMade + 1}): ${request.source.path} → ${outputPath}`);
    try {
      await send({ kind: 'start' });
      // A node that died on this job before left its hidden temp files beside the output.
      removePartialOutputs(outputPath);
      const earlier = await this.earlierResult(job.id, outputPath);
      if (earlier) return earlier;
      // Planned again here: this node's model and its view of the media decide the working size and the batch.
      const plan = await planJob(request, model.info, outputPath, undefined, this.o.memoryLimitBytes);
      if (canceledEarly) throw new CanceledError();
      const result = await runJob(request, plan, ctx);
      this.o.log(`job ${job.id} done: ${result.frames} frames in ${result.seconds.toFixed(1)} s`);
      const reported = resultForEngine(result, job.outputPath, this.o.maps);
      await this.redis.set(resultKey(job.id), JSON.stringify(reported), 'EX', KEEP_FINISHED_S);
      return reported;
    } catch (err) {
      // Whatever comes back to BullMQ is refused (the lock is another node's): the job is that node's now.
      if (lockGone || err instanceof LockLostError) {
        this.o.log(`job ${job.id} stopped here, nothing written: the render node that took it over finishes it`);
        throw new LockLostError(`render node ${this.id} lost its lock on job ${job.id}`);
      }
      if (err instanceof CanceledError) {
        this.o.log(`job ${job.id} canceled`);
        throw new UnrecoverableError(CANCELED_REASON);
      }
      if (err instanceof DelayedError || err instanceof UnrecoverableError) throw err;
      const reason = (err as Error).message;
      if (isJobFault(err)) {
        this.o.log(`job ${job.id} failed: ${reason}`);
        throw new UnrecoverableError(reason);
      }
      this.o.log(`job ${job.id} failed on this node: ${reason}; leaving it to the other render nodes`);
      return refuse(reason);
    } finally {
      unwatch();
      this.running.delete(job.id);
      void this.beat().catch(() => undefined);
    }
  }

  /** Throws unless this node's try still holds the job's lock in Redis. */
  private async holdsLock(bullJob: BullJob<FarmJobData, FarmJobResult>, token: string | undefined): Promise<void> {
    if (token === undefined) return;
    const held = await this.redis.get(`${bullJob.queueQualifiedName}:${bullJob.id}:lock`);
    if (held !== token)
      throw new LockLostError(`render node ${this.id} lost its lock on job ${bullJob.data.job.id} before writing it`);
  }

  /**
   * A try of this job that died after renaming its result into place, before the queue recorded it: the file there
   * is the job's own (the engine admitted the job only with that path free). Its result is reported as it was
   * recorded; where the try died before recording it, the file goes and the job runs again (a seeded job gives the
   * same file), rather than failing on "output exists" or keeping a result nobody can vouch for.
   */
  private async earlierResult(jobId: string, outputPath: string): Promise<FarmJobResult | undefined> {
    if (!fs.existsSync(outputPath) || !(await this.redis.exists(committedKey(jobId)))) return undefined;
    const recorded = await this.redis.get(resultKey(jobId));
    if (recorded) {
      this.o.log(`job ${jobId}: an earlier try wrote ${outputPath} and recorded it; reporting that result`);
      return JSON.parse(recorded) as FarmJobResult;
    }
    this.o.log(`job ${jobId}: an earlier try wrote ${outputPath} and died before recording it; running it again`);
    fs.rmSync(outputPath, { force: true });
    return undefined;
  }

  /** A path of the job as this node names it; a path no --map covers fails this try (another node may map it). */
  private local(p: string, field: string): string {
    const mapped = toLocal(p, this.o.maps);
    if (mapped === undefined)
      throw new Error(
        `render node ${this.id} cannot reach the job's ${field} ${p}: no --map covers it (it maps ${this.o.maps
          .map((m) => m.from)
          .join(', ')}). Put the file on shared storage that the render nodes map, or add --map FROM=TO for it`,
      );
    return mapped;
  }

  private localRequest(req: JobRequest, outputPath: string): JobRequest {
    const local = { ...req, source: { ...req.source, path: this.local(req.source.path, 'source') } };
    if (req.mask.type === 'file') local.mask = { ...req.mask, path: this.local(req.mask.path, 'mask') };
    // The output is named by the engine's plan (job.outputPath); the request's own output path must agree with it.
    if (req.output?.path) local.output = { ...req.output, path: this.local(outputPath, 'output') };
    return local;
  }

  /** Takes no new jobs, lets the running ones finish, and drops off the list of nodes. */
  async close(): Promise<void> {
    clearInterval(this.heartbeat);
    this.locks.close();
    await Promise.all(this.bulls.map((b) => b.close()));
    await withdraw(this.redis, this.id).catch(() => undefined);
    this.subscriber.disconnect();
    this.redis.disconnect();
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

function throttled(send: (p: JobProgress) => void): (p: JobProgress) => void {
  let last = 0;
  let stage = '';
  return (p) => {
    const now = Date.now();
    if (p.stage === stage && now - last < PROGRESS_INTERVAL_MS) return;
    last = now;
    stage = p.stage;
    send(p);
  };
}
