// Child processes that a test suite starts (`reshoot serve`, load clients), tracked from the moment they are spawned so
// that they end with the suite whatever fails: a beforeAll that throws after the spawn, a test that times out, a
// Promise.all whose other half rejects and drops the child's handle. A child left running keeps its pipes open, and
// an in-band jest run then never exits.
//
// Each suite that spawns calls `afterAll(stopChildren)`; as a last resort every tracked child is SIGKILLed when the
// process exits.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import * as path from 'node:path';

const live = new Set<ChildProcess>();

function alive(proc: ChildProcess): boolean {
  return proc.exitCode === null && proc.signalCode === null;
}

function killAllNow(): void {
  for (const proc of live) if (alive(proc)) proc.kill('SIGKILL');
}
process.once('exit', killAllNow);

/** Tracks a child started elsewhere (a helper's own spawn), until it exits. Returns it. */
export function track<P extends ChildProcess>(proc: P): P {
  if (alive(proc)) {
    live.add(proc);
    proc.once('exit', () => live.delete(proc));
  }
  return proc;
}

/** spawn(), tracked. */
export function spawnTracked(command: string, args: string[], options: SpawnOptions = {}): ChildProcess {
  return track(spawn(command, args, options));
}

/** The children still running. */
export function trackedChildren(): ChildProcess[] {
  return [...live].filter(alive);
}

/** SIGTERM to every tracked child, SIGKILL to those still running after `graceMs`; resolves when all have exited. */
export async function stopChildren(graceMs = 10_000): Promise<void> {
  const procs = trackedChildren();
  await Promise.all(
    procs.map(
      (proc) =>
        new Promise<void>((resolve) => {
          if (!alive(proc)) return resolve();
          const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
          proc.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          proc.kill('SIGTERM');
        }),
    ),
  );
}

export const CLI = path.resolve(__dirname, '../../dist/engine/src/cli/main.js');

/** A `reshoot serve` child, once it has printed its URL. */
export interface Served {
  proc: ChildProcess;
  /** http://127.0.0.1:PORT */
  origin: string;
  token: string;
  /** The URL it printed, token included. */
  printedUrl: string;
  stderr: string[];
}

/**
 * Starts `reshoot serve` from dist/ (tracked) on `port` (0: any) and resolves once it prints its URL; rejects if it
 * exits first.
 */
export function startServe(o: { home: string; port?: number; args?: string[] }): Promise<Served> {
  return new Promise((resolve, reject) => {
    const proc = spawnTracked(
      process.execPath,
      [CLI, 'serve', '--port', String(o.port ?? 0), '--threads', '1', ...(o.args ?? [])],
      { env: { ...process.env, RESHOOT_HOME: o.home }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const stderr: string[] = [];
    proc.stderr!.on('data', (d: Buffer) => stderr.push(d.toString()));
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /((http:\/\/127\.0\.0\.1:\d+)\/\?token=([A-Za-z0-9_-]+))/.exec(out);
      if (m) resolve({ proc, printedUrl: m[1], origin: m[2], token: m[3], stderr });
    });
    proc.on('error', reject);
    proc.on('exit', (code, signal) => reject(new Error(`engine exited with ${code ?? signal}: ${stderr.join('')}`)));
  });
}
