// A failed try is either the job's own fault, which any node would hit too (input that does not decode, an output
// folder that is not there, a range past the clip's end), or this node's (it cannot reach the job's paths, its
// ffmpeg or its model fails): the first ends the job at once, the second hands the job to the other nodes. BullMQ's
// own retries would give it back to whichever node asks first, often the same fast-failing one, three times over.
import { DelayedError, UnrecoverableError, type Job as BullJob } from 'bullmq';
import type { Redis } from 'ioredis';
import { mediaProblem } from '../jobs/manager';
import { ProblemError } from '../jobs/service';
import { MediaError } from '../media/errors';
import type { FarmJobData, FarmJobResult, Refusal } from './protocol';
import { listWorkers } from './registry';

/** How long a handed-back job waits before a node may take it again: no node spins on a job it refused. */
const HAND_BACK_DELAY_MS = 1000;

/** Input and plan errors are the request's, as the engine would have answered them with a 4xx. */
export function isJobFault(err: unknown): boolean {
  if (err instanceof ProblemError) return err.problem.status < 500;
  if (err instanceof MediaError) return mediaProblem(err, '').problem.status < 500;
  return false;
}

/** Whether this node refused the job before: it hands it on again rather than fail the same way. */
export function refusedBy(data: FarmJobData, node: string): boolean {
  return (data.refusals ?? []).some((r) => r.node === node);
}

/**
 * Records this node's refusal (`reason`, unless it refused before) in the job and puts the job back in the queue for
 * the live nodes of its model that have not refused it; when there is none left, fails it with every node's reason.
 * Always throws: BullMQ's DelayedError (the job is back in the queue) or UnrecoverableError (it failed).
 */
export async function handBack(
  redis: Redis,
  bullJob: BullJob<FarmJobData, FarmJobResult>,
  token: string | undefined,
  refusal: Refusal | undefined,
  model: string,
): Promise<never> {
  let refusals = bullJob.data.refusals ?? [];
  if (refusal && !refusedBy(bullJob.data, refusal.node)) {
    refusals = [...refusals, refusal];
    await bullJob.updateData({ ...bullJob.data, refusals });
  }
  const live = (await listWorkers(redis)).filter((w) => w.models.includes(model));
  if (live.every((w) => refusals.some((r) => r.node === w.id)))
    throw new UnrecoverableError(
      `no render node could run this job (${refusals.map((r) => `${r.node}: ${r.reason}`).join('; ')})`,
    );
  await bullJob.moveToDelayed(Date.now() + HAND_BACK_DELAY_MS, token);
  throw new DelayedError();
}
