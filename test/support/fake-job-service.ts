// An in-memory JobService whose jobs move only when the test says so, so the HTTP layer can be tested precisely.
// Semantics follow the JobService contract (and JobManager): 422 for a missing source file, 429 past the queue bound,
// 404 for unknown jobs, 409 to cancel a finished job or to fetch a result that is not there.
import * as fs from 'node:fs';
import type { Health, Job, JobEvent, JobProgress, JobRequest } from '../../engine/src/api/schemas';
import { ProblemError, type JobService, type ModelSummary } from '../../engine/src/jobs/service';

export interface FakeJobServiceOptions {
  /** Queued + running jobs at most; the next submission gets 429. */
  maxActive?: number;
  probe?: JobService['probe'];
  still?: JobService['still'];
  models?: ModelSummary[];
}

const TERMINAL = new Set<Job['state']>(['succeeded', 'failed', 'canceled']);

export class FakeJobService implements JobService {
  readonly jobs = new Map<string, Job>();
  private readonly listeners = new Map<string, Set<(e: JobEvent) => void>>();
  private readonly previews = new Map<string, Buffer>();
  private nextId = 1;
  submitted: JobRequest[] = [];
  /** Queued + running jobs at most; tests may change it between calls. */
  maxActive: number;

  constructor(private readonly o: FakeJobServiceOptions = {}) {
    this.maxActive = o.maxActive ?? Infinity;
  }

  async submit(request: JobRequest): Promise<Job> {
    if (!fs.existsSync(request.source.path)) {
      throw ProblemError.of(
        422,
        'Media not found',
        `${request.source.path} does not exist; give the absolute path of the clip's media file`,
        'source.path',
        'media-not-found',
      );
    }
    const active = [...this.jobs.values()].filter((j) => !TERMINAL.has(j.state)).length;
    if (active >= this.maxActive) {
      throw ProblemError.of(
        429,
        'Queue full',
        `${active} jobs are waiting already; wait for some to finish or cancel some, then submit again`,
        undefined,
        'queue-full',
      );
    }
    this.submitted.push(request);
    const id = `job${this.nextId++}`;
    const job: Job = {
      id,
      state: 'queued',
      createdAt: new Date(Date.UTC(2025, 0, 1, 0, 0, this.nextId)).toISOString(),
      request,
      seed: request.seed ?? 42,
      outputPath: `/renders/${id}.mp4`,
      progress: { stage: 'queued', fraction: 0 },
      warnings: [],
      restarts: 0,
    };
    this.jobs.set(id, job);
    return job;
  }

  list(): Job[] {
    return [...this.jobs.values()].reverse();
  }

  get(id: string): Job | undefined {
    return this.jobs.get(id);
  }

  latestPreview(id: string): Buffer | undefined {
    this.require(id);
    return this.previews.get(id);
  }

  cancel(id: string): Job {
    const job = this.require(id);
    if (TERMINAL.has(job.state))
      throw ProblemError.of(
        409,
        'Job already finished',
        `job ${id} already ${job.state}; nothing to cancel`,
        undefined,
        'job-finished',
      );
    return this.end(job, 'canceled', {});
  }

  resultFile(id: string): string {
    const job = this.require(id);
    if (job.state !== 'succeeded' || !job.result)
      throw ProblemError.of(
        409,
        'No result',
        `job ${id} is ${job.state}; the result is ready when its state is succeeded`,
        undefined,
        'no-result',
      );
    return job.result.path;
  }

  subscribe(id: string, listener: (e: JobEvent) => void): () => void {
    this.require(id);
    const set = this.listeners.get(id) ?? new Set();
    this.listeners.set(id, set);
    set.add(listener);
    return () => set.delete(listener);
  }

  health(): Health {
    const all = [...this.jobs.values()];
    return {
      ok: true,
      version: 'test',
      model: 'oracle',
      modelDir: '/models/oracle',
      provider: 'cpu',
      providerFallbacks: [],
      queue: {
        queued: all.filter((j) => j.state === 'queued').length,
        running: all.filter((j) => j.state === 'running').length,
      },
    };
  }

  models(): ModelSummary[] {
    return (
      this.o.models ?? [
        { name: 'oracle', dir: '/models/oracle', loaded: true, nativeSize: 64, latentChannels: 4, provider: 'cpu' },
      ]
    );
  }

  workers(): ReturnType<JobService['workers']> {
    return Promise.resolve([]);
  }

  probe(path: string): ReturnType<JobService['probe']> {
    if (!this.o.probe) throw new Error('FakeJobService: no probe function given');
    return this.o.probe(path);
  }

  still(path: string, t: number, maxWidth?: number): Promise<Buffer> {
    if (!this.o.still) throw new Error('FakeJobService: no still function given');
    return this.o.still(path, t, maxWidth);
  }

  // ---- test controls ----

  listenerCount(id: string): number {
    return this.listeners.get(id)?.size ?? 0;
  }

  /** Moves the job to running at this fraction (or progress) and tells subscribers. */
  advance(id: string, progress: number | Partial<JobProgress>): Job {
    const job = this.require(id);
    const p = typeof progress === 'number' ? { stage: 'editing' as const, fraction: progress } : progress;
    job.state = 'running';
    job.startedAt ??= new Date().toISOString();
    job.progress = { ...job.progress, ...p };
    this.emit({ type: 'progress', job });
    return job;
  }

  preview(id: string, png: Buffer): void {
    this.require(id);
    this.previews.set(id, png);
    this.emit({ type: 'preview', jobId: id, png: png.toString('base64') });
  }

  finish(id: string, resultPath: string): Job {
    const job = this.require(id);
    return this.end(job, 'succeeded', {
      result: {
        path: resultPath,
        frames: 8,
        fps: { num: 24, den: 1 },
        width: 64,
        height: 64,
        durationSec: 8 / 24,
        codec: 'h264',
        workingSize: { width: 64, height: 64 },
        unetEvaluations: 16,
        inversionCacheHit: false,
        seconds: 1.5,
      },
      progress: { stage: 'done', fraction: 1 },
    });
  }

  fail(id: string, title = 'Failed', detail = 'the fake job failed'): Job {
    return this.end(this.require(id), 'failed', { error: { title, detail } });
  }

  private end(job: Job, state: 'succeeded' | 'failed' | 'canceled', patch: Partial<Job>): Job {
    Object.assign(job, patch, { state, finishedAt: new Date().toISOString() });
    this.previews.delete(job.id);
    this.emit({ type: 'done', job });
    return job;
  }

  private emit(e: JobEvent): void {
    const id = e.type === 'preview' ? e.jobId : e.job.id;
    for (const l of [...(this.listeners.get(id) ?? [])]) l(e);
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
}
