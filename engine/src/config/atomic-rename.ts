// Renaming a finished file into place, the last step of every atomic write in the engine (job records, the inversion
// cache, graph caches, results, models). On Windows a rename or replace fails for a moment whenever another program
// has either file open: the antivirus scanning a file that was just written, the search indexer, a preview pane or
// Premiere's media cache. Those come as EPERM, EBUSY or (some versions) EACCES and clear within milliseconds to
// seconds, so on Windows the rename is tried again with a growing pause, a bounded number of times, and a failure that
// persists says what holds the file and what to do. On POSIX those codes are real answers (EACCES: no permission;
// EBUSY: a mount point), so there the rename runs once, exactly as fs.rename does, and its error is passed on as it is.
// Also here: best-effort removal of temp files, which on Windows fails the same way and must never cost a result.
// In config/ because every layer that writes files needs it and it imports nothing of the engine.
import * as fs from 'node:fs';

/** Error codes a rename on Windows returns while another process has one of the files open. */
const TRANSIENT_ON_WINDOWS = new Set(['EPERM', 'EBUSY', 'EACCES']);

/** Pauses between tries, in ms: 11 tries over about 4.3 s, long enough for a virus scan of a fresh video file. */
export const RENAME_RETRY_DELAYS_MS: readonly number[] = [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000];

/** The file system calls used (tests inject failing ones). */
export interface RenameFs {
  renameSync(from: string, to: string): void;
  rename(from: string, to: string): Promise<void>;
}

export interface RenameOptions {
  /** Default process.platform: only 'win32' retries. */
  platform?: NodeJS.Platform;
  /** Default node:fs. */
  fs?: RenameFs;
  /** Pauses between tries (default RENAME_RETRY_DELAYS_MS); its length + 1 is the number of tries. */
  delaysMs?: readonly number[];
  /** How to wait (tests pass one that does not); default a real sleep (blocking in the sync form). */
  sleep?: (ms: number) => Promise<void>;
  sleepSync?: (ms: number) => void;
}

const nodeFs: RenameFs = { renameSync: fs.renameSync, rename: fs.promises.rename };

/** Whether `err` is one a rename on `platform` should be tried again after. */
export function isTransientRenameError(err: unknown, platform: NodeJS.Platform = process.platform): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return platform === 'win32' && typeof code === 'string' && TRANSIENT_ON_WINDOWS.has(code);
}

/** The error after the last try: the original code and cause kept, the message saying what to do. */
export class RenameRetryError extends Error {
  readonly code: string | undefined;
  readonly syscall = 'rename';
  constructor(
    readonly from: string,
    readonly to: string,
    readonly tries: number,
    waitedMs: number,
    cause: unknown,
  ) {
    const code = (cause as NodeJS.ErrnoException | undefined)?.code;
    super(
      `Could not move ${from} to ${to}: Windows refused with ${code ?? 'an error'} ${tries} times over ` +
        `${(waitedMs / 1000).toFixed(1)} s, which means another program keeps one of the two files open: usually ` +
        'an antivirus scan or the Windows search indexer, else a video player, a preview pane or Premiere Pro ' +
        `showing ${to}. Close what may have it open (or exclude the folder from real-time scanning), then try again.`,
      { cause },
    );
    this.name = 'RenameRetryError';
    this.code = code;
  }
}

function blockingSleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * fs.renameSync(from, to), tried again on Windows while another process holds one of the files (see the top).
 * Blocks the thread between tries, at most about 4 s in all; for the small records written synchronously.
 */
export function renameIntoPlaceSync(from: string, to: string, o: RenameOptions = {}): void {
  const platform = o.platform ?? process.platform;
  const fsImpl = o.fs ?? nodeFs;
  const delays = o.delaysMs ?? RENAME_RETRY_DELAYS_MS;
  const sleep = o.sleepSync ?? blockingSleep;
  let waited = 0;
  for (let attempt = 0; ; attempt++) {
    try {
      fsImpl.renameSync(from, to);
      return;
    } catch (err) {
      if (!isTransientRenameError(err, platform)) throw err;
      if (attempt >= delays.length) throw new RenameRetryError(from, to, attempt + 1, waited, err);
      sleep(delays[attempt]);
      waited += delays[attempt];
    }
  }
}

/** The asynchronous form of renameIntoPlaceSync: the same tries, without blocking the event loop. */
export async function renameIntoPlace(from: string, to: string, o: RenameOptions = {}): Promise<void> {
  const platform = o.platform ?? process.platform;
  const fsImpl = o.fs ?? nodeFs;
  const delays = o.delaysMs ?? RENAME_RETRY_DELAYS_MS;
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  let waited = 0;
  for (let attempt = 0; ; attempt++) {
    try {
      await fsImpl.rename(from, to);
      return;
    } catch (err) {
      if (!isTransientRenameError(err, platform)) throw err;
      if (attempt >= delays.length) throw new RenameRetryError(from, to, attempt + 1, waited, err);
      await sleep(delays[attempt]);
      waited += delays[attempt];
    }
  }
}

/**
 * Removes a temp file or folder and never throws: what is left (a Windows process still holding it) carries a
 * temp name that the next start or the next write sweeps. For cleanup after a result is already in place, or in an
 * error path, where a failed removal must not replace the result or the real error. On Windows a folder's removal
 * is retried by Node itself (rmSync's maxRetries) for the same transient holds as a rename.
 */
export function removeQuietly(p: string, o: { recursive?: boolean; platform?: NodeJS.Platform } = {}): boolean {
  const win = (o.platform ?? process.platform) === 'win32';
  try {
    fs.rmSync(p, { force: true, recursive: o.recursive ?? false, ...(win ? { maxRetries: 5, retryDelay: 50 } : {}) });
    return true;
  } catch {
    return false;
  }
}
