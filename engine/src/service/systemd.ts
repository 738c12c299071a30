// The systemd user unit, as text. Quoting follows systemd.service(5) "Command lines" and systemd.syntax(7):
//   - ExecStart= words may be double-quoted; inside, C escapes (\\ \" \n \xHH ...) are decoded;
//   - "%" starts a specifier everywhere in a unit file, so a literal one is "%%";
//   - ExecStart= expands $VAR and ${VAR} in the arguments, so a literal "$" is "$$" there; not in the executable's
//     path (systemd-analyze verify reads "$$" there as two dollar signs), nor in Environment=;
//   - StandardOutput=append:PATH takes the rest of the line as the path, unquoted, specifiers still expanded.
import { MARKER, type ServiceSpec } from './types';

export const UNIT_NAME = 'reshoot.service';

/** Control characters as \xHH: a newline in a path must not end the line of the unit file. */
function escapeControls(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** The executable, ExecStart='s first word: double-quoted, with \ " % and control characters escaped. */
export function quoteExecPath(file: string): string {
  return `"${escapeControls(file.replace(/[\\"]/g, '\\$&')).replace(/%/g, '%%')}"`;
}

/** One argument after it: the same, and "$" doubled. */
export function quoteExecArg(arg: string): string {
  return quoteExecPath(arg).replace(/\$/g, '$$$$');
}

/** One Environment= assignment, quoted as a whole ("NAME=value"); no $ escaping, Environment= expands no variables. */
export function quoteEnvAssignment(name: string, value: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`not a valid environment variable name: ${name}`);
  return `"${escapeControls(`${name}=${value}`.replace(/[\\"]/g, '\\$&')).replace(/%/g, '%%')}"`;
}

/** The path after append:, which systemd cannot quote: only % can be escaped; control characters cannot appear. */
export function appendPath(file: string): string {
  if (/[\u0000-\u001f\u007f]/.test(file))
    throw new Error(
      `the log path has a control character in it, which a systemd unit cannot express: ${JSON.stringify(file)}`,
    );
  if (file !== file.trim())
    throw new Error(`the log path starts or ends with white space, which systemd would drop: "${file}"`);
  return file.replace(/%/g, '%%');
}

export function systemdUnit(spec: ServiceSpec): string {
  const log = appendPath(spec.logFile);
  const env = Object.entries(spec.env).map(([k, v]) => `Environment=${quoteEnvAssignment(k, v)}`);
  return [
    `# ${MARKER} (reshoot ${spec.version}).`,
    '# `reshoot service uninstall` stops the engine and removes this file; `reshoot service install` rewrites it.',
    '',
    '[Unit]',
    'Description=Reshoot engine (local video editing for Adobe Premiere)',
    // Five failed starts in two minutes (a port in use, a missing model) and systemd stops retrying: see the log.
    'StartLimitIntervalSec=120',
    'StartLimitBurst=5',
    '',
    '[Service]',
    'Type=simple',
    `ExecStart=${[quoteExecPath(spec.node), ...[spec.cli, 'serve', ...spec.serveArgs].map(quoteExecArg)].join(' ')}`,
    ...env,
    // Restarted after a crash or a failed exit; `reshoot serve` exits 0 on SIGTERM, so a stop stays a stop.
    'Restart=on-failure',
    'RestartSec=5',
    `StandardOutput=append:${log}`,
    `StandardError=append:${log}`,
    '',
    '[Install]',
    'WantedBy=default.target',
    '',
  ].join('\n');
}

/** Decodes the words of an ExecStart= value the way systemd does, for the subset quoteExecArg writes (and plain words). */
export function parseExecStart(value: string): string[] {
  const words: string[] = [];
  let i = 0;
  const n = value.length;
  while (i < n) {
    while (i < n && /\s/.test(value[i])) i++;
    if (i >= n) break;
    let word = '';
    let quote: string | null = null;
    while (i < n && (quote !== null || !/\s/.test(value[i]))) {
      const c = value[i];
      if (quote === null && (c === '"' || c === "'")) {
        quote = c;
        i++;
      } else if (quote !== null && c === quote) {
        quote = null;
        i++;
      } else if (c === '\\' && i + 1 < n) {
        const e = value[i + 1];
        if (e === 'x' && /^[0-9a-fA-F]{2}$/.test(value.slice(i + 2, i + 4))) {
          word += String.fromCharCode(parseInt(value.slice(i + 2, i + 4), 16));
          i += 4;
        } else {
          word += ({ n: '\n', t: '\t', r: '\r', s: ' ' } as Record<string, string>)[e] ?? e;
          i += 2;
        }
      } else if ((c === '%' || (c === '$' && words.length > 0)) && value[i + 1] === c) {
        word += c;
        i += 2;
      } else {
        word += c;
        i++;
      }
    }
    words.push(word);
  }
  return words;
}

/** The value of the first `Key=` line of a unit, or undefined. */
export function unitValue(unit: string, key: string): string | undefined {
  const line = unit.split('\n').find((l) => l.startsWith(`${key}=`));
  return line?.slice(key.length + 1);
}
