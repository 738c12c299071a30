// Where the render queue is: a Redis URL (redis:// or rediss:// for TLS) and a password that never appears in a log,
// a health document or an error. The password comes from the URL or from an environment variable, not from its own
// command-line option: a command line is visible to every user of the machine (ps, Task Manager).
import { isIP } from 'node:net';
import type { RedisOptions } from 'ioredis';
import type { ConnectionOptions } from 'bullmq';

/** An unusable --queue value; the message says what to write instead. */
export class QueueConfigError extends Error {
  override name = 'QueueConfigError';
}

export interface QueueConnection {
  /** The URL without credentials: what logs and messages show. */
  display: string;
  /** For ioredis. */
  options: RedisOptions;
  /** The same, typed for BullMQ (its own declaration of ioredis' options). */
  bullmq: ConnectionOptions;
}

export const DEFAULT_PASSWORD_ENV = 'REDIS_PASSWORD';

/**
 * `url`: redis://[user[:password]@]host[:port][/db] or rediss://… (TLS). `passwordEnv`: the environment variable that
 * holds the password (default REDIS_PASSWORD); it wins over a password in the URL.
 */
export function queueConnection(
  url: string,
  env: NodeJS.ProcessEnv = process.env,
  passwordEnv = DEFAULT_PASSWORD_ENV,
): QueueConnection {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new QueueConfigError(
      `--queue "${redact(url)}" is not a URL; write it as redis://HOST:PORT (or rediss://HOST:PORT for TLS)`,
    );
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:')
    throw new QueueConfigError(
      `--queue must start with redis:// or rediss:// (TLS), got ${u.protocol}//; e.g. redis://render-queue.local:6379`,
    );
  if (!u.hostname) throw new QueueConfigError('--queue has no host; write it as redis://HOST:PORT');
  const db = u.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d+$/.test(db))
    throw new QueueConfigError(`--queue's path must be a database number (redis://HOST:PORT/0), got "/${db}"`);
  const password = env[passwordEnv] || decodeURIComponent(u.password) || undefined;
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  const options = {
    host,
    port: u.port ? Number(u.port) : 6379,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(password ? { password } : {}),
    ...(db ? { db: Number(db) } : {}),
    // TLS checks the certificate against the host; SNI carries names only (RFC 6066), never an address.
    ...(u.protocol === 'rediss:' ? { tls: isIP(host) ? {} : { servername: host } } : {}),
    // BullMQ's blocking commands must wait as long as it takes, not fail after a retry count.
    maxRetriesPerRequest: null,
  };
  return {
    display: `${u.protocol}//${u.host}${db ? `/${db}` : ''}`,
    options,
    bullmq: options,
  };
}

/** The URL with any user and password cut out, for a message about a URL that could not be parsed. */
function redact(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//');
}

/**
 * An 'error' listener for a connection that retries by itself (ioredis prints a stack for every unhandled one):
 * logs each new reason once, not every retry of the same one. Never the password: ioredis' messages hold none.
 */
export function connectionErrors(display: string, log: (line: string) => void): (err: Error) => void {
  let last = '';
  return (err) => {
    if (err.message === last) return;
    last = err.message;
    log(`render queue ${display}: ${err.message} (retrying)`);
  };
}

/** The queue did not answer in time (or refused the login); the message names it and what to check. */
export class QueueUnreachableError extends Error {
  override name = 'QueueUnreachableError';
}

const CONNECT_TIMEOUT_MS = 15_000;

/**
 * Waits for the connections' first answer. A queue that cannot be reached is a reason not to start (every job would
 * wait forever), but ioredis retries for ever: past the timeout `close` ends the retries, so the process can exit.
 */
export async function whenReady(
  connection: QueueConnection,
  ready: Promise<unknown>,
  close: () => Promise<void> | void,
  timeoutMs = CONNECT_TIMEOUT_MS,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new QueueUnreachableError(
            `cannot reach the render queue at ${connection.display} within ${timeoutMs / 1000} s. ${QUEUE_CHECKS}`,
          ),
        ),
      timeoutMs,
    );
  });
  try {
    await Promise.race([ready, timeout]);
  } catch (err) {
    await close();
    if (err instanceof QueueUnreachableError) throw err;
    // Redis' own reason (NOAUTH, WRONGPASS, a TLS error): ioredis' messages hold no password.
    throw new QueueUnreachableError(
      `cannot use the render queue at ${connection.display}: ${(err as Error).message.replace(/\.$/, '')}. ${QUEUE_CHECKS}`,
    );
  } finally {
    clearTimeout(timer);
  }
}

export const QUEUE_CHECKS = `Check that Redis runs there, that this machine may connect to it (bind address, firewall), and its password (--queue-password-env, default ${DEFAULT_PASSWORD_ENV}) and TLS (rediss://)`;
