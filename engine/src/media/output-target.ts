// Where the engine may write a result. Anything holding the token can name an output path, and the engine often
// runs with more rights than the editor's own files need (root in render containers, where chmod stops nothing).
// So beyond "is the folder writable", a result must be a video file name, may only replace a regular file, and
// never lands in a system folder, however the path was spelled (../, symlinks). The checks run when a job is
// submitted, so a bad target is a 4xx then rather than a failed job minutes later.

import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MediaError } from './errors';

export const VIDEO_EXTENSIONS = ['.mp4', '.m4v', '.mov'] as const;

/** Folders no render belongs in: the OS, its configuration and the kernel's pseudo file systems. */
function systemFolders(): string[] {
  if (process.platform === 'win32') {
    const env = process.env;
    return [env.SystemRoot ?? 'C:\\Windows', env.ProgramFiles ?? 'C:\\Program Files', env['ProgramFiles(x86)'] ?? 'C:\\Program Files (x86)', env.ProgramData ?? 'C:\\ProgramData'];
  }
  const common = ['/bin', '/boot', '/dev', '/etc', '/lib', '/lib32', '/lib64', '/libx32', '/proc', '/run', '/sbin', '/sys', '/usr', '/var/lib', '/var/log', '/var/cache', '/var/spool', '/var/run', '/var/mail'];
  return process.platform === 'darwin' ? [...common, '/System', '/Library', '/Applications', '/private/etc', '/private/var/db', '/private/var/log'] : common;
}

function samePath(a: string, b: string): boolean {
  return process.platform === 'win32' ? a.toLowerCase() === b.toLowerCase() : a === b;
}

function inside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** The path with every existing ancestor resolved through symlinks, so a link into /etc counts as /etc. */
function realPathOf(p: string): string {
  const missing: string[] = [];
  let cur = p;
  for (;;) {
    try {
      return path.join(fs.realpathSync.native(cur), ...missing.reverse());
    } catch {
      const parent = path.dirname(cur);
      if (parent === cur) return p;
      missing.push(path.basename(cur));
      cur = parent;
    }
  }
}

export function systemFolderOf(p: string): string | undefined {
  const real = realPathOf(p);
  if (samePath(path.parse(real).root, real)) return real;
  const folders = systemFolders();
  // Named as the user would know it: /usr/lib is in /usr, though /lib may be a link to it.
  return folders.find((f) => inside(real, f)) ?? folders.map(realPathOf).find((f) => inside(real, f));
}

export interface OutputTargetOptions {
  overwrite: boolean;
  /** The engine may create the output's folder (one level: a "Reshoot Renders" folder inside an existing one). */
  mayCreateFolder: boolean;
  /** Require a video file name (an explicit output.path). */
  videoName: boolean;
}

/**
 * Throws MediaError 'output-not-allowed' (a system folder, not a video name, not a regular file),
 * 'output-not-writable' (missing or read-only folder) or 'output-exists', each naming the path and what to do.
 */
export function checkOutputTarget(output: string, o: OutputTargetOptions): void {
  const file = path.resolve(output);
  const folder = path.dirname(file);
  const ext = path.extname(file).toLowerCase();
  if (o.videoName && !(VIDEO_EXTENSIONS as readonly string[]).includes(ext)) {
    throw new MediaError('output-not-allowed', `${file} is not a video file name: the engine writes results only to files ending in ${VIDEO_EXTENSIONS.join(', ')}. Choose a name such as ${path.basename(file, ext)}.mp4.`, { file });
  }
  const system = systemFolderOf(folder);
  if (system !== undefined) {
    throw new MediaError('output-not-allowed', `${file} lies in the system folder ${system}; Reshoot does not write results there. Choose a folder of your own, e.g. next to the project.`, { file });
  }

  let folderStat: fs.Stats | undefined;
  try {
    folderStat = fs.statSync(folder);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') throw notAFolder(file, folder);
  }
  if (folderStat && !folderStat.isDirectory()) throw notAFolder(file, folder);
  let writableDir = folder;
  if (!folderStat) {
    const parent = path.dirname(folder);
    let parentStat: fs.Stats | undefined;
    try {
      parentStat = fs.statSync(parent);
    } catch {
      parentStat = undefined;
    }
    if (!o.mayCreateFolder || !parentStat?.isDirectory()) {
      throw new MediaError('output-not-writable', `Cannot write ${file}: the folder ${folder} does not exist. Create it, or choose an existing folder.`, { file });
    }
    writableDir = parent;
  }
  probeWrite(writableDir, file);

  let target: fs.Stats | undefined;
  try {
    target = fs.lstatSync(file);
  } catch {
    return;
  }
  if (!target.isFile()) {
    const what = target.isDirectory() ? 'a folder' : target.isSymbolicLink() ? 'a symbolic link' : 'not a regular file (a device, pipe or socket)';
    throw new MediaError('output-not-allowed', `Cannot write ${file}: it is ${what}, and a result may only replace a regular file. Choose another output name.`, { file });
  }
  if (!o.overwrite) throw new MediaError('output-exists', `${file} already exists. Choose another name, or set output.overwrite to replace it.`, { file });
}

function notAFolder(file: string, folder: string): MediaError {
  return new MediaError('output-not-writable', `Cannot write ${file}: ${folder} (or a folder above it) is a file, not a folder. Choose another output folder.`, { file });
}

/**
 * access(W_OK) says yes to root everywhere and to anyone on some read-only or network mounts; creating a file is the
 * only answer that holds. The probe file is hidden and removed at once.
 */
function probeWrite(dir: string, file: string): void {
  const probe = path.join(dir, `.reshoot-write-check-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    fs.closeSync(fs.openSync(probe, 'wx'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    const why = code === 'ENOSPC' ? 'the drive is full' : code === 'EROFS' ? 'the drive is read-only' : code === 'EACCES' || code === 'EPERM' ? 'no permission' : code;
    throw new MediaError('output-not-writable', `Cannot write ${file}: cannot create files in ${dir} (${why}). Choose a folder you can write to${code === 'ENOSPC' ? ', or free space there' : ''}.`, { file, cause: err });
  }
  fs.rmSync(probe, { force: true });
}
