// Shared storage is mounted at different places on different machines: /Volumes/Projects on the editor's Mac,
// /mnt/projects on a Linux render node, P:\ on a Windows one. A render node maps the paths a job names (as the
// engine that queued it sees them) to its own, and its result path back.
import type { JobResult } from '../api/schemas';

export interface PathMapping {
  /** The prefix as the engine writes it. */
  from: string;
  /** The same place on this render node. */
  to: string;
}

/** Parses `--map FROM=TO`. The first "=" splits: a path may contain "=", a prefix rarely does. */
export function parseMapping(spec: string): PathMapping {
  const i = spec.indexOf('=');
  const from = i < 0 ? '' : spec.slice(0, i).trim();
  const to = i < 0 ? '' : spec.slice(i + 1).trim();
  if (!from || !to)
    throw new Error(
      `--map "${spec}" must be FROM=TO: the shared folder as the editor's engine names it, then as this machine does, e.g. --map /Volumes/Projects=/mnt/projects`,
    );
  return { from, to };
}

/** A drive (`P:`, with or without its backslash: `--map P:=/mnt/projects` is how people write it) or a UNC path. */
const isWindowsPath = (p: string) => /^[A-Za-z]:([\\/]|$)/.test(p) || p.startsWith('\\\\');

/**
 * Path segments, separators of either kind. The first is the root: '' for `/`, `\\` for a UNC path (so that
 * `\\nas\projects` never matches `/nas/projects`), the drive for a drive path.
 */
function segments(p: string): string[] {
  const parts = p.split(/[\\/]+/).filter((s, i) => s !== '' || i === 0);
  if (p.startsWith('\\\\')) parts[0] = '\\\\';
  return parts;
}

/** Windows paths (drives, servers, shares, folders) compare without case, as Windows does. */
function startsWith(p: string, prefix: string): number | undefined {
  const a = segments(p);
  const b = segments(prefix);
  const fold = isWindowsPath(prefix) ? (s: string) => s.toLowerCase() : (s: string) => s;
  if (b.length > a.length) return undefined;
  for (let i = 0; i < b.length; i++) if (fold(a[i]) !== fold(b[i])) return undefined;
  return b.length;
}

function join(base: string, rest: string[]): string {
  const sep = isWindowsPath(base) ? '\\' : '/';
  // `P:` alone is the drive's current folder to Windows, not its root.
  if (rest.length === 0) return /^[A-Za-z]:$/.test(base) ? base + sep : base;
  return base.replace(/[\\/]+$/, '') + sep + rest.join(sep);
}

/** One way of a mapping: the longest matching prefix wins. Without mappings a path is the same on every machine. */
function translate(p: string, pairs: [string, string][]): string | undefined {
  if (pairs.length === 0) return p;
  let best: { n: number; to: string } | undefined;
  for (const [from, to] of pairs) {
    const n = startsWith(p, from);
    if (n !== undefined && (!best || n > best.n)) best = { n, to };
  }
  return best ? join(best.to, segments(p).slice(best.n)) : undefined;
}

/** The engine's path as this machine names it; undefined when no mapping covers it. */
export function toLocal(p: string, maps: PathMapping[]): string | undefined {
  return translate(
    p,
    maps.map((m) => [m.from, m.to]),
  );
}

/** This machine's path as the engine names it (for the result it reports back). */
export function toEngine(p: string, maps: PathMapping[]): string | undefined {
  return translate(
    p,
    maps.map((m) => [m.to, m.from]),
  );
}

/**
 * A node's result as the engine names its files. A matte path the mappings cannot name is left out rather than
 * reported with this node's own path, which means nothing (or another file) on the editor's machine.
 */
export function resultForEngine(result: JobResult, enginePath: string, maps: PathMapping[]): JobResult {
  const { mattePath, ...rest } = result;
  const matte = mattePath === undefined ? undefined : toEngine(mattePath, maps);
  return { ...rest, path: enginePath, ...(matte ? { mattePath: matte } : {}) };
}
