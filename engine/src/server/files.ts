// The web UI's file picker, on the engine's side: a browser page cannot learn the path of a file the user picks, and
// the engine needs the path (it reads the clip where it lies; nothing is uploaded). So the page lists folders through
// the engine, but only inside the user's own folders (home, or RESHOOT_BROWSE_ROOTS): every path is resolved through
// its links first and must stay inside a root, so neither "..", nor a link pointing out, nor a root's own link
// reaches anything else. Hidden entries are not listed; files are listed only when they look like video.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { FolderListing } from '../api/schemas';
import { ProblemError } from '../jobs/service';

const VIDEO = new Set([
  '.mp4',
  '.m4v',
  '.mov',
  '.mkv',
  '.webm',
  '.avi',
  '.mxf',
  '.mts',
  '.m2ts',
  '.mpg',
  '.mpeg',
  '.ts',
]);
/** A folder of a million files must not hold the event loop or the page: the first ones, and a flag. */
const MAX_ENTRIES = 2000;

/** The folders the picker may show: RESHOOT_BROWSE_ROOTS (path-list separated) or the user's home. */
export function browseRoots(env: NodeJS.ProcessEnv = process.env): string[] {
  const listed = (env.RESHOOT_BROWSE_ROOTS ?? '').split(path.delimiter).filter((p) => p.trim() !== '');
  return listed.length ? listed : [os.homedir()];
}

function forbidden(detail: string): ProblemError {
  return ProblemError.of(403, 'Folder not allowed', detail, 'path', 'outside-roots');
}

function inside(child: string, root: string): boolean {
  const rel = path.relative(root, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** The roots as they really are on disk (a root that is itself a link counts as where it leads); missing ones drop out. */
function realRoots(roots: readonly string[]): { name: string; path: string; real: string; given: string }[] {
  const out: { name: string; path: string; real: string; given: string }[] = [];
  for (const r of roots) {
    try {
      const real = fs.realpathSync(path.resolve(r));
      if (fs.statSync(real).isDirectory())
        out.push({ name: path.basename(real) || real, path: real, real, given: path.resolve(r) });
    } catch {
      // A configured folder that is not there is not offered.
    }
  }
  return out;
}

/** Lists one folder inside the roots, or the roots themselves when `dir` is undefined. */
export function listFolder(dir: string | undefined, roots: readonly string[]): FolderListing {
  const real = realRoots(roots);
  const rootList = real.map(({ name, path: p }) => ({ name, path: p }));
  if (dir === undefined)
    return {
      roots: rootList,
      entries: rootList.map((r) => ({ name: r.name, path: r.path, kind: 'folder' })),
      truncated: false,
    };
  if (dir.includes('\0'))
    throw ProblemError.of(400, 'Invalid path', 'path contains a NUL character; give a folder as plain text', 'path');
  if (!path.isAbsolute(dir))
    throw ProblemError.of(422, 'Relative path', `"${dir}" is a relative path; give an absolute folder path`, 'path');
  // The lexical path first: "/home/me/../../etc" is refused as what it says, before the disk is asked anything.
  const asked = path.resolve(dir);
  if (!real.some((r) => inside(asked, r.real) || inside(asked, r.given)))
    throw forbidden(
      `${asked} is outside the folders the engine may show; choose a folder under ${rootList.map((r) => r.path).join(', ')}`,
    );
  let target: string;
  try {
    target = fs.realpathSync(asked);
  } catch {
    throw ProblemError.of(
      404,
      'Folder not found',
      `${asked} does not exist; choose another folder`,
      'path',
      'not-found',
    );
  }
  const root = real.find((r) => inside(target, r.real));
  // A link inside a root that leads out of it.
  if (!root) throw forbidden(`${asked} leads outside the folders the engine may show; choose another folder`);
  if (!fs.statSync(target).isDirectory())
    throw ProblemError.of(422, 'Not a folder', `${asked} is a file; give the folder that holds it`, 'path');
  let names: fs.Dirent[];
  try {
    names = fs.readdirSync(target, { withFileTypes: true });
  } catch (err) {
    throw ProblemError.of(403, 'Folder not readable', `cannot read ${asked}: ${(err as Error).message}`, 'path');
  }
  const entries: FolderListing['entries'] = [];
  let truncated = false;
  for (const d of names.sort((a, b) => a.name.localeCompare(b.name))) {
    if (d.name.startsWith('.')) continue;
    if (entries.length >= MAX_ENTRIES) {
      truncated = true;
      break;
    }
    const full = path.join(target, d.name);
    let resolved: string;
    let stat: fs.Stats;
    try {
      resolved = fs.realpathSync(full);
      stat = fs.statSync(resolved);
    } catch {
      continue;
    }
    // Links are listed only when they stay inside a root; the path given is the resolved one, so what the page
    // sends back later is checked as what it is.
    if (!real.some((r) => inside(resolved, r.real))) continue;
    if (stat.isDirectory()) entries.push({ name: d.name, path: resolved, kind: 'folder' });
    else if (stat.isFile() && VIDEO.has(path.extname(d.name).toLowerCase()))
      entries.push({ name: d.name, path: resolved, kind: 'video', size: stat.size });
  }
  const up = path.dirname(target);
  return {
    roots: rootList,
    path: target,
    ...(target !== root.real && inside(up, root.real) ? { parent: up } : {}),
    entries,
    truncated,
  };
}
