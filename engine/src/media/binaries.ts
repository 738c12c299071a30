// Which ffmpeg and ffprobe the engine runs, and why. The order (README "ffmpeg"):
//   1. FFMPEG_PATH / FFPROBE_PATH, used as given. When only one is set, the other is looked for beside it first
//      (same folder, same build), then as below.
//   2. An ffmpeg + ffprobe pair on PATH (on macOS also /opt/homebrew/bin and /usr/local/bin, which GUI-launched
//      processes often lack), only when both are current (release ≥ 6, or a git build from 2023 on) and from the
//      same release (major.minor) or the same git build.
//   3. The pair bundled through @ffmpeg-installer / @ffprobe-installer: they install offline, but they are old and
//      not from one build, so the selection carries a warning that says what does not work and what to install.
// The choice costs a `-version` run per candidate, so it is made once per process and kept; it is made again only
// when FFMPEG_PATH, FFPROBE_PATH or PATH change (tests and long-lived shells do change them), or after
// resetFfmpegSelection(). A choice with a tool missing is not kept, so fixing the install takes effect at once.

import { accessSync, chmodSync, constants, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { MediaError } from './errors';

export { MediaError } from './errors';

type Tool = 'ffmpeg' | 'ffprobe';

const ENV: Record<Tool, string> = { ffmpeg: 'FFMPEG_PATH', ffprobe: 'FFPROBE_PATH' };
const PACKAGE: Record<Tool, string> = { ffmpeg: '@ffmpeg-installer/ffmpeg', ffprobe: '@ffprobe-installer/ffprobe' };
const OTHER: Record<Tool, Tool> = { ffmpeg: 'ffprobe', ffprobe: 'ffmpeg' };

/** A release counts as current from this major version on. */
export const MIN_MAJOR = 6;
/** A git build ("N-12345-g…", "2024-07-24-git-…") has no release number; it counts as current from this year on. */
export const MIN_GIT_YEAR = 2023;

export const INSTALL_HINT =
  'Install a current ffmpeg (6 or later, ffmpeg and ffprobe from the same build): macOS `brew install ffmpeg`; ' +
  'Windows `winget install ffmpeg` (the gyan.dev builds); Debian 13 / Ubuntu 24.04 `apt install ffmpeg`; ' +
  'or set FFMPEG_PATH and FFPROBE_PATH to the full paths of a build you have.';

// ---------------------------------------------------------------------------------------------------------------
// Versions

export interface FfmpegVersion {
  /** The word after "version" on the first line of `-version`: "7.1.1", "n7.1", "N-47683-g0e8eb07980-static". */
  raw: string;
  /** release: a numbered release; git: a build from the development branch, dated by `year`; unknown: neither. */
  kind: 'release' | 'git' | 'unknown';
  major?: number;
  minor?: number;
  patch?: number;
  /** The last year of the "Copyright (c) 2000-YYYY" line (or the build date of a dated git build). */
  year?: number;
  /** Release ≥ MIN_MAJOR, or a git build from MIN_GIT_YEAR on. */
  current: boolean;
  /** Short human form: "7.1.1", "git N-47683, 2018". */
  label: string;
}

/** Parses the output of `ffmpeg -version` / `ffprobe -version` (the first line carries everything needed). */
export function parseFfmpegVersion(output: string): FfmpegVersion {
  const first = output.split(/\r?\n/).find((l) => l.trim() !== '') ?? '';
  const word = /\bversion\s+(\S+)/.exec(first)?.[1] ?? '';
  const copyright = /Copyright\s*\(c\)\s*(?:\d{4}\s*-\s*)?(\d{4})/i.exec(first);
  const copyrightYear = copyright ? Number(copyright[1]) : undefined;
  const release = /^n?(\d+)\.(\d+)(?:\.(\d+))?(?![\d.])/.exec(word);
  if (release) {
    const [major, minor] = [Number(release[1]), Number(release[2])];
    const patch = release[3] !== undefined ? Number(release[3]) : undefined;
    return {
      raw: word,
      kind: 'release',
      major,
      minor,
      patch,
      year: copyrightYear,
      current: major >= MIN_MAJOR,
      label: word,
    };
  }
  // Git builds: "N-47683-g0e8eb07980-static" (johnvansickle, BtbN), "2024-07-24-git-896c22ef00-full_build-…"
  // (gyan.dev), "git-2020-08-31-…" (older builds). The N number counts commits, not releases, so the copyright
  // year is what dates them; a dated build carries its own date.
  const nBuild = /^N-(\d+)/.exec(word);
  const dated = /^(?:git-)?(\d{4})-\d{2}-\d{2}/.exec(word);
  if (nBuild || dated || /^git/i.test(word)) {
    const year = dated ? Number(dated[1]) : copyrightYear;
    const id = nBuild ? `N-${nBuild[1]}` : word;
    return {
      raw: word,
      kind: 'git',
      year,
      current: year !== undefined && year >= MIN_GIT_YEAR,
      label: `git ${id}${year !== undefined ? `, ${year}` : ''}`,
    };
  }
  return {
    raw: word || '?',
    kind: 'unknown',
    year: copyrightYear,
    current: false,
    label: word ? `${word} (unrecognised)` : 'unknown version',
  };
}

/** Whether two versions are the same release (major.minor) or the same git build. */
export function sameBuild(a: FfmpegVersion, b: FfmpegVersion): boolean {
  if (a.kind === 'release' && b.kind === 'release') return a.major === b.major && a.minor === b.minor;
  if (a.kind === 'git' && b.kind === 'git') return a.raw === b.raw;
  return false;
}

function readVersion(file: string): FfmpegVersion | { error: string } {
  const r = spawnSync(file, ['-version'], {
    encoding: 'utf8',
    timeout: 10_000,
    windowsHide: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (r.error)
    return {
      error:
        (r.error as NodeJS.ErrnoException).code === 'ETIMEDOUT'
          ? '`-version` did not answer within 10 s'
          : r.error.message,
    };
  if (r.status !== 0)
    return {
      error: `\`-version\` exited with ${r.status ?? r.signal}${r.stderr ? `: ${r.stderr.trim().split('\n').pop()}` : ''}`,
    };
  return parseFfmpegVersion(r.stdout);
}

// ---------------------------------------------------------------------------------------------------------------
// Finding files

function exe(tool: Tool, platform: NodeJS.Platform): string {
  return platform === 'win32' ? `${tool}.exe` : tool;
}

function executableProblem(file: string): string | null {
  try {
    if (!statSync(file).isFile()) return 'is not a file';
  } catch {
    return 'does not exist';
  }
  try {
    accessSync(file, constants.X_OK);
  } catch {
    return 'is not executable';
  }
  return null;
}

/** On POSIX, a binary every user of the machine may run has all three execute bits (and read, for scripts). */
function notRunnableByEveryone(file: string, platform: NodeJS.Platform): boolean {
  if (platform === 'win32') return false;
  try {
    return (statSync(file).mode & 0o555) !== 0o555;
  } catch {
    return false;
  }
}

/**
 * Gives the bundled binary the read and execute bits for every user, as npm ci's postinstall step does. That step and
 * the installer packages' own chmod do not run when npm skips dependency install scripts (npm 11's allowScripts,
 * --ignore-scripts, a global install), so the engine does it itself on first use. Only the file's owner (or root)
 * may; for anyone else this fails quietly and the caller reports the mode.
 */
function makeRunnableByEveryone(file: string, platform: NodeJS.Platform): void {
  if (platform === 'win32') return;
  try {
    const mode = statSync(file).mode & 0o7777;
    if ((mode & 0o555) !== 0o555) chmodSync(file, mode | 0o555);
  } catch {
    // not ours to change: reported below as "not executable" or by the mode warning
  }
}

function modeString(file: string): string {
  try {
    return `0${(statSync(file).mode & 0o777).toString(8)}`;
  } catch {
    return '?';
  }
}

function bundledPath(tool: Tool): string | { error: string } {
  try {
    // The installer packages throw (a bare string, for @ffmpeg-installer) when the platform binary is absent;
    // requiring lazily keeps that from breaking every import of the media module.
    // Literal specifiers, so bundlers and the lint's allow-list see exactly which packages are loaded.
    const mod = (tool === 'ffmpeg' ? require('@ffmpeg-installer/ffmpeg') : require('@ffprobe-installer/ffprobe')) as {
      path?: unknown;
    };
    if (typeof mod.path === 'string') return mod.path;
    return { error: `${PACKAGE[tool]} did not report a binary path` };
  } catch (e) {
    return { error: e instanceof Error ? e.message : String(e) };
  }
}

/** Folders searched for a system pair: PATH, then (macOS) the Homebrew folders a GUI-launched process may lack. */
function searchDirs(env: NodeJS.ProcessEnv, platform: NodeJS.Platform): string[] {
  const raw = (platform === 'win32' ? (env.Path ?? env.PATH) : env.PATH) ?? '';
  const dirs = raw.split(platform === 'win32' ? ';' : ':').filter((d) => d !== '');
  if (platform === 'darwin') dirs.push('/opt/homebrew/bin', '/usr/local/bin');
  return [...new Set(dirs)];
}

function findOnPath(tool: Tool, env: NodeJS.ProcessEnv, platform: NodeJS.Platform): string | undefined {
  for (const dir of searchDirs(env, platform)) {
    const file = path.join(dir, exe(tool, platform));
    if (executableProblem(file) === null) return file;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// The selection

export type FfmpegSource = 'env' | 'beside-env' | 'path' | 'bundled';

export interface ToolChoice {
  path: string;
  /** The version's short form ("7.1.1", "git N-47683, 2018"), or "unknown (…)" when `-version` failed. */
  version: string;
  /** env: FFMPEG_PATH/FFPROBE_PATH; beside-env: next to the other tool's variable; path: found on PATH; bundled. */
  source: FfmpegSource;
  /** The parsed `-version` output; absent when it could not be run. */
  parsed?: FfmpegVersion;
}

export interface FfmpegSelection {
  ffmpeg: ToolChoice;
  ffprobe: ToolChoice;
  /** One or two sentences: what was picked and why (and why a system pair on PATH was not). */
  why: string;
  /** Things that work worse or not at all with this pair, each with what to do. */
  warnings: string[];
}

/** As FfmpegSelection, except that a tool that cannot be used carries the MediaError that says why. */
export interface FfmpegInspection {
  ffmpeg: ToolChoice | { error: MediaError };
  ffprobe: ToolChoice | { error: MediaError };
  why: string;
  warnings: string[];
}

export interface SelectOptions {
  env?: NodeJS.ProcessEnv;
  platform?: NodeJS.Platform;
}

function choose(file: string, source: FfmpegSource): ToolChoice {
  const v = readVersion(file);
  if ('error' in v) return { path: file, version: `unknown (${v.error})`, source };
  return { path: file, version: v.label, source, parsed: v };
}

function isChoice(r: ToolChoice | { error: MediaError } | undefined): r is ToolChoice {
  return r !== undefined && !('error' in r);
}

function envError(tool: Tool, file: string, problem: string): MediaError {
  const env = ENV[tool];
  return new MediaError(
    'ffmpeg-missing',
    `${env} points to ${file}, which ${problem}. Set ${env} to the full path of an ${tool} executable, ` +
      `or unset it to use the ${tool} bundled with Reshoot.`,
    { file },
  );
}

function bundledChoice(tool: Tool): ToolChoice | { error: MediaError } {
  const env = ENV[tool];
  const bundled = bundledPath(tool);
  if (typeof bundled !== 'string') {
    return {
      error: new MediaError(
        'ffmpeg-missing',
        `The bundled ${tool} is not installed for ${process.platform}-${process.arch} (${bundled.error}). ` +
          `Reinstall Reshoot's dependencies (npm ci), or install ${tool} and set ${env} to its full path. ${INSTALL_HINT}`,
      ),
    };
  }
  makeRunnableByEveryone(bundled, process.platform);
  const problem = executableProblem(bundled);
  if (problem === 'is not executable') {
    const uid = typeof process.getuid === 'function' ? ` (uid ${process.getuid()})` : '';
    return {
      error: new MediaError(
        'ffmpeg-missing',
        `The bundled ${tool} at ${bundled} is not executable by this user${uid}: its mode is ${modeString(bundled)}. ` +
          `Run \`chmod a+rx ${bundled}\` (as its owner, or with sudo), or reinstall Reshoot's dependencies ` +
          `(npm ci; its postinstall step marks the binaries executable for every user), or install ${tool} and set ${env} to its full path.`,
        { file: bundled },
      ),
    };
  }
  if (problem) {
    return {
      error: new MediaError(
        'ffmpeg-missing',
        `The bundled ${tool} at ${bundled} ${problem}. Reinstall Reshoot's dependencies (npm ci; its install step ` +
          `marks the binary executable), or install ${tool} and set ${env} to its full path.`,
        { file: bundled },
      ),
    };
  }
  return choose(bundled, 'bundled');
}

interface PathPair {
  pair?: { ffmpeg: ToolChoice; ffprobe: ToolChoice };
  /** Why no pair on PATH was used (when none was). */
  reason: string;
}

/** Step 2: an ffmpeg and an ffprobe on PATH, both current and from the same build. */
function systemPair(env: NodeJS.ProcessEnv, platform: NodeJS.Platform): PathPair {
  const where = platform === 'darwin' ? 'on PATH or in the Homebrew folders' : 'on PATH';
  const ff = findOnPath('ffmpeg', env, platform);
  const fp = findOnPath('ffprobe', env, platform);
  if (!ff && !fp) return { reason: `no ffmpeg or ffprobe ${where}` };
  if (!ff || !fp)
    return {
      reason: `${fp ? `ffprobe is ${where} (${fp})` : `ffmpeg is ${where} (${ff})`} but ${fp ? 'ffmpeg' : 'ffprobe'} is not`,
    };
  const a = choose(ff, 'path');
  const b = choose(fp, 'path');
  for (const c of [a, b]) {
    if (!c.parsed) return { reason: `${c.path} ${where} could not report its version (${c.version})` };
  }
  const old = [a, b].filter((c) => !c.parsed!.current);
  if (old.length) {
    const what = old.map((c) => `${c.path} is ${c.parsed!.raw}`).join(' and ');
    const rule = old.some((c) => c.parsed!.kind === 'git')
      ? `older than ${MIN_MAJOR} (git builds count from ${MIN_GIT_YEAR})`
      : `older than ${MIN_MAJOR}`;
    return { reason: `the ffmpeg ${where} is too old: ${what}, ${rule}` };
  }
  if (!sameBuild(a.parsed!, b.parsed!)) {
    return {
      reason: `the ffmpeg and ffprobe ${where} are not from the same build: ${a.path} is ${a.parsed!.raw}, ${b.path} is ${b.parsed!.raw}`,
    };
  }
  return { pair: { ffmpeg: a, ffprobe: b }, reason: '' };
}

/**
 * Works out which ffmpeg and ffprobe to use from an environment (default: this process's), without caching and
 * without throwing: a tool that cannot be used carries its MediaError. `ffmpegSelection()` is the cached form.
 */
export function inspectFfmpeg(opts: SelectOptions = {}): FfmpegInspection {
  const env = opts.env ?? process.env;
  const platform = opts.platform ?? process.platform;
  const set = (tool: Tool) => {
    const v = env[ENV[tool]];
    return v !== undefined && v !== '' ? v : undefined;
  };
  const given: Record<Tool, string | undefined> = { ffmpeg: set('ffmpeg'), ffprobe: set('ffprobe') };
  const result: Partial<Record<Tool, ToolChoice | { error: MediaError }>> = {};
  const why: string[] = [];
  const warnings: string[] = [];

  // 1. The variables, used as given.
  for (const tool of ['ffmpeg', 'ffprobe'] as Tool[]) {
    const file = given[tool];
    if (file === undefined) continue;
    const problem = executableProblem(file);
    result[tool] = problem ? { error: envError(tool, file, problem) } : choose(file, 'env');
  }
  if (given.ffmpeg && given.ffprobe) why.push('FFMPEG_PATH and FFPROBE_PATH are set; both are used as given.');

  // 1b. Only one variable set, and usable: the other tool beside it, same folder, same build.
  for (const tool of ['ffmpeg', 'ffprobe'] as Tool[]) {
    const other = OTHER[tool];
    if (given[tool] === undefined || given[other] !== undefined) continue;
    const mine = result[tool];
    if (!isChoice(mine)) {
      why.push(`${ENV[tool]} is set but cannot be used; ${other} is chosen as if ${ENV[tool]} were not set.`);
      continue;
    }
    const beside = path.join(path.dirname(mine.path), exe(other, platform));
    if (executableProblem(beside) === null) {
      result[other] = choose(beside, 'beside-env');
      why.push(
        `${ENV[tool]} is set and used as given; ${other} was found beside it (${beside}), the same folder and so presumably the same build.`,
      );
    } else {
      why.push(
        `${ENV[tool]} is set and used as given; there is no ${exe(other, platform)} beside it in ${path.dirname(mine.path)}, so ${other} is chosen as below.`,
      );
    }
  }

  // 2. and 3. for whatever is still open.
  const open = (['ffmpeg', 'ffprobe'] as Tool[]).filter((t) => result[t] === undefined);
  let usedBundled = false;
  if (open.length) {
    const sys = systemPair(env, platform);
    if (sys.pair) {
      for (const t of open) result[t] = sys.pair[t];
      const p = sys.pair;
      const where = platform === 'darwin' ? 'on PATH / in the Homebrew folders' : 'on PATH';
      const pair =
        `${p.ffmpeg.path} (${p.ffmpeg.version}) and ${p.ffprobe.path} (${p.ffprobe.version}), both current ` +
        `(${MIN_MAJOR} or later, or a git build from ${MIN_GIT_YEAR} on) and from the same ${p.ffmpeg.parsed!.kind === 'git' ? 'git build' : 'release'}`;
      why.push(
        open.length === 2
          ? `ffmpeg and ffprobe found ${where}: ${pair}.`
          : `${open[0]} is taken from the pair found ${where}: ${pair}.`,
      );
    } else {
      usedBundled = true;
      for (const t of open) result[t] = bundledChoice(t);
      why.push(`The bundled ${open.join(' and ')} ${open.length === 2 ? 'are' : 'is'} used: ${sys.reason}.`);
    }
  }

  const ff = result.ffmpeg!;
  const fp = result.ffprobe!;

  // Warnings: the bundled pair's known defects, old or mismatched builds, binaries other users cannot run.
  if (usedBundled) warnings.push(...bundledWarnings(ff, fp));
  for (const [tool, c] of [
    ['ffmpeg', ff],
    ['ffprobe', fp],
  ] as const) {
    if (!isChoice(c) || c.source === 'bundled') continue;
    if (!c.parsed) warnings.push(`Could not read the version of ${c.path}: ${c.version}. Check that it is ${tool}.`);
    else if (!c.parsed.current)
      warnings.push(
        `${c.path} (${c.source === 'env' ? ENV[tool] : c.source === 'beside-env' ? `beside ${ENV[OTHER[tool]]}` : 'PATH'}) is ${tool} ${c.parsed.raw}, older than ${MIN_MAJOR}; a current build (${MIN_MAJOR} or later, ffmpeg and ffprobe from one build) is recommended.`,
      );
  }
  if (
    isChoice(ff) &&
    isChoice(fp) &&
    ff.parsed &&
    fp.parsed &&
    !sameBuild(ff.parsed, fp.parsed) &&
    !usedBundledBoth(ff, fp)
  ) {
    warnings.push(
      `ffmpeg (${ff.parsed.raw}, ${ff.path}) and ffprobe (${fp.parsed.raw}, ${fp.path}) are not from the same build: the probe may describe a file differently from how ffmpeg decodes it. Point FFMPEG_PATH and FFPROBE_PATH at one build.`,
    );
  }
  for (const c of [ff, fp]) {
    if (isChoice(c) && c.source === 'bundled' && notRunnableByEveryone(c.path, platform)) {
      warnings.push(
        `The bundled ${path.basename(c.path)} (${c.path}) has mode ${modeString(c.path)}: other users of this machine cannot run it. Run \`chmod a+rx ${c.path}\` (npm ci's postinstall step does this when it may).`,
      );
    }
  }

  return { ffmpeg: ff, ffprobe: fp, why: why.join(' '), warnings };
}

function usedBundledBoth(ff: ToolChoice, fp: ToolChoice): boolean {
  return ff.source === 'bundled' && fp.source === 'bundled';
}

/** What is known to be wrong with the bundled binaries, keyed to the exact builds it was seen with. */
function bundledWarnings(ff: ToolChoice | { error: MediaError }, fp: ToolChoice | { error: MediaError }): string[] {
  const out: string[] = [];
  const ffv = isChoice(ff) && ff.source === 'bundled' ? ff.parsed : undefined;
  const fpv = isChoice(fp) && fp.source === 'bundled' ? fp.parsed : undefined;
  if (fpv && /^N-66595-/.test(fpv.raw)) {
    // Seen on linux-x64 (@ffprobe-installer/linux-x64, johnvansickle N-66595-gc2b38619c0-static): exit 139
    // (SIGSEGV) on every MPEG-TS and M2TS file probed, whatever the options; MP4, MOV, MKV and MPEG-PS probe fine.
    out.push(
      `The bundled ffprobe (${fpv.raw}) crashes (segmentation fault) on every MPEG-TS / M2TS file (.ts, .m2ts, .mts), ` +
        `so such clips cannot be used with it; MP4, MOV, MKV and MPEG-PS files are fine.`,
    );
  }
  if (ffv && !ffv.current) {
    out.push(
      `The bundled ffmpeg is an old build (${ffv.raw}${ffv.year ? `, from ${ffv.year}` : ''}${ffv.raw.startsWith('N-47683-') ? ', about 4.1' : ''}): ` +
        `it lacks the decoder fixes (security fixes included) of the years since, and options such as -fps_mode.`,
    );
  }
  if (ffv && fpv && !sameBuild(ffv, fpv)) {
    out.push(
      `The bundled ffmpeg (${ffv.raw}) and ffprobe (${fpv.raw}) are not from the same build, so ffprobe can report codecs this ffmpeg cannot decode (such clips are refused as unsupported).`,
    );
  }
  // What to install is said once, after the last of these.
  if (out.length) out[out.length - 1] += ` ${INSTALL_HINT}`;
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// The cached selection the engine uses

let cache: { key: string; value: FfmpegInspection } | undefined;

function current(): FfmpegInspection {
  const e = process.env;
  const key = JSON.stringify([e.FFMPEG_PATH ?? '', e.FFPROBE_PATH ?? '', e.PATH ?? '', e.Path ?? '']);
  if (cache && cache.key === key) return cache.value;
  const value = inspectFfmpeg();
  // A selection with a tool missing is not kept: a chmod or a reinstall then takes effect without a restart.
  cache = isChoice(value.ffmpeg) && isChoice(value.ffprobe) ? { key, value } : undefined;
  return value;
}

/** Forget the selection, so the next call chooses again (tests). */
export function resetFfmpegSelection(): void {
  cache = undefined;
}

/** As `ffmpegSelection()` but never throws: for `reshoot doctor` and health reports. */
export function ffmpegInspection(): FfmpegInspection {
  return current();
}

/** The ffmpeg and ffprobe in use, their versions, why, and warnings. Throws 'ffmpeg-missing' if either cannot be used. */
export function ffmpegSelection(): FfmpegSelection {
  const s = current();
  if (!isChoice(s.ffprobe)) throw s.ffprobe.error;
  if (!isChoice(s.ffmpeg)) throw s.ffmpeg.error;
  return { ffmpeg: s.ffmpeg, ffprobe: s.ffprobe, why: s.why, warnings: s.warnings };
}

/** Path of the ffmpeg executable (see the order above). Throws 'ffmpeg-missing'. */
export function ffmpegPath(): string {
  const c = current().ffmpeg;
  if (!isChoice(c)) throw c.error;
  return c.path;
}

/** Path of the ffprobe executable (see the order above). Throws 'ffmpeg-missing'. */
export function ffprobePath(): string {
  const c = current().ffprobe;
  if (!isChoice(c)) throw c.error;
  return c.path;
}
