// GET /v1/jobs/:id/events as Server-Sent Events: a `job` snapshot, then `progress` / `preview` events, then `done`
// with the finished job, after which the stream ends.
import type { Request, Response } from 'express';
import type { Job, JobEvent } from '../api/schemas';
import type { JobService } from '../jobs/service';
import { problem } from './problems';
import { ProblemError } from '../jobs/service';

const TERMINAL: ReadonlySet<Job['state']> = new Set(['succeeded', 'failed', 'canceled']);

// Open streams per app, so that closing the server ends them instead of waiting for jobs that may run for hours.
const openStreams = new WeakMap<object, Set<() => void>>();

export function closeEventStreams(app: object): void {
  for (const end of [...(openStreams.get(app) ?? [])]) end();
}

export function jobNotFound(id: string): ProblemError {
  return new ProblemError(
    problem(404, 'job-not-found', 'No such job', `there is no job ${id}; list jobs with GET /v1/jobs`),
  );
}

export function streamJobEvents(
  app: object,
  service: JobService,
  heartbeatMs: number,
  req: Request,
  res: Response,
): void {
  const id = String(req.params.id);
  const job = service.get(id);
  if (!job) throw jobNotFound(id);
  // The spec makes EventSource reconnect whenever a stream ends; once the job is over, 204 is the way to tell it to stop.
  if (TERMINAL.has(job.state) && req.headers['last-event-id'] !== undefined) {
    res.status(204).end();
    return;
  }

  let seq = 0;
  let ended = false;
  const write = (type: string, data: unknown) => {
    if (!ended) res.write(`id: ${++seq}\nevent: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
  };

  // Subscribe before anything is written so an unknown-job error from the service can still become a problem document.
  const unsubscribe = TERMINAL.has(job.state)
    ? () => {}
    : service.subscribe(id, (e: JobEvent) => {
        write(e.type, e);
        if (e.type === 'done') end();
      });

  const streams = openStreams.get(app) ?? new Set<() => void>();
  openStreams.set(app, streams);
  let heartbeat: NodeJS.Timeout | undefined;
  const cleanup = () => {
    ended = true;
    if (heartbeat) clearInterval(heartbeat);
    streams.delete(end);
    unsubscribe();
  };
  function end(): void {
    if (ended) return;
    cleanup();
    res.end();
  }
  streams.add(end);
  res.on('close', cleanup);

  res.status(200).set({
    'Content-Type': 'text/event-stream; charset=utf-8',
    'Cache-Control': 'no-store',
    Connection: 'keep-alive',
    // Reverse proxies (nginx) would otherwise hold events back.
    'X-Accel-Buffering': 'no',
  });
  res.flushHeaders();
  res.socket?.setNoDelay(true);

  write('job', { type: 'job', job });
  if (TERMINAL.has(job.state)) {
    write('done', { type: 'done', job });
    end();
    return;
  }
  // Comments keep idle proxies and the client's own timeouts from dropping a stream while a long step computes.
  heartbeat = setInterval(() => {
    if (!ended) res.write(': keep-alive\n\n');
  }, heartbeatMs);
}
