// The one door through which the service installers run platform commands (systemctl, launchctl, schtasks). Tests pass
// a recording fake, so they can assert the exact commands for every platform without running any of them.
import { execFile } from 'node:child_process';

export interface RunResult {
  /** Exit status; null when the command could not be started or was killed. */
  code: number | null;
  stdout: string;
  stderr: string;
  /** Why the command did not run at all (ENOENT: not installed), when it did not. */
  error?: string;
}

export type Runner = (command: string, args: readonly string[]) => Promise<RunResult>;

/** Runs the command for real, with no shell (arguments are passed as they are) and no console window on Windows. */
export const systemRunner: Runner = (command, args) =>
  new Promise((resolve) => {
    execFile(
      command,
      [...args],
      { windowsHide: true, timeout: 60_000, encoding: 'utf8', maxBuffer: 4 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (!err) return resolve({ code: 0, stdout, stderr });
        const e = err as NodeJS.ErrnoException & { code?: number | string; killed?: boolean };
        if (typeof e.code === 'number') return resolve({ code: e.code, stdout, stderr });
        resolve({ code: null, stdout, stderr, error: e.code ? `${e.code}: ${e.message}` : e.message });
      },
    );
  });

/** A command's failure as one line: its stderr (or stdout) trimmed, or why it did not start. */
export function failureText(r: RunResult): string {
  if (r.error) return r.error;
  const out = (r.stderr.trim() || r.stdout.trim()).split(/\r?\n/).slice(0, 3).join(' / ');
  return `exit status ${r.code}${out ? `: ${out}` : ''}`;
}
