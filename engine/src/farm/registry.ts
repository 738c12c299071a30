// Render nodes announce themselves with a key that expires a few heartbeats after their last one: a node that dies,
// loses power or its network drops off the list by itself, with nothing to clean up.
import type { Redis } from 'ioredis';
import type { WorkerStatus } from '../api/schemas';
import { parseWorkerStatus, WORKER_KEYS, workerKey } from './protocol';

/** Heartbeats a node may miss before it drops off the list. */
const MISSED_HEARTBEATS = 3;

export async function announce(redis: Redis, status: WorkerStatus, heartbeatMs: number): Promise<void> {
  await redis.set(workerKey(status.id), JSON.stringify(status), 'PX', heartbeatMs * MISSED_HEARTBEATS);
}

export async function withdraw(redis: Redis, id: string): Promise<void> {
  await redis.del(workerKey(id));
}

/** The live render nodes, by host. */
export async function listWorkers(redis: Redis): Promise<WorkerStatus[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', WORKER_KEYS, 'COUNT', 100);
    keys.push(...found);
    cursor = next;
  } while (cursor !== '0');
  if (keys.length === 0) return [];
  const values = await redis.mget(...keys);
  return values
    .map(parseWorkerStatus)
    .filter((w): w is WorkerStatus => w !== undefined)
    .sort((a, b) => a.host.localeCompare(b.host) || a.id.localeCompare(b.id));
}
