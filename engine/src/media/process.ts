// Spawning ffmpeg/ffprobe. Plain child_process rather than fluent-ffmpeg: the raw-frame pipes need direct
// control of stdin/stdout backpressure and of killing, and fluent-ffmpeg's ffprobe parser flattens side data
// (the display matrix that carries phone rotation). Keeping the spawn logic here means nothing else in the
// engine knows ffmpeg is a separate process.

import { spawn, ChildProcessWithoutNullStreams } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { basename } from 'node:path';
import { MediaError } from './errors';
import { hostedRun, type HostedExit } from './short-run-host';

const STDERR_TAIL = 8192;

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be started at all. */
  spawnError?: Error;
}

export interface Running {
  proc: ChildProcessWithoutNullStreams;
  /** Resolves (never rejects) once the process has exited and its pipes are closed. */
  exited: Promise<Exit>;
  /** The last few KB of stderr: ffmpeg's explanation when something fails. */
  stderrTail(): string;
  /** SIGKILL if still running, then wait for the exit so no zombie or open pipe is left behind. */
  kill(): Promise<Exit>;
  readonly done: boolean;
}

export function start(bin: string, args: readonly string[]): Running {
  const proc = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'], windowsHide: true });
  let tail = '';
  let done = false;
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (s: string) => {
    tail = (tail + s).slice(-STDERR_TAIL);
  });
  // Writing to a process that has already exited raises EPIPE on stdin; unhandled, that kills Node. Callers
  // learn about the failure from the exit status instead.
  proc.stdin.on('error', () => undefined);
  const exited = new Promise<Exit>((resolve) => {
    proc.once('error', (err) => {
      done = true;
      resolve({ code: null, signal: null, spawnError: err });
    });
    proc.once('close', (code, signal) => {
      done = true;
      resolve({ code, signal });
    });
  });
  return {
    proc,
    exited,
    stderrTail: () => tail,
    get done() {
      return done;
    },
    async kill() {
      if (!done) {
        proc.stdout.destroy();
        proc.kill('SIGKILL');
      }
      return exited;
    },
  };
}

/** The last meaningful lines of ffmpeg's stderr, for error messages. */
export function lastLines(stderr: string, count = 3): string {
  const lines = stderr
    .split(/\r?\n|\r/)
    // "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x17e00080] moov atom not found" -> "moov atom not found"
    .map((l) => l.replace(/^\[[^\]]* @ 0x[0-9a-f]+\]\s*/, '').trim())
    .filter((l) => l.length > 0 && !/^(frame|size)=/.test(l));
  return lines.slice(-count).join(' | ');
}

export function spawnFailure(bin: string, err: Error): MediaError {
  return new MediaError(
    'ffmpeg-missing',
    `Could not start ${bin} (${err.message}). Install ffmpeg, or set FFMPEG_PATH / FFPROBE_PATH to working executables.`,
    { file: bin, cause: err },
  );
}

export interface RunResult extends Exit {
  stdout: Buffer;
  stderr: string;
}

// Short runs (ffprobe) come in bursts when many jobs are submitted at once. Each spawn blocks the event loop for a few
// milliseconds, so a hundred at once would stall every other request (health included) for a second; a few at a time
// keeps the engine answering while the burst drains at the same overall speed. A run that hangs (a stalled network
// drive) gives its place up after SLOT_HOLD_MS, so it can slow the others but never stop them.
const MAX_SHORT_RUNS = Math.max(2, availableParallelism());
const SLOT_HOLD_MS = 2000;
let shortRuns = 0;
const waiting: (() => void)[] = [];

async function slot(): Promise<() => void> {
  if (shortRuns >= MAX_SHORT_RUNS) await new Promise<void>((r) => waiting.push(r));
  shortRuns++;
  let held = true;
  const release = () => {
    if (!held) return;
    held = false;
    clearTimeout(timer);
    shortRuns--;
    waiting.shift()?.();
  };
  const timer = setTimeout(release, SLOT_HOLD_MS);
  timer.unref();
  return release;
}

/** How long a short run may take: RESHOOT_PROBE_TIMEOUT_MS, or 30 s (a local probe takes well under a second). */
function shortRunTimeoutMs(): number {
  const v = Number(process.env.RESHOOT_PROBE_TIMEOUT_MS);
  return Number.isFinite(v) && v > 0 ? v : 30_000;
}

/**
 * Run to completion, collecting stdout (small outputs only: probe JSON, a PNG still, codec lists). A run that has not
 * finished within the timeout (a file on a drive that stopped answering) is killed and fails with 'ffmpeg-failed'
 * naming `file`.
 */
export async function run(bin: string, args: readonly string[], file?: string): Promise<RunResult> {
  const release = await slot();
  try {
    return await runNow(bin, args, file);
  } finally {
    release();
  }
}

async function runNow(bin: string, args: readonly string[], file?: string, direct = false): Promise<RunResult> {
  const hosted = direct ? null : hostedRun(bin, args, STDERR_TAIL);
  const r = hosted ? undefined : start(bin, args);
  const chunks: Buffer[] = [];
  if (r) {
    r.proc.stdin.end();
    r.proc.stdout.on('data', (b: Buffer) => chunks.push(b));
  }
  const ms = shortRunTimeoutMs();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), ms)));
  const finished: Promise<HostedExit | Exit | undefined> = hosted ? hosted.result : r!.exited;
  const exit = await Promise.race([finished, late]).finally(() => clearTimeout(timer));
  if (exit === 'late') {
    if (hosted) {
      hosted.kill();
      await hosted.result;
    } else await r!.kill();
    throw new MediaError(
      'ffmpeg-failed',
      `${file ?? 'The media'} could not be read: ${basename(bin)} got no answer within ${ms / 1000} s. The file may sit on a drive that is not answering (a network share, a stalled sync); copy it to a local drive and try again.`,
      file === undefined ? {} : { file },
    );
  }
  // The helper died or could not take the run: run it here instead.
  if (exit === undefined) return runNow(bin, args, file, true);
  if (exit.spawnError) throw spawnFailure(bin, exit.spawnError);
  if ('stdout' in exit) return exit;
  return { ...exit, stdout: Buffer.concat(chunks), stderr: r!.stderrTail() };
}
