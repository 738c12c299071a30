// The engine's data folder holds job records (prompts, media paths), renders and inversion caches: other local users
// have no business reading them. On POSIX everything in it is created private (folders 0700, files 0600) and anything
// found looser at start is tightened, like the token file.
//
// Windows decides by ACLs. The default folders (%LOCALAPPDATA%, %APPDATA%) are inside the user's profile, whose ACLs
// (the user, SYSTEM, Administrators) every file below inherits: nothing to do. A folder elsewhere (RESHOOT_HOME on
// D:\, a shared drive) inherits that drive's ACLs, which usually let every local user read. There the folder's
// inherited entries are removed and replaced by full control for this user and SYSTEM, inherited by everything
// inside (icacls /inheritance:r /grant:r, Microsoft's icacls reference). Not run on Windows in this project's CI:
// the commands are checked in test/unit/private-dir.test.ts with the platform and runner injected.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;

/** Runs a Windows command synchronously (injected in tests). */
export type CommandRunner = (command: string, args: string[]) => { status: number | null; stdout: string };

const runCommand: CommandRunner = (command, args) => {
  const r = spawnSync(command, args, { encoding: 'utf8', windowsHide: true, timeout: 30_000 });
  return { status: r.status, stdout: r.stdout ?? '' };
};

export interface PrivateDirOptions {
  platform?: NodeJS.Platform;
  /** The user's profile folder (os.homedir()). */
  home?: string;
  run?: CommandRunner;
}

/** Folders already made private on Windows in this process: icacls once per folder, not per job. */
const madePrivateOnWindows = new Set<string>();

/**
 * Creates `dir` (and missing parents) private to this user, and tightens whatever is already inside. Returns a
 * sentence when that could not be done (Windows only; the folder is still created and used), else null.
 */
export function makePrivateDir(dir: string, o: PrivateDirOptions = {}): string | null {
  fs.mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  const platform = o.platform ?? process.platform;
  if (platform !== 'win32') {
    tightenTree(dir);
    return null;
  }
  return makePrivateOnWindows(dir, o.home ?? os.homedir(), o.run ?? runCommand);
}

function isInside(child: string, parent: string): boolean {
  const rel = path.win32.relative(parent.toLowerCase(), child.toLowerCase());
  return rel === '' || (!rel.startsWith('..') && !path.win32.isAbsolute(rel));
}

function makePrivateOnWindows(dir: string, home: string, run: CommandRunner): string | null {
  const full = path.win32.resolve(dir);
  if (isInside(full, home) || madePrivateOnWindows.has(full.toLowerCase())) return null;
  const who = run('whoami', ['/user', '/fo', 'csv', '/nh']);
  const sid = /"(S-1-[0-9-]+)"/.exec(who.stdout)?.[1];
  if (who.status !== 0 || !sid)
    return `could not make ${full} private to this user: whoami /user did not give this user's SID`;
  // SYSTEM (S-1-5-18) keeps access so backups and the indexer work; (OI)(CI): inherited by files and folders inside.
  const r = run('icacls', [full, '/inheritance:r', '/grant:r', `*${sid}:(OI)(CI)F`, '*S-1-5-18:(OI)(CI)F', '/Q']);
  if (r.status !== 0)
    return `could not make ${full} private to this user (icacls exit ${r.status}); other users of this machine may read job records and renders there`;
  madePrivateOnWindows.add(full.toLowerCase());
  return null;
}

/** Removes group and other permissions from `dir` and everything below it; symbolic links are not followed. */
function tightenTree(dir: string): void {
  const stack = [dir];
  while (stack.length) {
    const p = stack.pop()!;
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch {
      continue;
    }
    if (st.isSymbolicLink()) continue;
    if ((st.mode & 0o077) !== 0) {
      try {
        fs.chmodSync(p, st.mode & 0o700);
      } catch {
        // Not ours (a shared models folder, say): left as it is.
      }
    }
    if (st.isDirectory()) {
      try {
        for (const name of fs.readdirSync(p)) stack.push(path.join(p, name));
      } catch {
        // unreadable: nothing to tighten inside
      }
    }
  }
}
