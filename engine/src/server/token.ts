// The API token: created once per user, kept in the config folder where the panel (and nobody else) can read it.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TOKEN_FILE_NAME, tokenFolder } from '../api/token-location';
import { removeQuietly, renameIntoPlaceSync } from '../config/atomic-rename';

const TOKEN_FILE = TOKEN_FILE_NAME;
const MIN_TOKEN_CHARS = 16;
// POSIX permission bits mean little on Windows (ACLs decide there); chmod would only pretend.
const POSIX = process.platform !== 'win32';

/**
 * The token's folder: the one the panel computes too (api/token-location.ts), whatever APPDATA or XDG_CONFIG_HOME
 * say. RESHOOT_HOME (tests, portable installs) moves it with everything else; a panel then does not find it.
 */
export function tokenDir(
  env: NodeJS.ProcessEnv = process.env,
  platform: string = process.platform,
  home: string = os.homedir(),
): string {
  return env.RESHOOT_HOME ? path.join(env.RESHOOT_HOME, 'config') : tokenFolder(platform, home);
}

export function tokenPath(configDir: string): string {
  return path.join(configDir, TOKEN_FILE);
}

export function loadOrCreateToken(configDir: string): string {
  fs.mkdirSync(configDir, { recursive: true, mode: 0o700 });
  tighten(configDir, 0o700);
  const file = tokenPath(configDir);
  const existing = readToken(file);
  if (existing !== undefined) return existing;

  const token = crypto.randomBytes(32).toString('base64url');
  // Written aside and linked into place, so a second engine starting at the same moment never reads a half-written
  // file, and whichever engine links first wins while the other adopts its token.
  const tmp = `${file}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`;
  fs.writeFileSync(tmp, `${token}\n`, { mode: 0o600, flag: 'wx' });
  try {
    tighten(tmp, 0o600);
    try {
      fs.linkSync(tmp, file);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') {
        const theirs = readToken(file);
        if (theirs !== undefined) return theirs;
        // An empty file we are replacing anyway.
        renameIntoPlaceSync(tmp, file);
        return token;
      }
      // File systems without hard links (FAT, some network shares).
      renameIntoPlaceSync(tmp, file);
    }
    return token;
  } finally {
    // After a link the temp name is still there; a Windows scanner holding it must not cost the token just made.
    removeQuietly(tmp);
  }
}

/** The stored token, or undefined when there is none yet (or only an empty file). */
function readToken(file: string): string | undefined {
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  if (!stat.isFile())
    throw new Error(
      `${file} is not a regular file (a link or folder?); remove it and start the engine again to create a new token`,
    );
  tighten(file, 0o600);
  const token = fs.readFileSync(file, 'utf8').trim();
  if (token === '') return undefined;
  // Printable ASCII only: anything else cannot travel in an Authorization header, so the engine would start with a
  // token no client can send.
  if (token.length < MIN_TOKEN_CHARS || !/^[\x21-\x7e]+$/.test(token)) {
    throw new Error(
      `${file} holds a token that is too short or has spaces or characters other than printable ASCII (at least ${MIN_TOKEN_CHARS} characters); delete the file and start the engine again to create a strong one`,
    );
  }
  return token;
}

/** Removes any permission beyond `mode`: a token readable by other users is a token anyone on the machine can use. */
function tighten(p: string, mode: number): void {
  if (!POSIX) return;
  const current = fs.statSync(p).mode & 0o777;
  if ((current & ~mode) !== 0) fs.chmodSync(p, current & mode);
}
