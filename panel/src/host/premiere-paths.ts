// Path handling for the Premiere adapter. UXP has no `path` module, and the same panel runs on macOS and Windows, so
// paths are handled as strings with either separator, following whichever style the path itself uses.

const DRIVE = /^[A-Za-z]:/;

function separatorOf(p: string): '/' | '\\' {
  if (p.includes('\\') && !p.includes('/')) return '\\';
  if (DRIVE.test(p) && !p.includes('/')) return '\\';
  return '/';
}

/** The folder part of a path ('' when there is none). */
export function dirname(p: string): string {
  const trimmed = p.replace(/[\\/]+$/, '');
  const i = Math.max(trimmed.lastIndexOf('/'), trimmed.lastIndexOf('\\'));
  if (i < 0) return '';
  if (i === 0) return trimmed.slice(0, 1);
  // Keep the separator of a drive root: the folder of C:\film.prproj is C:\, not C:
  if (i === 2 && DRIVE.test(trimmed)) return trimmed.slice(0, 3);
  return trimmed.slice(0, i);
}

export function joinPath(dir: string, name: string): string {
  if (dir === '') return name;
  if (dir.endsWith('/') || dir.endsWith('\\')) return dir + name;
  return dir + separatorOf(dir) + name;
}

/** True when a path names a file inside some folder (an unsaved Premiere project reports a bare name or nothing). */
export function hasFolder(p: string | undefined | null): p is string {
  return typeof p === 'string' && /[\\/]/.test(p) && dirname(p) !== '';
}

/**
 * Premiere may hand back a media path with other slashes or other letter case than the one the engine wrote
 * (Windows paths, case-insensitive volumes), so paths are compared in one folded form.
 */
export function samePath(a: string, b: string): boolean {
  return foldPath(a) === foldPath(b);
}

function foldPath(p: string): string {
  let s = p.trim();
  if (/^file:\/\//i.test(s)) s = decodeURIComponent(s.replace(/^file:\/\/(localhost)?/i, ''));
  s = s
    .replace(/\\/g, '/')
    .replace(/\/{2,}/g, '/')
    .replace(/\/$/, '');
  // file:///C:/x decodes to /C:/x
  if (/^\/[A-Za-z]:\//.test(s)) s = s.slice(1);
  return s.toLowerCase();
}

/** A clip name made safe as part of a file name on both systems, without its media extension. */
export function safeFileStem(name: string): string {
  const stem = name.replace(/\.[A-Za-z0-9]{1,5}$/, '');
  const cleaned = stem
    .replace(/[\\/:*?"<>|\u0000-\u001f]/g, '_')
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/[. ]+$/, '');
  return (cleaned || 'clip').slice(0, 60);
}
