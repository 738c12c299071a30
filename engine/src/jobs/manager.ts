// The engine's job queue: one compute worker, jobs run one at a time in submission order, every state change
// persisted. After a crash or kill, reopening shows every job again; one that was running is re-queued (its
// partial output removed) or, after repeated restarts, failed with the reason.
import * as crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Health, Job, JobEvent, JobProgress, JobRequest, JobResult, WorkerStatus } from '../api/schemas';
import { CanceledError } from '../editing/types';
import { ffmpegPath, ffprobePath, MediaError } from '../media/binaries';
import { checkMask } from '../media/mask-input';
import { checkFfmpegPaths, checkNotAnInput, checkOutputTarget } from '../media/output-target';
import { probeMedia } from '../media/probe';
import { extractStill } from '../media/still';
import type { PipelineWorker } from '../worker/pipeline-worker';
import type { ModelInfo } from '../models/sd-model';
import { removeQuietly } from '../config/atomic-rename';
import { makePrivateDir, PRIVATE_DIR_MODE } from '../config/private-dir';
import { InversionCache } from '../store/inversion-cache';
import { partialMattePrefix } from './matte-output';
import { defaultOutputPath, maskSpecOf, maskTarget, planJob, runJob, type JobPlan } from './runner';
import { ProblemError, type JobService, type ModelSummary } from './service';
import { JobStore } from './store';

/** What a job's executor reports back while the job runs. */
export interface RunHooks {
  onProgress: (p: JobProgress) => void;
  onPreview: (png: Buffer) => void;
  onWarning: (w: string) => void;
  /** A remote executor: a render node took the job (it was waiting in the queue until now). */
  onStart: (worker: NonNullable<Job['worker']>) => void;
  /** Set by the executor as soon as it starts: cancels the job wherever it is. */
  cancelHook?: { cancel(): void };
}

/**
 * Runs queued jobs somewhere other than this process's compute worker: farm/ hands them to render nodes through a
 * queue. The manager still validates, plans, records and reports every job; only where the compute happens changes.
 */
export interface JobExecutor {
  /** Jobs handed over at once. */
  readonly concurrency: number;
  /**
   * Runs the job to its result; rejects with CanceledError when it was canceled, with an Error that says why when it
   * failed. Called again for the same job after an engine restart: it must then attach to the job already handed over.
   */
  run(job: Job, hooks: RunHooks): Promise<JobResult>;
  workers(): Promise<WorkerStatus[]>;
  /** The model a live render node announces under this id, as it loaded it; undefined when none has it now. */
  modelInfo(id: string): Promise<ModelInfo | undefined>;
  /** Whether the render queue answers now (for /v1/health); `url` carries no credentials. */
  queueState(): { url: string; reachable: boolean; detail?: string };
  /** Stops listening; the jobs handed over go on without this engine. */
  close(): Promise<void>;
}

export interface JobManagerOptions {
  worker: PipelineWorker;
  /** Absent: jobs run here, one at a time, in `worker`. */
  executor?: JobExecutor;
  dataDir: string;
  version: string;
  /** Jobs waiting at most; more submissions get 429. */
  maxQueued?: number;
  /** Inversion cache budget in bytes (default 2 GiB, RESHOOT_CACHE_BYTES). */
  cacheBytes?: number;
  /** A job re-queued by this many restarts is failed instead of tried again. */
  maxRestarts?: number;
  /** Finished jobs remembered (newest first; default 1000, RESHOOT_JOB_HISTORY); older records are forgotten, their result files kept. */
  maxHistory?: number;
  /** `--max-memory`: no job may plan for a larger peak (bytes) than this, whatever is free (jobs/memory-plan.ts). */
  memoryLimitBytes?: number;
  /**
   * `--renders`: where jobs that name no output folder write, instead of the engine's private renders folder. With an
   * executor, the render nodes write the result, so it must be on shared storage; without it such jobs are refused.
   */
  rendersDir?: string;
  log?(line: string): void;
}

const PERSIST_INTERVAL_MS = 1000;

/**
 * MediaError codes are the user's input problems: 422 with the field they came from. A missing or broken ffmpeg is
 * the engine's own state, not the request's: 503, with the message that says how to point the engine at one.
 */
export function mediaProblem(err: MediaError, field: string): ProblemError {
  const engineSide = err.code === 'ffmpeg-missing' || (err.code === 'ffmpeg-failed' && err.file === undefined);
  const status = engineSide ? 503 : err.code === 'output-exists' ? 409 : 422;
  return ProblemError.of(status, titleOf(err.code), err.message, engineSide ? undefined : field, err.code);
}

/** Request paths the engine opens: plain absolute paths only (its working folder means nothing to the panel). */
function checkPaths(fields: [string, string | undefined][]): void {
  for (const [field, p] of fields) {
    if (p === undefined) continue;
    // fs calls throw a TypeError on NUL, which would surface as a 500.
    if (p.includes('\0'))
      throw ProblemError.of(
        400,
        'Invalid path',
        `${field} contains a NUL character, which no file name can hold; give the path as plain text`,
        field,
        'invalid-path',
      );
    if (!path.isAbsolute(p))
      throw ProblemError.of(
        422,
        'Relative path',
        `${field} "${p}" is a relative path; give an absolute path (the engine's working folder means nothing to the panel or the web UI)`,
        field,
        'relative-path',
      );
  }
}

/**
 * A job with no output folder on an engine that hands its jobs to render nodes: they would write into the engine's
 * private renders folder on their own disks, where the editor never sees the result.
 */
function noSharedOutput(privateDir: string): ProblemError {
  return ProblemError.of(
    422,
    'No output folder for the render farm',
    `this engine sends its jobs to render nodes, and they cannot write into its own renders folder (${privateDir}). Choose an output folder on shared storage that the render nodes reach, or start the engine with reshoot serve --queue … --renders DIR, DIR a folder on that storage`,
    'output.folder',
    'no-shared-output',
  );
}

function titleOf(code: string): string {
  return code.replace(/-/g, ' ').replace(/^./, (c) => c.toUpperCase());
}

export class JobManager implements JobService {
  private readonly jobs = new Map<string, Job>();
  private readonly plans = new Map<string, JobPlan>();
  private readonly events = new EventEmitter();
  private readonly store: JobStore;
  private readonly cache: InversionCache;
  private readonly rendersDir: string;
  /** Jobs handed to their executor and not finished: what cancels each. */
  private readonly running = new Map<string, { cancel(): void }>();
  /** Submissions past the queue check and still being checked against their media: they hold a place in the queue. */
  private admitting = 0;
  /** The last admission to start; each next one starts an event-loop turn after it (see submit). */
  private admissionTurn: Promise<void> = Promise.resolve();
  private lastPersist = new Map<string, number>();
  private previews = new Map<string, Buffer>();
  private closed = false;

  private constructor(private readonly o: JobManagerOptions) {
    const privacy = makePrivateDir(o.dataDir);
    if (privacy) o.log?.(`warning: ${privacy}`);
    this.store = new JobStore(path.join(o.dataDir, 'jobs'));
    this.cache = new InversionCache(
      path.join(o.dataDir, 'cache', 'inversions'),
      o.cacheBytes ?? Number(process.env.RESHOOT_CACHE_BYTES ?? 2 * 1024 ** 3),
    );
    this.rendersDir = path.join(o.dataDir, 'renders');
    fs.mkdirSync(this.rendersDir, { recursive: true, mode: PRIVATE_DIR_MODE });
    this.events.setMaxListeners(0);
  }

  static async open(o: JobManagerOptions): Promise<JobManager> {
    const m = new JobManager(o);
    m.recover();
    m.pump();
    return m;
  }

  /** Jobs run by render nodes go on while this engine is down: a restart attaches to them again. */
  private get remote(): boolean {
    return this.o.executor !== undefined;
  }

  private log(line: string): void {
    this.o.log?.(line);
  }

  private recover(): void {
    const maxRestarts = this.o.maxRestarts ?? 2;
    for (const job of this.store.loadAll((file, reason) =>
      this.log(`ignoring unreadable job file ${file}: ${reason}`),
    )) {
      this.jobs.set(job.id, job);
      if (job.state !== 'running' || this.remote) continue;
      removePartialOutputs(job.outputPath);
      if (job.restarts >= maxRestarts) {
        this.finish(job, 'failed', {
          error: {
            title: 'Engine stopped',
            detail: `the engine stopped while this job was running, ${job.restarts + 1} times; it was not tried again. Submit it again, with fewer frames or a smaller batch size if the machine runs out of memory`,
          },
        });
      } else {
        this.update(
          job,
          {
            state: 'queued',
            restarts: job.restarts + 1,
            progress: { stage: 'queued', fraction: 0 },
            warnings: [...job.warnings, 'the engine restarted while this job was running; it was queued again'],
          },
          true,
        );
      }
    }
    this.pruneHistory();
  }

  /**
   * An engine that runs for months must not keep every job it ever ran in memory and on disk: beyond the bound the
   * oldest finished jobs are forgotten. Their results stay where they were written (a Premiere project may use them).
   */
  private pruneHistory(): void {
    const max = this.o.maxHistory ?? Number(process.env.RESHOOT_JOB_HISTORY ?? 1000);
    const finished = [...this.jobs.values()].filter(
      (j) => j.finishedAt && ['succeeded', 'failed', 'canceled'].includes(j.state),
    );
    if (finished.length <= max) return;
    finished.sort((a, b) => b.finishedAt!.localeCompare(a.finishedAt!) || b.createdAt.localeCompare(a.createdAt));
    for (const job of finished.slice(Math.max(0, max))) {
      this.jobs.delete(job.id);
      this.store.remove(job.id);
    }
  }

  async submit(request: JobRequest): Promise<Job> {
    if (this.closed)
      throw ProblemError.of(503, 'Engine stopping', 'the engine is shutting down; submit again when it is back');
    const queued = [...this.jobs.values()].filter((j) => j.state === 'queued').length;
    const max = this.o.maxQueued ?? 100;
    // Checking a request awaits ffprobe, so without counting those in flight a burst would all pass the bound at once.
    if (queued + this.admitting >= max) {
      throw ProblemError.of(
        429,
        'Queue full',
        `${queued + this.admitting} jobs are waiting already; wait for some to finish or cancel some, then submit again`,
        undefined,
        'queue-full',
      );
    }
    this.admitting++;
    // An admission starts with synchronous checks of the paths (~0.5 ms). A burst of them back to back would hold
    // the event loop for its whole length, health and refusals waiting behind; one per turn lets those through.
    const turn = this.admissionTurn.then(() => new Promise<void>((resolve) => setImmediate(resolve)));
    this.admissionTurn = turn;
    try {
      await turn;
      return await this.admit(request);
    } finally {
      this.admitting--;
    }
  }

  private async admit(submitted: JobRequest): Promise<Job> {
    const model = await this.modelOf(submitted);
    // A queued job names its model, so that only a render node that has it takes the job.
    const request = this.o.executor ? { ...submitted, model: model.name } : submitted;
    const mask = request.mask.type === 'file' ? request.mask : undefined;
    const out = request.output;
    checkPaths([
      ['source.path', request.source.path],
      ['mask.path', mask?.path],
      ['output.path', out?.path],
      ['output.folder', out?.folder],
    ]);
    const named = !!(out?.path || out?.folder);
    if (!named && !this.o.rendersDir && this.o.executor) throw noSharedOutput(this.rendersDir);
    const id = crypto.randomBytes(6).toString('hex');
    const outputPath = defaultOutputPath(request, id, this.o.rendersDir ?? this.rendersDir);
    const asMediaProblem =
      (field: (e: MediaError) => string) =>
      (err: unknown): never => {
        throw err instanceof MediaError ? mediaProblem(err, field(err)) : err;
      };
    // The private renders folder is the engine's own; a folder or file the client or --renders named is checked like
    // any input.
    if (named || this.o.rendersDir) {
      try {
        // First: a result never replaces what the job reads or the engine's state, even with overwrite.
        checkNotAnInput(outputPath, { source: request.source.path, mask: mask?.path, stateDir: this.o.dataDir });
        checkOutputTarget(outputPath, {
          overwrite: out?.overwrite ?? false,
          mayCreateFolder: !out?.path,
          videoName: !!out?.path,
        });
      } catch (err) {
        asMediaProblem(() => (out?.path ? 'output.path' : 'output.folder'))(err);
      }
    }
    // Windows: a path ffmpeg cannot open (MAX_PATH) is refused now, before the probe that would fail on it.
    try {
      checkFfmpegPaths({ source: request.source.path, mask: mask?.path, output: outputPath });
    } catch (err) {
      asMediaProblem((e) =>
        e.file === request.source.path
          ? 'source.path'
          : e.file === mask?.path
            ? 'mask.path'
            : out?.path
              ? 'output.path'
              : 'output.folder',
      )(err);
    }
    const plan: JobPlan = await planJob(request, model, outputPath, undefined, this.o.memoryLimitBytes).catch(
      asMediaProblem((e) =>
        e.code === 'bad-range'
          ? /^(Out|In and Out)\b/.test(e.message)
            ? 'source.out'
            : 'source.in'
          : e.code === 'bad-mask'
            ? 'mask.path'
            : 'source.path',
      ),
    );
    // A matte that does not fit, or a box too small to cover a pixel at the working size, is refused now rather
    // than failing when the job runs.
    const maskSpec = maskSpecOf(request.mask);
    if (maskSpec) {
      const field = maskSpec.kind === 'file' ? 'mask.path' : 'mask';
      await checkMask(maskSpec, maskTarget(plan)).catch(asMediaProblem(() => field));
    }
    // A second job writing the same file would collide at rename time; refuse it now.
    const clash = [...this.jobs.values()].find(
      (j) => (j.state === 'queued' || j.state === 'running') && j.outputPath === outputPath,
    );
    if (clash)
      throw ProblemError.of(
        409,
        'Output in use',
        `job ${clash.id} is already writing ${outputPath}; choose another output path`,
        'output.path',
      );
    const job: Job = {
      id,
      state: 'queued',
      createdAt: new Date().toISOString(),
      request,
      seed: request.seed ?? crypto.randomInt(0, 2 ** 32 - 1),
      outputPath,
      progress: { stage: 'queued', fraction: 0, frames: plan.frameCount },
      warnings: [],
      restarts: 0,
    };
    try {
      this.store.save(job);
    } catch (err) {
      throw ProblemError.of(
        507,
        'Cannot save the job',
        `the engine could not record the job in ${this.store.dir} (${(err as Error).message}); free space on that drive, then submit again`,
        undefined,
        'storage-full',
      );
    }
    this.plans.set(id, plan);
    this.jobs.set(id, job);
    this.placeInQueue();
    this.emit(job, { type: 'progress', job });
    // Start on the next turn, so a caller that subscribes right after submitting sees every stage.
    setImmediate(() => this.pump());
    return structuredClone(job);
  }

  list(): Job[] {
    return [...this.jobs.values()].sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  }

  get(id: string): Job | undefined {
    return this.jobs.get(id);
  }

  private require(id: string): Job {
    const job = this.jobs.get(id);
    if (!job)
      throw ProblemError.of(
        404,
        'No such job',
        `there is no job ${id}; list jobs with GET /v1/jobs`,
        undefined,
        'job-not-found',
      );
    return job;
  }

  latestPreview(id: string): Buffer | undefined {
    this.require(id);
    return this.previews.get(id);
  }

  cancel(id: string): Job {
    const job = this.require(id);
    const running = this.running.get(id);
    // A job waiting in a render queue is handed over already: only its executor can take it back.
    if (job.state === 'queued' && !running) return this.finish(job, 'canceled', {});
    if (job.state === 'queued' || job.state === 'running') {
      running?.cancel();
      return job;
    }
    throw ProblemError.of(
      409,
      'Job already finished',
      `job ${id} already ${job.state}; nothing to cancel`,
      undefined,
      'job-finished',
    );
  }

  resultFile(id: string): string {
    const job = this.require(id);
    if (job.state !== 'succeeded' || !job.result) {
      throw ProblemError.of(
        409,
        'No result',
        job.state === 'failed' || job.state === 'canceled'
          ? `job ${id} ${job.state}; it has no result`
          : `job ${id} is ${job.state}; the result is ready when its state is succeeded`,
        undefined,
        'no-result',
      );
    }
    if (!fs.existsSync(job.result.path))
      throw ProblemError.of(
        410,
        'Result removed',
        `${job.result.path} no longer exists; it was moved or deleted after the job finished`,
        undefined,
        'result-gone',
      );
    return job.result.path;
  }

  subscribe(id: string, listener: (e: JobEvent) => void): () => void {
    this.require(id);
    this.events.on(id, listener);
    return () => this.events.off(id, listener);
  }

  health(): Health {
    const info = this.o.worker.info;
    const all = [...this.jobs.values()];
    return {
      ok: true,
      version: this.o.version,
      model: info.name,
      modelDir: info.dir,
      provider: info.provider,
      providerFallbacks: info.providerFallbacks,
      ffmpeg: mediaTools(),
      queue: {
        queued: all.filter((j) => j.state === 'queued').length,
        running: all.filter((j) => j.state === 'running').length,
        ...this.o.executor?.queueState(),
      },
    };
  }

  /** The model a request runs on: this engine's own, or with a render queue, one that a live node announces. */
  private async modelOf(request: JobRequest): Promise<ModelInfo> {
    const own = this.o.worker.info;
    if (!request.model || request.model === own.name) return own;
    if (!this.o.executor)
      throw ProblemError.of(
        422,
        'Model not here',
        `this engine runs model ${own.name}, not ${request.model}; start it with --model ${request.model} (reshoot models lists the installed ones), or leave model out`,
        'model',
      );
    const found = await this.o.executor.modelInfo(request.model);
    if (found) return found;
    const have = [...new Set((await this.o.executor.workers()).flatMap((w) => w.models))].sort();
    throw ProblemError.of(
      422,
      'No render node has this model',
      `no render node has model ${request.model} now (${have.length ? `they have ${have.join(', ')}` : 'none is running'}); start one with reshoot worker --model ${request.model}, or choose a model a node has`,
      'model',
    );
  }

  async workers(): Promise<WorkerStatus[]> {
    return this.o.executor ? this.o.executor.workers() : [];
  }

  models(): ModelSummary[] {
    const info = this.o.worker.info;
    return [
      {
        name: info.name,
        dir: info.dir,
        loaded: true,
        nativeSize: info.nativeSize,
        latentChannels: info.latentChannels,
        provider: info.provider,
      },
    ];
  }

  async probe(file: string) {
    checkPaths([['path', file]]);
    try {
      return await probeMedia(file);
    } catch (err) {
      if (err instanceof MediaError) throw mediaProblem(err, 'path');
      throw err;
    }
  }

  async still(file: string, t: number, maxWidth?: number): Promise<Buffer> {
    checkPaths([['path', file]]);
    try {
      return await extractStill(file, t, maxWidth);
    } catch (err) {
      if (err instanceof MediaError) throw mediaProblem(err, 'path');
      throw err;
    }
  }

  /**
   * Stops taking jobs. A job running here is canceled and left queued for the next start; jobs handed to render
   * nodes go on there, and the next start attaches to them again.
   */
  async close(): Promise<void> {
    this.closed = true;
    if (this.o.executor) {
      await this.o.executor.close();
      return;
    }
    const ids = [...this.running.keys()];
    for (const id of ids) this.running.get(id)?.cancel();
    await new Promise<void>((resolve) => {
      const check = () => (this.running.size > 0 ? setTimeout(check, 20) : resolve());
      check();
    });
    for (const id of ids) {
      const job = this.jobs.get(id);
      if (job) this.update(job, { state: 'queued', progress: { stage: 'queued', fraction: 0 } }, true);
    }
  }

  /**
   * A state change that cannot be written (data drive full, folder removed) must not take the engine down: this runs
   * inside worker progress callbacks, where a throw would be an uncaught exception. The job lives on in memory.
   */
  private save(job: Job): void {
    try {
      this.store.save(job);
    } catch (err) {
      this.log(
        `could not save job ${job.id} in ${this.store.dir}: ${(err as Error).message}; its state survives a restart only once saving works again`,
      );
    }
  }

  private emit(job: Job, e: JobEvent): void {
    // Listeners get a snapshot: the job object itself keeps changing after the event.
    if (this.events.listenerCount(job.id) === 0) return;
    this.events.emit(job.id, e.type === 'preview' ? e : { ...e, job: structuredClone(e.job) });
  }

  private update(job: Job, patch: Partial<Job>, persist: boolean): Job {
    Object.assign(job, patch);
    const now = Date.now();
    if (persist || now - (this.lastPersist.get(job.id) ?? 0) > PERSIST_INTERVAL_MS) {
      this.lastPersist.set(job.id, now);
      this.save(job);
    }
    this.emit(job, { type: 'progress', job });
    return job;
  }

  private finish(job: Job, state: 'succeeded' | 'failed' | 'canceled', patch: Partial<Job>): Job {
    Object.assign(job, patch, { state, finishedAt: new Date().toISOString() });
    if (state === 'succeeded') job.progress = { ...job.progress, stage: 'done', fraction: 1, etaSec: 0 };
    this.save(job);
    this.plans.delete(job.id);
    this.lastPersist.delete(job.id);
    this.previews.delete(job.id);
    this.emit(job, { type: 'done', job });
    this.pruneHistory();
    // A waiting job canceled moves those behind it up; a finished one is followed by pump(), which renumbers too.
    this.placeInQueue();
    return job;
  }

  /**
   * Numbers the waiting jobs 1, 2, … in the order they will run, and tells the followers of each job whose place
   * changed (one ahead of it started, finished or was canceled), so a card never shows a stale place.
   */
  private placeInQueue(): void {
    const waiting = [...this.jobs.values()]
      .filter((j) => j.state === 'queued')
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt));
    waiting.forEach((job, i) => {
      if (job.progress.queuePosition === i + 1) return;
      job.progress = { ...job.progress, queuePosition: i + 1 };
      this.emit(job, { type: 'progress', job });
    });
  }

  /** Hands waiting jobs to the executor, oldest first, while it has room. */
  private pump(): void {
    const limit = this.o.executor?.concurrency ?? 1;
    while (!this.closed && this.running.size < limit) {
      const next = [...this.jobs.values()]
        // After a restart, a job a render node was running is attached to again like a waiting one.
        .filter((j) => !this.running.has(j.id) && (j.state === 'queued' || (this.remote && j.state === 'running')))
        .sort((a, b) => a.createdAt.localeCompare(b.createdAt))[0];
      if (!next) break;
      void this.execute(next).finally(() => this.pump());
    }
    this.placeInQueue();
  }

  private async execute(job: Job): Promise<void> {
    const hooks: RunHooks = {
      onProgress: (p: JobProgress) => this.update(job, { progress: p }, false),
      onPreview: (png: Buffer) => {
        this.previews.set(job.id, png);
        this.emit(job, { type: 'preview', jobId: job.id, png: png.toString('base64') });
      },
      onWarning: (w: string) => {
        if (!job.warnings.includes(w)) job.warnings.push(w);
      },
      onStart: (worker) =>
        this.update(
          job,
          {
            state: 'running',
            worker,
            startedAt: new Date().toISOString(),
            progress: { stage: 'probing', fraction: 0 },
          },
          true,
        ),
    };
    // Synchronously, before any await: pump() counts this job as handed over from here on. Both executors set
    // cancelHook before their first await.
    this.running.set(job.id, { cancel: () => hooks.cancelHook?.cancel() });
    try {
      const result = this.o.executor ? await this.o.executor.run(job, hooks) : await this.runHere(job, hooks);
      this.finish(job, 'succeeded', { result });
      this.log(`job ${job.id} succeeded: ${result.frames} frames in ${result.seconds.toFixed(1)} s → ${result.path}`);
    } catch (err) {
      // A closing engine leaves handed-over jobs to their render nodes; it learns how they ended at its next start.
      if (this.closed && this.remote) return;
      if (err instanceof CanceledError) {
        if (!this.closed) this.finish(job, 'canceled', {});
      } else {
        let detail =
          err instanceof ProblemError || err instanceof MediaError ? err.message : `${(err as Error).message ?? err}`;
        // The worker's own words say what happened, not what to do next; the next task gets a fresh thread.
        if (/compute worker (stopped|was shut down)/.test(detail))
          detail +=
            '. Submit the job again; if it keeps failing, lower batchSize (the machine may be running out of memory)';
        this.finish(job, 'failed', {
          error: { title: err instanceof ProblemError ? err.problem.title : 'Edit failed', detail },
        });
        this.log(`job ${job.id} failed: ${detail}`);
      }
    } finally {
      this.running.delete(job.id);
    }
  }

  /** The job in this process's compute worker. */
  private async runHere(job: Job, hooks: RunHooks): Promise<JobResult> {
    let canceledEarly = false;
    const ctx = {
      worker: this.o.worker,
      cache: this.cache,
      seed: job.seed,
      onProgress: hooks.onProgress,
      onPreview: hooks.onPreview,
      onWarning: hooks.onWarning,
      cancelHook: undefined as { cancel(): void } | undefined,
      memoryLimitBytes: this.o.memoryLimitBytes,
    };
    hooks.cancelHook = { cancel: () => (ctx.cancelHook ? ctx.cancelHook.cancel() : (canceledEarly = true)) };
    this.update(
      job,
      { state: 'running', startedAt: new Date().toISOString(), progress: { stage: 'probing', fraction: 0 } },
      true,
    );
    // Jobs recovered after a restart were planned by another process; plan again against the media as it is now.
    const plan =
      this.plans.get(job.id) ??
      (await planJob(job.request, this.o.worker.info, job.outputPath, undefined, this.o.memoryLimitBytes));
    if (canceledEarly) throw new CanceledError();
    return runJob(job.request, plan, ctx);
  }
}

/** Whether ffmpeg and ffprobe can be started, and if not, the sentence that says how to fix it. */
function mediaTools(): { ok: boolean; detail?: string } {
  try {
    ffprobePath();
    ffmpegPath();
    return { ok: true };
  } catch (err) {
    return { ok: false, detail: err instanceof Error ? err.message : String(err) };
  }
}

/** Temp files the encoder and the matte writer leave next to an output when the process dies mid-write. */
export function removePartialOutputs(outputPath: string): void {
  const dir = path.dirname(outputPath);
  const ext = path.extname(outputPath);
  const prefix = `.${path.basename(outputPath, ext)}.partial-`;
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  const mattePrefix = partialMattePrefix(outputPath);
  for (const name of names) {
    // Best effort: a leftover that Windows still holds open is tried again at the next start, not a failed start.
    if (name.startsWith(prefix) && name.endsWith(ext)) removeQuietly(path.join(dir, name));
    // A matte sequence's hidden temp folder (jobs/matte-output.ts).
    if (name.startsWith(mattePrefix)) removeQuietly(path.join(dir, name), { recursive: true });
  }
}
