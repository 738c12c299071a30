// Binding the engine. Loopback only unless asked otherwise: the API reads and writes the user's files.
import * as http from 'node:http';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import type express from 'express';
import { closeEventStreams } from './sse';

export interface ListenOptions {
  host?: string;
  port: number;
  allowNonLoopback?: boolean;
}

export interface RunningServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** How long close() lets ordinary in-flight requests finish before cutting their connections. */
const CLOSE_GRACE_MS = 2000;

export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost' || h === '::1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return net.isIPv4(v4) && v4.startsWith('127.');
}

// The Host check accepts loopback names only, so the URL to hand out is a loopback one even when bound to 0.0.0.0.
function urlHostFor(host: string): string {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (h === '::1') return '[::1]';
  if (h === 'localhost') return 'localhost';
  return '127.0.0.1';
}

export async function startServer(
  app: express.Express,
  { host = '127.0.0.1', port, allowNonLoopback = false }: ListenOptions,
): Promise<RunningServer> {
  if (!isLoopbackHost(host) && !allowNonLoopback) {
    throw new Error(
      `refusing to listen on ${host}: that makes the engine reachable from other machines, and anyone there who gets hold of the token can ` +
        `read and write files as you and run jobs on your GPU. Use 127.0.0.1 (the default). If you really need it (a render node behind a firewall), ` +
        `pass allowNonLoopback and add the address to the app's allowedHosts.`,
    );
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`port must be an integer from 0 to 65535 (0 picks a free one), got ${port}`);

  // The app's Host check answers a missing Host with a problem document that says what to do, not Node's bare 400.
  const server = http.createServer({ requireHostHeader: false }, app);
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE')
        reject(
          new Error(
            `port ${port} on ${host} is already in use: another reshoot engine may be running (try GET /v1/health there), or choose another port`,
          ),
        );
      else if (err.code === 'EACCES')
        reject(
          new Error(
            `not allowed to listen on ${host}:${port}; ports below 1024 need special rights, choose a higher one`,
          ),
        );
      else if (err.code === 'EADDRNOTAVAIL') reject(new Error(`${host} is not an address of this machine`));
      else reject(err);
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });

  const actual = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${urlHostFor(host)}:${actual}`,
    port: actual,
    close() {
      closing ??= new Promise<void>((resolve, reject) => {
        const cutoff = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS).unref();
        server.close((err) => {
          clearTimeout(cutoff);
          if (err) reject(err);
          else resolve();
        });
        // Event streams would otherwise hold close() open until their jobs end.
        closeEventStreams(app);
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}
