// Shared storage is mounted at different places on different machines: /Volumes/Projects on the editor's Mac,
// /mnt/projects on a Linux render node, P:\ on a Windows one. A render node maps the paths a job names (as the
// engine that queued it sees them) to its own, and its result path back.
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

const isWindowsPath = (p: string) => /^[A-Za-z]:[\\/]/.test(p) || p.startsWith('\\\\');

/** Path segments, separators of either kind; Windows drive paths compare without case (as Windows does). */
function segments(p: string): string[] {
  return p.split(/[\\/]+/).filter((s, i) => s !== '' || i === 0);
}

function startsWith(p: string, prefix: string): number | undefined {
  const a = segments(p);
  const b = segments(prefix);
  const fold = isWindowsPath(prefix) ? (s: string) => s.toLowerCase() : (s: string) => s;
  if (b.length > a.length) return undefined;
  for (let i = 0; i < b.length; i++) if (fold(a[i]) !== fold(b[i])) return undefined;
  return b.length;
}

function join(base: string, rest: string[]): string {
  if (rest.length === 0) return base;
  const sep = isWindowsPath(base) ? '\\' : '/';
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
