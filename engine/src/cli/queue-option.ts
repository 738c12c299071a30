// --queue and --queue-password-env, shared by serve, worker and workers.
import {
  DEFAULT_PASSWORD_ENV,
  QueueConfigError,
  queueConnection,
  QueueUnreachableError,
  type QueueConnection,
} from '../farm/connection';
import { MODEL_ID } from '../api/schemas';
import { CliError } from './args';

export const QUEUE_OPTIONS = {
  queue: { type: 'string' },
  'queue-password-env': { type: 'string' },
} as const;

export function queueOption(values: { queue?: string; 'queue-password-env'?: string }): QueueConnection | undefined {
  if (values.queue === undefined) return undefined;
  try {
    return queueConnection(values.queue, process.env, values['queue-password-env'] ?? DEFAULT_PASSWORD_ENV);
  } catch (err) {
    if (err instanceof QueueConfigError) throw new CliError(err.message);
    throw err;
  }
}

/** `open()`, with a queue that cannot be reached turned into a CliError (exit 1) that says what to check. */
export async function reachQueue<T>(open: () => Promise<T>): Promise<T> {
  try {
    return await open();
  } catch (err) {
    if (err instanceof QueueUnreachableError) {
      // A client library's retry timer must not keep a command that has failed alive (ioredis and BullMQ may hold
      // one after a refused login); the message is printed before this fires.
      setTimeout(() => process.exit(1), 2000).unref();
      throw new CliError(err.message, 1);
    }
    throw err;
  }
}

/** A model that jobs on the queue name: its folder's name is its id, and must be one (it names a queue). */
export function queueModelId(name: string, dir: string): string {
  if (!MODEL_ID.test(name))
    throw new CliError(
      `the model folder ${dir} cannot be used with a render queue: its name "${name}" is its id there, and an id is letters, digits, ".", "_" and "-" (at most 64); rename the folder`,
    );
  return name;
}
