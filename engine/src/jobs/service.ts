// What the HTTP server (and the CLI) may ask of the engine. The server holds no editing logic: it parses with the
// api/ schemas, calls this, and renders results or problem documents.
import type { Health, Job, JobEvent, JobRequest, Problem, WorkerStatus } from '../api/schemas';
import type { MediaInfo } from '../media/probe';

/** An error that already knows its HTTP status and the sentence that tells a person what to do. */
export class ProblemError extends Error {
  override name = 'ProblemError';
  constructor(readonly problem: Problem) {
    super(problem.detail);
  }
  static of(
    status: number,
    title: string,
    detail: string,
    field?: string,
    slug = title.toLowerCase().replace(/[^a-z0-9]+/g, '-'),
  ): ProblemError {
    return new ProblemError({
      type: `https://reshoot.dev/problems/${slug}`,
      title,
      status,
      detail,
      ...(field ? { field } : {}),
    });
  }
}

export interface ModelSummary {
  name: string;
  dir: string;
  loaded: boolean;
  nativeSize?: number;
  latentChannels?: number;
  provider?: string;
}

export interface JobService {
  /** Validates against the media (probe, range, mask, output) and queues; rejects with ProblemError (4xx, 429 when the queue is full). */
  submit(request: JobRequest): Promise<Job>;
  list(): Job[];
  get(id: string): Job | undefined;
  /** 404 for an unknown job, 409 when it already finished. */
  cancel(id: string): Job;
  /** The finished result's file; 404 unknown job, 409 not finished or failed. */
  resultFile(id: string): string;
  /**
   * The newest live preview of a running job, as PNG: what the event stream sends, for clients that can only poll.
   * Undefined before the first preview and once the job ended; 404 for an unknown job.
   */
  latestPreview(id: string): Buffer | undefined;
  /** Events of one job until it ends; returns the unsubscribe function. */
  subscribe(id: string, listener: (e: JobEvent) => void): () => void;
  health(): Health;
  models(): ModelSummary[];
  /** The render nodes that take this engine's jobs from a queue; empty when the engine runs them itself. */
  workers(): Promise<WorkerStatus[]>;
  probe(path: string): Promise<MediaInfo>;
  /** PNG of the frame at t seconds (display orientation), at most maxWidth wide. */
  still(path: string, t: number, maxWidth?: number): Promise<Buffer>;
}
