// `reshoot workers`: the render nodes that announce themselves on a queue.
import { Redis } from 'ioredis';
import { listWorkers } from '../farm/registry';
import { CliError, parse } from './args';
import { QUEUE_OPTIONS, queueOption, reachQueue } from './queue-option';

export async function runWorkers(argv: string[]): Promise<number> {
  const { values } = parse(argv, { ...QUEUE_OPTIONS, json: { type: 'boolean' } });
  const queue = queueOption(values);
  if (!queue) throw new CliError('reshoot workers needs --queue redis://HOST:PORT, the queue the render nodes use');
  const redis = new Redis({ ...queue.options, lazyConnect: true });
  try {
    const workers = await reachQueue(queue, async () => {
      await redis.connect();
      return listWorkers(redis);
    });
    if (values.json) {
      console.log(JSON.stringify({ workers }, null, 2));
    } else if (workers.length === 0) {
      console.log(`no render nodes on ${queue.display} (start one with reshoot worker --queue ${queue.display})`);
    } else {
      for (const w of workers) {
        const age = ((Date.now() - Date.parse(w.lastHeartbeat)) / 1000).toFixed(0);
        const jobs = w.currentJobs.length ? `running ${w.currentJobs.join(', ')}` : 'idle';
        console.log(`${w.host}\t${w.id}\t${w.provider}\t${w.models.join(',')}\t${jobs}\theartbeat ${age} s ago`);
      }
    }
    return 0;
  } finally {
    redis.disconnect();
  }
}
