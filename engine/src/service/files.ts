// File helpers the installers share: atomic writes, and the ownership check before anything is replaced or deleted.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MARKER, ServiceError } from './types';

/** Writes through a temporary file and a rename, so a crash never leaves half a unit for the manager to read. */
export function writeAtomic(file: string, data: string | Buffer, mode = 0o644): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, data, { mode });
  fs.renameSync(tmp, file);
}

/** The file's text, or undefined when it does not exist. UTF-16 (Windows task XML) is read as such. */
export function readText(file: string): string | undefined {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  if (buf[0] === 0xff && buf[1] === 0xfe) return buf.subarray(2).toString('utf16le');
  return buf.toString('utf8');
}

export function isOurs(text: string): boolean {
  return text.includes(MARKER);
}

/** Refuses to touch a file at our path that reshoot did not write. */
export function assertOurs(file: string, text: string, doing: 'replace' | 'remove'): void {
  if (isOurs(text)) return;
  throw new ServiceError(
    `${file} exists but was not written by \`reshoot service install\` (it lacks the line "${MARKER}"), so it was ` +
      `left as it is and nothing was ${doing === 'replace' ? 'installed' : 'removed'}. If it is an old copy you made ` +
      `yourself, move it away and run the command again.`,
  );
}

/** fs.rmSync that ignores a file already gone. */
export function removeIfPresent(file: string): boolean {
  try {
    fs.unlinkSync(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
