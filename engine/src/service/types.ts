// What every platform's installer takes and returns. The generators (systemd.ts, launchd.ts, task-xml.ts) are pure
// functions of a ServiceSpec; the installers (linux.ts, darwin.ts, win32.ts) write files and run commands through a
// Runner from the ServiceContext, so that nothing here reads the real home folder or runs a real command in tests.
import type { Runner } from './runner';

/**
 * The first line of every file `reshoot service install` writes. Uninstall deletes a file only when it carries this
 * line, so it never removes a unit, plist or task that someone else put under the same name.
 */
export const MARKER = 'Written by `reshoot service install`';

/** What the service runs: `node CLI serve ARGS`, absolute paths only, with the environment recorded at install. */
export interface ServiceSpec {
  /** Absolute path of the node binary (process.execPath at install). */
  node: string;
  /** Absolute path of the built CLI, dist/engine/src/cli/main.js of this install. */
  cli: string;
  /** The serve options, e.g. ['--port', '7865', '--model', '/abs/dir']. */
  serveArgs: string[];
  /** Variables the engine reads (RESHOOT_HOME and friends) as they were set at install; a login session lacks them. */
  env: Record<string, string>;
  /** Where stdout and stderr go: <data folder>/logs/engine.log. */
  logFile: string;
  /** The reshoot version that wrote the file, for the header comment. */
  version: string;
}

export interface ServiceContext {
  runner: Runner;
  /** The user's home folder (os.homedir() for real). */
  home: string;
  /** The environment the file locations are read from (XDG_CONFIG_HOME, SystemRoot, ...). */
  env: NodeJS.ProcessEnv;
  /** The numeric user id, for launchctl's gui/<uid> domain. */
  uid: number;
  /** A folder of reshoot's own (under the data folder) where Windows keeps the task XML it registered. */
  stateDir: string;
  /** The log file install would record; status shows it when nothing is installed. */
  defaultLog: string;
}

export interface InstallResult {
  /** The file written (unit, plist, task XML). */
  file: string;
  /** True when the platform's manager has the service running (or starting) now. */
  started: boolean;
  /** What happened, one sentence a line, for the terminal. */
  lines: string[];
}

export interface UninstallResult {
  removed: boolean;
  lines: string[];
}

export interface ServiceStatus {
  platform: 'linux' | 'darwin' | 'win32';
  manager: 'systemd' | 'launchd' | 'task-scheduler';
  /** The unit, label or task name the manager knows it by. */
  name: string;
  /** The file that defines the service (for Windows: the copy of the task XML that was registered). */
  file: string;
  installed: boolean;
  /** Whether the installed file carries MARKER; null when nothing is installed. */
  writtenByReshoot: boolean | null;
  /** The command recorded in the file, as an argument list; null when nothing (readable) is installed. */
  command: string[] | null;
  log: string;
  /** Whether the manager could be asked at all (a container often has no user systemd). */
  managerReachable: boolean;
  /** Whether the manager has the service loaded / registered; null when it could not be asked. */
  loaded: boolean | null;
  /** Whether the engine process is running under the manager; null when unknown. */
  running: boolean | null;
  pid: number | null;
  /** One sentence about the manager's view, with what to run when something is off. */
  detail: string;
}

/** A failure the user can act on (the CLI prints it without a stack, exit status 1). */
export class ServiceError extends Error {
  override name = 'ServiceError';
}

export interface ServicePlatform {
  install(spec: ServiceSpec, ctx: ServiceContext): Promise<InstallResult>;
  uninstall(ctx: ServiceContext): Promise<UninstallResult>;
  status(ctx: ServiceContext): Promise<ServiceStatus>;
}
