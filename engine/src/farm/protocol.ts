// What the engine and the render nodes say to each other through Redis. BullMQ carries the jobs, their progress and
// their results; the rest (cancel requests, the nodes' heartbeats) is a few keys and one channel under the same prefix.
import type { Job, JobProgress, JobResult, WorkerStatus } from '../api/schemas';

/** BullMQ's key prefix and the queue's name: every key of the farm starts with `reshoot:`. */
export const PREFIX = 'reshoot';
export const QUEUE = 'edits';

/** A queued edit: the job record as the engine planned it, paths as the engine names them. */
export interface FarmJobData {
  job: Job;
}

export type FarmJobResult = JobResult;

/**
 * What a render node reports while it runs a job, through BullMQ's job progress. Every message names the node: an
 * engine that was down when the job started learns where it runs from whichever message comes next.
 */
export type FarmProgress = { worker: NonNullable<Job['worker']> } & (
  | { kind: 'start' }
  | { kind: 'progress'; progress: JobProgress }
  | { kind: 'preview'; png: string /* base64 */ }
  | { kind: 'warning'; warning: string }
);

/** The failure reason of a job that was canceled (not failed): the engine reports it as canceled. */
export const CANCELED_REASON = 'reshoot: canceled from the engine';

/** Published with a job id: the render node running it stops it. */
export const CANCEL_CHANNEL = `${PREFIX}:cancel`;
/** Set when a cancel is asked for, so a node that takes the job later does not start it. */
export const canceledKey = (jobId: string) => `${PREFIX}:canceled:${jobId}`;
/** One key per live render node, with a time to live of a few heartbeats. */
export const workerKey = (id: string) => `${PREFIX}:workers:${id}`;
export const WORKER_KEYS = `${PREFIX}:workers:*`;

export function parseWorkerStatus(text: string | null): WorkerStatus | undefined {
  if (!text) return undefined;
  try {
    return JSON.parse(text) as WorkerStatus;
  } catch {
    return undefined;
  }
}
