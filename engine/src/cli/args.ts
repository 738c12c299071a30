import { parseArgs, type ParseArgsConfig } from 'node:util';

/** An error the user can act on: printed without a stack; exit code 2 for usage errors, 1 for failed work. */
export class CliError extends Error {
  override name = 'CliError';
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
  }
}

/** A negative number such as -1, -0.5, -.5 or -1e3: after an option that takes a value, it is that value. */
const NEGATIVE_NUMBER = /^-(\d|\.\d|inf)/i;

/**
 * parseArgs refuses `--in -1` as ambiguous (the value looks like an option) with a message about `--in=-XYZ`. An option
 * that takes a value gets a negative number as its value here, so the command can refuse it with its own sentence
 * (or accept it: `--seed -1` is no error of syntax).
 */
export function joinNegativeValues(args: string[], options: NonNullable<ParseArgsConfig['options']>): string[] {
  const takesValue = (arg: string): string | undefined => {
    if (arg.startsWith('--') && !arg.includes('=')) {
      const name = arg.slice(2);
      return options[name]?.type === 'string' ? name : undefined;
    }
    if (/^-[^-]$/.test(arg))
      return Object.entries(options).find(([, o]) => o.short === arg[1] && o.type === 'string')?.[0];
    return undefined;
  };
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--') {
      out.push(...args.slice(i));
      break;
    }
    const name = takesValue(args[i]);
    if (name !== undefined && i + 1 < args.length && NEGATIVE_NUMBER.test(args[i + 1])) {
      out.push(`--${name}=${args[i + 1]}`);
      i++;
    } else {
      out.push(args[i]);
    }
  }
  return out;
}

export function parse<T extends NonNullable<ParseArgsConfig['options']>>(
  args: string[],
  options: T,
  allowPositionals = false,
) {
  try {
    return parseArgs({ args: joinNegativeValues(args, options), options, allowPositionals, strict: true });
  } catch (err) {
    throw new CliError((err as Error).message);
  }
}

export function intOption(
  value: string | undefined,
  name: string,
  fallback: number,
  min = 1,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new CliError(`--${name} must be an integer from ${min} to ${max}, got "${value}"`);
  return n;
}

/** --max-memory: a size with a unit (`6G`, `6GiB`, `5000M`, `512MB`); binary units either way. Absent: undefined. */
export function sizeOption(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([MG])(?:i?B)?\s*$/i.exec(value);
  const bytes = m ? Number(m[1]) * 2 ** (m[2].toUpperCase() === 'G' ? 30 : 20) : NaN;
  if (!(bytes >= 2 ** 28))
    throw new CliError(
      `--${name} takes a size with a unit of at least 256M, e.g. --${name} 6G or --${name} 5000M; got "${value}"`,
    );
  return Math.round(bytes);
}
