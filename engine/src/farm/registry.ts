// Render nodes announce themselves with a key that expires a few heartbeats after their last one: a node that dies,
// loses power or its network drops off the list by itself, with nothing to clean up.
import type { Redis } from 'ioredis';
import type { WorkerStatus } from '../api/schemas';
import type { ModelInfo } from '../models/sd-model';
import { parseAnnouncement, WORKER_KEYS, workerKey, type Announcement } from './protocol';

/** Heartbeats a node may miss before it drops off the list. */
const MISSED_HEARTBEATS = 3;

export async function announce(redis: Redis, a: Announcement, heartbeatMs: number): Promise<void> {
  await redis.set(workerKey(a.status.id), JSON.stringify(a), 'PX', heartbeatMs * MISSED_HEARTBEATS);
}

export async function withdraw(redis: Redis, id: string): Promise<void> {
  await redis.del(workerKey(id));
}

/** The live render nodes, by host. */
export async function listWorkers(redis: Redis): Promise<WorkerStatus[]> {
  return (await announcements(redis))
    .map((a) => a.status)
    .sort((a, b) => a.host.localeCompare(b.host) || a.id.localeCompare(b.id));
}

/** The model a live node loaded under this id. */
export async function announcedModel(redis: Redis, id: string): Promise<ModelInfo | undefined> {
  return (await announcements(redis)).map((a) => a.modelInfo[id]).find((info) => info !== undefined);
}

async function announcements(redis: Redis): Promise<Announcement[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', WORKER_KEYS, 'COUNT', 100);
    keys.push(...found);
    cursor = next;
  } while (cursor !== '0');
  if (keys.length === 0) return [];
  return (await redis.mget(...keys)).map(parseAnnouncement).filter((a): a is Announcement => a !== undefined);
}
