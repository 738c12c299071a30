// --queue and --queue-password-env, shared by serve, worker and workers.
import { DEFAULT_PASSWORD_ENV, QueueConfigError, queueConnection, type QueueConnection } from '../farm/connection';
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

export const QUEUE_CHECKS = `Check that Redis runs there, that this machine may connect to it (bind address, firewall), and its password (--queue-password-env, default ${DEFAULT_PASSWORD_ENV}) and TLS (rediss://)`;

/** Seconds to reach Redis before a command gives up and says so (ioredis itself would retry for ever). */
const CONNECT_TIMEOUT_MS = 15_000;

/** `open()`, or a CliError that names the queue (never its password) and what to check. */
export async function reachQueue<T>(connection: QueueConnection, open: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new CliError(
            `cannot reach the render queue at ${connection.display} within ${CONNECT_TIMEOUT_MS / 1000} s. ${QUEUE_CHECKS}`,
            1,
          ),
        ),
      CONNECT_TIMEOUT_MS,
    );
  });
  try {
    return await Promise.race([open(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
