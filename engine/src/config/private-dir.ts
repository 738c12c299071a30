// The engine's data folder holds job records (prompts, media paths), renders and inversion caches: other local users
// have no business reading them. On POSIX everything in it is created private (folders 0700, files 0600) and anything
// found looser at start is tightened, like the token file. Windows gives a profile folder's files to its user alone
// through inherited ACLs, so there is nothing to do there.
import * as fs from 'node:fs';
import * as path from 'node:path';

export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;

/** Creates `dir` (and missing parents) private to this user, and tightens whatever is already inside. */
export function makePrivateDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  if (process.platform !== 'win32') tightenTree(dir);
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
