// `reshoot service install|uninstall|status`: the engine started at login for the current user, with no terminal
// open and no admin rights (systemd user unit, LaunchAgent, or a scheduled task; engine/src/service/). Also
// `reshoot service run`, what the Windows task runs: `reshoot serve` with its output appended to the log file.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { dataDir, modelsDir } from '../config/paths';
import { servicePlatform } from '../service';
import { systemRunner, type Runner } from '../service/runner';
import { ServiceError, type ServiceContext, type ServiceSpec, type ServiceStatus } from '../service/types';
import { pidFile } from '../service/win32';
import { VERSION } from '../version';
import { CliError, intOption, parse } from './args';
import { DEFAULT_PORT, runServe } from './serve';

const USAGE = `usage: reshoot service install [--port N] [--model DIR] [--provider LIST] [--threads N]
       reshoot service uninstall
       reshoot service status [--json]`;

/** Variables the engine reads that a login session would not have: recorded into the service as set at install. */
const RECORDED_ENV = ['RESHOOT_HOME', 'RESHOOT_MODELS', 'FFMPEG_PATH', 'FFPROBE_PATH'];

/** The log every platform's service writes to: beside the jobs, in the data folder. */
export function serviceLogPath(): string {
  return path.join(dataDir(), 'logs', 'engine.log');
}

export function defaultContext(runner: Runner = systemRunner): ServiceContext {
  return {
    runner,
    home: os.homedir(),
    env: process.env,
    uid: process.getuid?.() ?? 0,
    stateDir: path.join(dataDir(), 'service'),
    defaultLog: serviceLogPath(),
  };
}

/** The CLI this process runs from, as the service must run it: the built main.js, symbolic links resolved. */
function builtCli(): string {
  const main = path.join(__dirname, 'main.js');
  if (!fs.existsSync(main))
    throw new CliError(`no built CLI at ${main}: run \`npm run build\` and use dist/engine/src/cli/main.js`, 1);
  return fs.realpathSync(main);
}

/** The install options as `reshoot serve` options, checked now rather than at the next login. */
function serveArgs(values: { port?: string; model?: string; provider?: string; threads?: string }): string[] {
  const port = intOption(values.port ?? process.env.RESHOOT_PORT, 'port', DEFAULT_PORT, 1, 65535);
  const args = ['--port', String(port)];
  const model = values.model ?? process.env.RESHOOT_MODEL;
  if (model !== undefined && model !== 'oracle') {
    // A folder becomes absolute (the service's working folder is not this one); a name must be in the models folder.
    if (fs.existsSync(model)) args.push('--model', fs.realpathSync(model));
    else if (!model.includes('/') && !model.includes('\\') && fs.existsSync(path.join(modelsDir(), model)))
      args.push('--model', model);
    else throw new CliError(`--model ${model}: no such folder, and no model by that name in ${modelsDir()}`);
  }
  if (values.provider) args.push('--provider', values.provider);
  if (values.threads) args.push('--threads', String(intOption(values.threads, 'threads', 1, 1, 256)));
  return args;
}

export function buildSpec(values: Parameters<typeof serveArgs>[0], cli: string): ServiceSpec {
  const env: Record<string, string> = {};
  for (const name of RECORDED_ENV) {
    const v = process.env[name];
    if (v) env[name] = path.isAbsolute(v) ? v : path.resolve(v);
  }
  return {
    node: fs.realpathSync(process.execPath),
    cli,
    serveArgs: serveArgs(values),
    env,
    logFile: serviceLogPath(),
    version: VERSION,
  };
}

function asCliError(err: unknown): never {
  if (err instanceof ServiceError) throw new CliError(err.message, 1);
  throw err;
}

export function statusText(s: ServiceStatus): string {
  const yes = (b: boolean | null) => (b === null ? 'unknown' : b ? 'yes' : 'no');
  const lines = [
    `installed  ${s.installed ? 'yes' : 'no'}${s.writtenByReshoot === false ? ' (NOT written by reshoot service install)' : ''}`,
    `file       ${s.file}`,
    `${s.manager.padEnd(10)} ${s.managerReachable ? `loaded ${yes(s.loaded)}, running ${yes(s.running)}${s.pid ? ` (pid ${s.pid})` : ''}` : 'not reachable'}`,
    `           ${s.detail}`,
  ];
  if (s.command)
    lines.push(
      `command    ${s.command.map((a) => (/[\s"'\\$%]/.test(a) || a === '' ? JSON.stringify(a) : a)).join(' ')}`,
    );
  lines.push(`log        ${s.log}`);
  return lines.join('\n');
}

export async function runService(argv: string[], ctx: ServiceContext = defaultContext()): Promise<number> {
  const [sub, ...rest] = argv;
  const platform = servicePlatform(process.platform);
  switch (sub) {
    case 'install': {
      const { values } = parse(rest, {
        port: { type: 'string' },
        model: { type: 'string' },
        provider: { type: 'string' },
        threads: { type: 'string' },
      });
      const cli = builtCli();
      const spec = buildSpec(values, cli);
      if (cli.split(/[\\/]/).includes('_npx'))
        console.error(
          `warning: ${cli} is in npm's npx cache, which npm may clean at any time; the service would then fail to start. ` +
            'Install reshoot for good (npm install -g, or a checkout) and run `reshoot service install` from there.',
        );
      const result = await platform.install(spec, ctx).catch(asCliError);
      for (const line of result.lines) console.log(line);
      console.log(`command ${[spec.node, spec.cli, 'serve', ...spec.serveArgs].join(' ')}`);
      console.log(`log     ${spec.logFile}`);
      return 0;
    }
    case 'uninstall': {
      parse(rest, {});
      const result = await platform.uninstall(ctx).catch(asCliError);
      for (const line of result.lines) console.log(line);
      return 0;
    }
    case 'status': {
      const { values } = parse(rest, { json: { type: 'boolean' } });
      const s = await platform.status(ctx).catch(asCliError);
      console.log(values.json ? JSON.stringify(s) : statusText(s));
      return 0;
    }
    case 'run':
      return runLogged(rest);
    default:
      throw new CliError(USAGE);
  }
}

/**
 * `reshoot service run --log FILE [--env NAME=VALUE]... -- [serve options]`: what the Windows task runs. A task has
 * no output redirection and no environment of its own, so this sets the recorded variables, appends everything the
 * engine prints (its worker threads' output included, which Node writes through process.stdout) to FILE, records the
 * process id beside it for `service status` and `service uninstall`, and runs `reshoot serve`.
 */
async function runLogged(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    { log: { type: 'string' }, env: { type: 'string', multiple: true } },
    true,
  );
  if (!values.log) throw new CliError('usage: reshoot service run --log FILE [--env NAME=VALUE]... -- [serve options]');
  for (const pair of values.env ?? []) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new CliError(`--env ${pair}: expected NAME=VALUE`);
    process.env[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  fs.mkdirSync(path.dirname(values.log), { recursive: true });
  const fd = fs.openSync(values.log, 'a', 0o600);
  const write = (chunk: unknown, ...rest: unknown[]): boolean => {
    fs.writeSync(fd, typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Uint8Array));
    const cb = rest.find((r) => typeof r === 'function') as (() => void) | undefined;
    cb?.();
    return true;
  };
  process.stdout.write = write;
  process.stderr.write = write;
  const pid = pidFile(values.log);
  fs.writeFileSync(pid, `${process.pid}\n`);
  try {
    return await runServe(positionals);
  } finally {
    fs.rmSync(pid, { force: true });
  }
}
