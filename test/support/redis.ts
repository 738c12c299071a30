// A real redis-server for the render-farm tests: its own port, its own folder (append-only file on, as the docs
// recommend for a render queue), started and stopped by the suite like any other child (children.ts).
//
// The binary is RESHOOT_REDIS_SERVER, else redis-server on PATH. No npm package ships one (see README, "Render farm"),
// so these tests are their own jest project, run by `npm run test:farm` and by CI, which installs Debian's package.
import type { ChildProcess } from 'node:child_process';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnTracked } from './children';

export interface RedisServer {
  port: number;
  url: string;
  dir: string;
  /** Stops it the way a service manager does (SIGTERM: Redis writes its append-only file and exits). */
  stop(): Promise<void>;
  /** Starts it again on the same port and folder, from what it persisted. */
  restart(): Promise<void>;
}

export function redisServerBinary(): string {
  const configured = process.env.RESHOOT_REDIS_SERVER;
  const binary = configured || 'redis-server';
  const probe = spawnSync(binary, ['--version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0)
    throw new Error(
      `the render-farm tests need a real redis-server and ${configured ? `RESHOOT_REDIS_SERVER=${configured}` : 'none is on PATH'}: ` +
        'install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) or point RESHOOT_REDIS_SERVER at one',
    );
  return binary;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * redis-server on 127.0.0.1, append-only, with `password` when given; with `tls`, only a TLS port (rediss://), with
 * that certificate and key, and no client certificates asked for.
 */
export async function startRedis(
  o: { password?: string; tls?: { cert: string; key: string } } = {},
): Promise<RedisServer> {
  const binary = redisServerBinary();
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'redis-'));
  const args = [
    ...(o.tls
      ? ['--port', '0', '--tls-port', String(port), '--tls-cert-file', o.tls.cert, '--tls-key-file', o.tls.key]
      : ['--port', String(port)]),
    ...(o.tls ? ['--tls-auth-clients', 'no'] : []),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--appendonly',
    'yes',
    '--save',
    '',
    // Not the machine's own service: no pid file, no daemon, logs to the pipe the test reads.
    '--daemonize',
    'no',
    ...(o.password ? ['--requirepass', o.password] : []),
  ];
  let proc: ChildProcess | undefined;
  const launch = () =>
    new Promise<void>((resolve, reject) => {
      const p = spawnTracked(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      proc = p;
      let out = '';
      const onData = (d: Buffer) => {
        out += d.toString();
        if (/Ready to accept connections/.test(out)) resolve();
      };
      p.stdout!.on('data', onData);
      p.stderr!.on('data', onData);
      p.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${out}`)));
    });
  const stop = () =>
    new Promise<void>((resolve) => {
      const p = proc;
      if (!p || p.exitCode !== null || p.signalCode !== null) return resolve();
      p.once('exit', () => resolve());
      p.kill('SIGTERM');
    });
  await launch();
  return {
    port,
    url: `${o.tls ? 'rediss' : 'redis'}://127.0.0.1:${port}`,
    dir,
    stop,
    restart: async () => {
      await stop();
      await launch();
    },
  };
}
