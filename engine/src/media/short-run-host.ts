// Short runs (ffprobe, a still, a codec list) are spawned by a small helper process, not by the engine itself.
//
// Why: on Linux and macOS, spawning forks the parent first, and fork's cost grows with the parent's resident memory
// (every page-table entry is copied and marked copy-on-write), all of it on the main thread. Measured on a 2-core VM
// (Node 20 and 24 alike): spawning /bin/true took 1.4 ms from a 44 MB process, 24 ms from 646 MB and 50 ms from 2 GB.
// The engine holds the model's weights (GBs for a real Stable Diffusion model), so every probe stalled health, the
// API and the job's own frame pipes for tens of milliseconds, and a burst of submissions for seconds. The helper is
// plain Node with nothing loaded (about 40 MB), so its forks are cheap, and the engine only exchanges messages with it.
//
// The helper's code is a string run with `node -e`: it then needs no file of its own, so it works the same from the
// sources (tests), the build and an installed package. Windows creates processes without fork, so there the engine
// spawns directly; so does every caller when the helper cannot be started or dies (the run is then retried directly).
import { spawn, type ChildProcess } from 'node:child_process';

/** What a short run gives back: as media/process.ts's Exit plus its output. */
export interface HostedExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  spawnError?: Error;
  stdout: Buffer;
  stderr: string;
}

interface Request {
  id: number;
  bin: string;
  args: readonly string[];
  tail: number;
}

interface Reply {
  id: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  spawnError?: { message: string; code?: string };
  stdout: Uint8Array;
  stderr: string;
}

const HELPER_SOURCE = `
const { spawn } = require('node:child_process');
const running = new Map();
process.on('message', (m) => {
  if (m.kill !== undefined) return void running.get(m.kill)?.kill('SIGKILL');
  const out = [];
  let err = '';
  let replied = false;
  const reply = (r) => {
    if (replied) return;
    replied = true;
    running.delete(m.id);
    process.send({ id: m.id, stdout: Buffer.concat(out), stderr: err, ...r });
  };
  const p = spawn(m.bin, m.args, { stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true });
  running.set(m.id, p);
  p.stdout.on('data', (b) => out.push(b));
  p.stderr.setEncoding('utf8');
  p.stderr.on('data', (s) => { err = (err + s).slice(-m.tail); });
  p.once('error', (e) => reply({ code: null, signal: null, spawnError: { message: e.message, code: e.code } }));
  p.once('close', (code, signal) => reply({ code, signal }));
});
process.on('disconnect', () => {
  for (const p of running.values()) p.kill('SIGKILL');
  process.exit(0);
});
`;

let helper: ChildProcess | undefined;
let nextId = 1;
const pending = new Map<number, { resolve: (r: HostedExit | undefined) => void }>();

function settleAll(): void {
  // undefined: the caller runs the command directly instead.
  for (const p of pending.values()) p.resolve(undefined);
  pending.clear();
}

function startHelper(): ChildProcess | undefined {
  try {
    const child = spawn(process.execPath, ['-e', HELPER_SOURCE], {
      stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
      serialization: 'advanced',
      windowsHide: true,
    });
    child.on('message', (m: Reply) => {
      const p = pending.get(m.id);
      if (!p) return;
      pending.delete(m.id);
      if (pending.size === 0) idle(child);
      p.resolve({
        code: m.code,
        signal: m.signal,
        ...(m.spawnError
          ? { spawnError: Object.assign(new Error(m.spawnError.message), { code: m.spawnError.code }) }
          : {}),
        stdout: Buffer.from(m.stdout.buffer, m.stdout.byteOffset, m.stdout.byteLength),
        stderr: m.stderr,
      });
    });
    child.once('exit', () => {
      if (helper === child) helper = undefined;
      settleAll();
    });
    child.on('error', () => undefined);
    idle(child);
    return child;
  } catch {
    return undefined;
  }
}

/** An idle helper must not keep the engine (or a CLI command) alive. */
function idle(child: ChildProcess): void {
  child.unref();
  child.channel?.unref();
}

function busy(child: ChildProcess): void {
  child.ref();
  child.channel?.ref();
}

export interface HostedRun {
  /** undefined when the helper could not take the run (not started, died): run it directly. */
  result: Promise<HostedExit | undefined>;
  kill(): void;
}

/** Runs `bin args` through the helper; null where no helper is used (Windows) or none could be started. */
export function hostedRun(bin: string, args: readonly string[], stderrTail: number): HostedRun | null {
  if (process.platform === 'win32') return null;
  helper ??= startHelper();
  const child = helper;
  if (!child?.connected) return null;
  const id = nextId++;
  const result = new Promise<HostedExit | undefined>((resolve) => pending.set(id, { resolve }));
  busy(child);
  const request: Request = { id, bin, args, tail: stderrTail };
  try {
    child.send(request);
  } catch {
    pending.get(id)?.resolve(undefined);
    pending.delete(id);
  }
  return {
    result,
    kill: () => {
      if (child.connected) child.send({ kill: id });
    },
  };
}

/** The helper's process id, while one runs (tests; `reshoot doctor` could show it). */
export function shortRunHostPid(): number | undefined {
  return helper?.connected ? helper.pid : undefined;
}
