// What the engine and the render nodes say to each other through Redis. BullMQ carries the jobs, their progress and
// their results; the rest (cancel requests, the nodes' heartbeats) is a few keys and one channel under the same prefix.
import type { Job, JobProgress, JobResult, WorkerStatus } from '../api/schemas';
import type { ModelInfo } from '../models/sd-model';

/** BullMQ's key prefix and the queue's name: every key of the farm starts with `reshoot:`. */
export const PREFIX = 'reshoot';

/**
 * One queue per model: a render node takes jobs only from the queues of the models it loaded, so a job never reaches
 * a node that cannot run it, and a node that failed to load a model leaves its jobs to the others.
 */
export const queueOf = (model: string) => `edits-${model}`;

/**
 * BullMQ refuses a custom job id made of digits only ("Custom Id cannot be integers"), and one engine id in ~280 is
 * (12 hex digits): such ids get a letter in front. Others stay as they are, so jobs queued before keep theirs.
 */
export const bullJobId = (id: string) => (/^\d+$/.test(id) ? `j${id}` : id);
export const engineJobId = (bullId: string) => bullId.replace(/^j(?=\d+$)/, '');

/** A queued edit: the job record as the engine planned it, paths as the engine names them. */
export interface FarmJobData {
  job: Job;
  /** The nodes that could not run it (farm/hand-back.ts), each with why. */
  refusals?: Refusal[];
}

export interface Refusal {
  /** The node's id (host-pid). */
  node: string;
  reason: string;
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
/**
 * Set by a node just before it renames a job's result into place, and the result once it has it: a node that takes
 * the job again after its last one died in between knows that the file at the output path is this job's own.
 */
export const committedKey = (jobId: string) => `${PREFIX}:committed:${jobId}`;
export const resultKey = (jobId: string) => `${PREFIX}:result:${jobId}`;
/** How long those are kept: as long as the queue keeps finished jobs. */
export const KEEP_FINISHED_S = 7 * 24 * 3600;

/** One key per live render node, with a time to live of a few heartbeats. */
export const workerKey = (id: string) => `${PREFIX}:workers:${id}`;
export const WORKER_KEYS = `${PREFIX}:workers:*`;

/** What a node announces: its status, and the models it loaded as it loaded them (engines plan jobs with them). */
export interface Announcement {
  status: WorkerStatus;
  modelInfo: Record<string, ModelInfo>;
}

export function parseAnnouncement(text: string | null): Announcement | undefined {
  if (!text) return undefined;
  try {
    const a = JSON.parse(text) as Partial<Announcement>;
    return a.status && a.modelInfo ? (a as Announcement) : undefined;
  } catch {
    return undefined;
  }
}
