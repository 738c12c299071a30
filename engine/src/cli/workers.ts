// `reshoot workers`: the render nodes that announce themselves on a queue.
import { Redis } from 'ioredis';
import { listWorkers } from '../farm/registry';
import { CliError, parse } from './args';
import { QUEUE_CHECKS } from '../farm/connection';
import { QUEUE_OPTIONS, queueOption } from './queue-option';

export async function runWorkers(argv: string[]): Promise<number> {
  const { values } = parse(argv, { ...QUEUE_OPTIONS, json: { type: 'boolean' } });
  const queue = queueOption(values);
  if (!queue) throw new CliError('reshoot workers needs --queue redis://HOST:PORT, the queue the render nodes use');
  // One look: no retries, so that an unreachable queue or a wrong password is said at once.
  const redis = new Redis({ ...queue.options, lazyConnect: true, retryStrategy: () => null });
  // The error event has the reason (refused, wrong password); connect() rejects only with "Connection is closed".
  let reason: Error | undefined;
  redis.on('error', (err: Error) => (reason ??= err));
  try {
    let workers;
    try {
      await redis.connect();
      workers = await listWorkers(redis);
    } catch (err) {
      throw new CliError(
        `cannot read the render queue at ${queue.display}: ${(reason ?? (err as Error)).message.replace(/\.$/, '')}. ${QUEUE_CHECKS}`,
        1,
      );
    }
    if (values.json) {
      console.log(JSON.stringify({ workers }, null, 2));
    } else if (workers.length === 0) {
      console.log(`no render nodes on ${queue.display} (start one with reshoot worker --queue ${queue.display})`);
    } else {
      for (const w of workers) {
        const age = ((Date.now() - Date.parse(w.lastHeartbeat)) / 1000).toFixed(0);
        const jobs = w.currentJobs.length ? `running ${w.currentJobs.join(', ')}` : 'idle';
        console.log(
          `${w.host}\t${w.id}\t${w.provider}${w.device ? ` (${w.device})` : ''}\t${w.models.join(',')}\t${jobs}\theartbeat ${age} s ago`,
        );
      }
    }
    return 0;
  } finally {
    redis.disconnect();
  }
}
