// Where the engine may write a result. Anything holding the token can name an output path, and the engine often
// runs with more rights than the editor's own files need (root in render containers, where chmod stops nothing).
// So beyond "is the folder writable", a result must be a video file name, may only replace a regular file, and
// never lands in a system folder, however the path was spelled (../, symlinks). The checks run when a job is
// submitted, so a bad target is a 4xx then rather than a failed job minutes later.

import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { configDir, dataDir, modelsDir } from '../config/paths';
import { ffmpegSelection, type FfmpegVersion, type ToolChoice } from './binaries';
import { MediaError } from './errors';

export const VIDEO_EXTENSIONS = ['.mp4', '.m4v', '.mov'] as const;

/** Folders no render belongs in: the OS, its configuration and the kernel's pseudo file systems. */
function systemFolders(): string[] {
  if (process.platform === 'win32') {
    const env = process.env;
    return [
      env.SystemRoot ?? 'C:\\Windows',
      env.ProgramFiles ?? 'C:\\Program Files',
      env['ProgramFiles(x86)'] ?? 'C:\\Program Files (x86)',
      env.ProgramData ?? 'C:\\ProgramData',
    ];
  }
  const common = [
    '/bin',
    '/boot',
    '/dev',
    '/etc',
    '/lib',
    '/lib32',
    '/lib64',
    '/libx32',
    '/proc',
    '/run',
    '/sbin',
    '/sys',
    '/usr',
    '/var/lib',
    '/var/log',
    '/var/cache',
    '/var/spool',
    '/var/run',
    '/var/mail',
  ];
  return process.platform === 'darwin'
    ? [...common, '/System', '/Library', '/Applications', '/private/etc', '/private/var/db', '/private/var/log']
    : common;
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
    throw new MediaError(
      'output-not-allowed',
      `${file} is not a video file name: the engine writes results only to files ending in ${VIDEO_EXTENSIONS.join(', ')}. Choose a name such as ${path.basename(file, ext)}.mp4.`,
      { file },
    );
  }
  // The longest name the engine makes beside the result (the matte's hidden temp folder) must fit a file name (255 bytes).
  const longest = `.${path.basename(file)}.matte.partial-${process.pid}-12345678`;
  if (Buffer.byteLength(longest) > 255) {
    const room = 255 - (Buffer.byteLength(longest) - Buffer.byteLength(path.basename(file)));
    throw new MediaError(
      'output-not-allowed',
      `The file name ${path.basename(file)} is too long (${Buffer.byteLength(path.basename(file))} bytes): the engine needs room beside it for its temporary files. Choose a name of at most ${room} bytes.`,
      { file },
    );
  }
  const system = systemFolderOf(folder);
  if (system !== undefined) {
    throw new MediaError(
      'output-not-allowed',
      `${file} lies in the system folder ${system}; Reshoot does not write results there. Choose a folder of your own, e.g. next to the project.`,
      { file },
    );
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
      throw new MediaError(
        'output-not-writable',
        `Cannot write ${file}: the folder ${folder} does not exist. Create it, or choose an existing folder.`,
        { file },
      );
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
    const what = target.isDirectory()
      ? 'a folder'
      : target.isSymbolicLink()
        ? 'a symbolic link'
        : 'not a regular file (a device, pipe or socket)';
    throw new MediaError(
      'output-not-allowed',
      `Cannot write ${file}: it is ${what}, and a result may only replace a regular file. Choose another output name.`,
      { file },
    );
  }
  if (!o.overwrite)
    throw new MediaError(
      'output-exists',
      `${file} already exists. Choose another name, or set output.overwrite to replace it.`,
      { file },
    );
}

function notAFolder(file: string, folder: string): MediaError {
  return new MediaError(
    'output-not-writable',
    `Cannot write ${file}: ${folder} (or a folder above it) is a file, not a folder. Choose another output folder.`,
    { file },
  );
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
    const why =
      code === 'ENOSPC'
        ? 'the drive is full'
        : code === 'EROFS'
          ? 'the drive is read-only'
          : code === 'EACCES' || code === 'EPERM'
            ? 'no permission'
            : code;
    throw new MediaError(
      'output-not-writable',
      `Cannot write ${file}: cannot create files in ${dir} (${why}). Choose a folder you can write to${code === 'ENOSPC' ? ', or free space there' : ''}.`,
      { file, cause: err },
    );
  }
  fs.rmSync(probe, { force: true });
}

/** What a job reads and where the engine keeps its own state: a result may replace none of it. */
export interface JobInputs {
  /** The clip the job edits. */
  source: string;
  /** A file mask: a PNG still, a matte clip, or a PNG sequence pattern (printf %d in the file name). */
  mask?: string;
  /** The engine's data folder (jobs, cache, models; default dataDir()). Results may go only into its `renders` subfolder. */
  stateDir?: string;
  /** More folders of engine state (default: the models folder, which RESHOOT_MODELS may move, and the config folder). */
  moreStateDirs?: string[];
}

/** A printf frame number in a sequence's file name, as mask-input.ts reads it. */
const SEQUENCE_PATTERN = /%(0?\d*)d/;

function statOf(p: string, follow: boolean): fs.BigIntStats | undefined {
  try {
    return follow ? fs.statSync(p, { bigint: true }) : fs.lstatSync(p, { bigint: true });
  } catch {
    return undefined;
  }
}

/**
 * How `output` is the file `input`, or undefined when it is not: the same path once every symlink in it is resolved,
 * a symbolic link at the output path that leads to the input, or the same file under another name (a hard link, or
 * another spelling on a case-insensitive drive: same device and inode).
 */
function sameFileAs(output: string, input: string): string | undefined {
  const out = path.resolve(output);
  const inp = path.resolve(input);
  const link = statOf(out, false)?.isSymbolicLink() ?? false;
  if (samePath(realPathOf(out), realPathOf(inp))) {
    if (link) return 'a symbolic link to it';
    return samePath(out, inp) ? '' : `the same file reached through a linked folder`;
  }
  const a = statOf(out, true);
  const b = statOf(inp, true);
  if (a && b && a.ino !== 0n && a.dev === b.dev && a.ino === b.ino)
    return link
      ? 'a symbolic link to it'
      : 'the same file under another name (a hard link, or another spelling of its name)';
  return undefined;
}

/**
 * Throws MediaError 'output-not-allowed' when writing `output` would destroy something the job reads (the source
 * clip, a matte file or any image of a matte sequence) or land in the engine's own state folder. Overwrite never
 * changes this: replacing the source with the edited range is data loss.
 */
export function checkNotAnInput(output: string, inputs: JobInputs): void {
  const file = path.resolve(output);
  const refuse = (what: string, how: string | undefined) => {
    const ext = path.extname(file);
    const suggestion = path.join(path.dirname(file), `${path.basename(file, ext)}.reshoot${ext || '.mp4'}`);
    throw new MediaError(
      'output-not-allowed',
      `${file} is ${what}${how ? ` (${how})` : ''}; writing the result there would destroy it, so it is refused even with overwrite. Choose another output path, e.g. ${suggestion}.`,
      { file },
    );
  };
  const how = sameFileAs(file, inputs.source);
  if (how !== undefined)
    refuse(
      `the source clip this job reads${samePath(file, path.resolve(inputs.source)) ? '' : `, ${path.resolve(inputs.source)}`}`,
      how,
    );

  if (inputs.mask) {
    const mask = path.resolve(inputs.mask);
    const m = SEQUENCE_PATTERN.exec(path.basename(mask));
    if (!m) {
      const howMask = sameFileAs(file, mask);
      if (howMask !== undefined)
        refuse(`the matte file this job reads${samePath(file, mask) ? '' : `, ${mask}`}`, howMask);
    } else {
      sequenceImage(file, mask, m, refuse);
    }
  }

  {
    const real = realPathOf(file);
    const state = path.resolve(inputs.stateDir ?? dataDir());
    const renders = path.join(state, 'renders');
    const realRenders = realPathOf(renders);
    // The default renders folder is where results go when no output is named; everything else there is state.
    if (inside(real, realRenders) && !samePath(real, realRenders)) return;
    for (const dir of [state, ...(inputs.moreStateDirs ?? [modelsDir(), configDir()]).map((d) => path.resolve(d))]) {
      if (!inside(real, realPathOf(dir))) continue;
      throw new MediaError(
        'output-not-allowed',
        `${file} lies in the engine's own ${dir === state ? 'data folder' : 'folder'} ${dir}${dir === state ? ' (its jobs, cache and models)' : ''}; a result written there could destroy the engine's state. Choose a folder of your own, or leave the output unset to write into ${renders}.`,
        { file },
      );
    }
  }
}

/** checkNotAnInput's refusal as a sentence, or undefined when `output` may be written. */
export function inputClash(output: string, inputs: JobInputs): string | undefined {
  try {
    checkNotAnInput(output, inputs);
    return undefined;
  } catch (err) {
    if (err instanceof MediaError) return err.message;
    throw err;
  }
}

/** Refuses an output that is, or would become, an image of the matte sequence `pattern`. */
function sequenceImage(
  file: string,
  pattern: string,
  m: RegExpExecArray,
  refuse: (what: string, how: string | undefined) => never,
): void {
  const base = path.basename(pattern);
  const [prefix, suffix] = [base.slice(0, m.index), base.slice(m.index + m[0].length)];
  const matches = (name: string) => {
    const n = process.platform === 'win32' || process.platform === 'darwin' ? name.toLowerCase() : name;
    const [p, s] =
      process.platform === 'win32' || process.platform === 'darwin'
        ? [prefix.toLowerCase(), suffix.toLowerCase()]
        : [prefix, suffix];
    return (
      n.length > p.length + s.length &&
      n.startsWith(p) &&
      n.endsWith(s) &&
      /^\d+$/.test(n.slice(p.length, n.length - s.length))
    );
  };
  const dir = path.dirname(pattern);
  const realFile = realPathOf(file);
  const what = `an image of the matte sequence ${pattern} this job reads`;
  if (samePath(path.dirname(realFile), realPathOf(dir)) && matches(path.basename(realFile))) refuse(what, undefined);
  // A hard link (or a symlink) elsewhere to one of the images: compare against every image of the sequence.
  const out = statOf(file, true);
  if (!out) return;
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!matches(name)) continue;
    const img = statOf(path.join(dir, name), true);
    if (img && out.ino !== 0n && img.dev === out.dev && img.ino === out.ino)
      refuse(what, `the same file as ${path.join(dir, name)}`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Windows paths of MAX_PATH (260 UTF-16 units, the terminating NUL included) or more. Node opens them itself (it
// adds the \\?\ prefix), so the job store, the caches and the matte sequence are fine; ffmpeg and ffprobe get the
// paths as arguments and open them with their own code. FFmpeg adds the prefix to long paths from release 5.1 on
// (libavutil/wchar_filename.h, get_extended_win32_path(), used by file_open.c's win32_open; merged in spring 2022,
// after 5.0): older builds fail such a path with "No such file or directory" after the job has queued, or while
// writing the result. The bundled Windows ffmpeg (@ffmpeg-installer/win32-x64 4.1.0) is a Zeranoe git build of
// 2018-12-17 (f22fcd4), so it cannot; the bundled ffprobe (@ffprobe-installer/win32-x64 5.1.0, a gyan.dev build of
// 2023-02-13) can. So on Windows a job whose paths are too long for the tools in use is refused before it starts.

/** Windows' MAX_PATH: a path this long or longer (in UTF-16 units) opens only with the \\?\ prefix. */
export const WINDOWS_MAX_PATH = 260;

/** Whether an ffmpeg build opens paths longer than MAX_PATH on Windows: a release ≥ 5.1 or a git build from 2023 on. */
export function opensLongWindowsPaths(v: FfmpegVersion | undefined): boolean {
  if (!v) return false;
  if (v.kind === 'release') return v.major! > 5 || (v.major === 5 && v.minor! >= 1);
  // Master had the change by May 2022; a 2022 build cannot be placed before or after it by its year alone.
  return v.kind === 'git' && v.year !== undefined && v.year >= 2023;
}

export interface FfmpegPathsOptions {
  /** Default process.platform: only 'win32' is checked. */
  platform?: NodeJS.Platform;
  /** The ffmpeg and ffprobe in use; default ffmpegSelection() (asked only when a path is long). */
  tools?: () => { ffmpeg: ToolChoice; ffprobe: ToolChoice };
}

/** What a job hands ffmpeg and ffprobe: the clip, a file mask (or a sequence pattern), the result. */
export interface FfmpegPaths {
  source: string;
  mask?: string;
  output?: string;
}

/** A path as Windows sees it, and whether it already carries the prefix that lifts MAX_PATH. */
function windowsLength(p: string): { full: string; extended: boolean } {
  if (/^[\\/][\\/][?.][\\/]/.test(p)) return { full: p, extended: true };
  return { full: path.win32.resolve(p), extended: false };
}

/**
 * Throws MediaError 'path-too-long' on Windows when one of a job's paths is MAX_PATH or longer and the ffmpeg or
 * ffprobe that opens it is older than FFmpeg 5.1, naming the path, the tool and what to do. The output counts with
 * the hidden temporary name ffmpeg writes beside it (media/encode.ts partialPath), the longest name it opens there.
 * Does nothing elsewhere, nor when the tools cannot be determined (that is reported as ffmpeg-missing, by them).
 */
export function checkFfmpegPaths(paths: FfmpegPaths, o: FfmpegPathsOptions = {}): void {
  if ((o.platform ?? process.platform) !== 'win32') return;
  type Opener = 'ffmpeg' | 'ffprobe';
  const items: { file: string; opened: string; what: string; by: Opener[] }[] = [];
  items.push({ file: paths.source, opened: paths.source, what: 'the source clip', by: ['ffprobe', 'ffmpeg'] });
  if (paths.mask) {
    // A PNG sequence pattern (matte_%06d.png) is opened with its frame numbers filled in.
    const opened = paths.mask.replace(/%0?(\d*)d/, (_m, w: string) => '0'.repeat(Math.max(1, Number(w) || 1)));
    items.push({ file: paths.mask, opened, what: 'the matte', by: ['ffprobe', 'ffmpeg'] });
  }
  if (paths.output) {
    const w = path.win32;
    const ext = w.extname(paths.output);
    const temp = w.join(
      w.dirname(w.resolve(paths.output)),
      `.${w.basename(paths.output, ext)}.partial-${process.pid}-12345678${ext}`,
    );
    items.push({ file: paths.output, opened: temp, what: 'the result (with its temporary name)', by: ['ffmpeg'] });
  }
  const long = items
    .map((item) => ({ ...item, ...windowsLength(item.opened) }))
    .filter((item) => !item.extended && item.full.length >= WINDOWS_MAX_PATH);
  if (long.length === 0) return;
  let tools: { ffmpeg: ToolChoice; ffprobe: ToolChoice };
  try {
    tools = (o.tools ?? ffmpegSelection)();
  } catch {
    return;
  }
  for (const item of long) {
    const tool = item.by
      .map((t) => ({ name: t, choice: tools[t] }))
      .find((t) => !opensLongWindowsPaths(t.choice.parsed));
    if (!tool) continue;
    const bundled = tool.choice.source === 'bundled' ? 'the bundled ' : '';
    throw new MediaError(
      'path-too-long',
      `${item.file} is too long for ${bundled}${tool.name} (${tool.choice.path}, version ${tool.choice.version}): ` +
        `${item.what} is ${item.full.length} characters as ffmpeg opens it, and Windows opens paths of ` +
        `${WINDOWS_MAX_PATH} characters or more only for programs that ask for it, which FFmpeg does from release 5.1 on. ` +
        'Shorten the path (a folder nearer the top of the drive, shorter folder or file names), or install FFmpeg 5.1 ' +
        'or later (ffmpeg and ffprobe from one build, e.g. `winget install ffmpeg`) and set FFMPEG_PATH and ' +
        'FFPROBE_PATH to their full paths.',
      { file: item.file },
    );
  }
}
