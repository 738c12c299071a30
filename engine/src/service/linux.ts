// Linux: a systemd user unit in $XDG_CONFIG_HOME/systemd/user (default ~/.config/systemd/user), enabled for
// default.target so the user's systemd starts it at login, and started now with `systemctl --user`.
//
// Without a reachable user manager (a container, an SSH session without pam_systemd, no lingering) the unit is still
// written and enabled, by making the default.target.wants link that `systemctl --user enable` would make; the next
// login session starts it. Install then says plainly that the engine is NOT running now and what to run.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { assertOurs, isOurs, readText, removeIfPresent, writeAtomic } from './files';
import { failureText, type RunResult } from './runner';
import { parseExecStart, systemdUnit, UNIT_NAME, unitValue } from './systemd';
import {
  ServiceError,
  type InstallResult,
  type ServiceContext,
  type ServicePlatform,
  type ServiceSpec,
  type ServiceStatus,
  type UninstallResult,
} from './types';

/** $XDG_CONFIG_HOME/systemd/user, as systemd reads it: only an absolute XDG_CONFIG_HOME counts. */
export function unitDir(ctx: ServiceContext): string {
  const xdg = ctx.env.XDG_CONFIG_HOME;
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(ctx.home, '.config');
  return path.join(base, 'systemd', 'user');
}

export function unitPath(ctx: ServiceContext): string {
  return path.join(unitDir(ctx), UNIT_NAME);
}

function wantsLink(ctx: ServiceContext): string {
  return path.join(unitDir(ctx), 'default.target.wants', UNIT_NAME);
}

const systemctl = (ctx: ServiceContext, ...args: string[]): Promise<RunResult> =>
  ctx.runner('systemctl', ['--user', ...args]);

/** States of `systemctl --user is-system-running` that mean a manager answered (any exit status). */
const MANAGER_STATES = new Set(['initializing', 'starting', 'running', 'degraded', 'maintenance', 'stopping']);

/** Whether a user systemd answers, and if not, why (for the message). */
async function probeManager(ctx: ServiceContext): Promise<{ reachable: boolean; why: string }> {
  const r = await systemctl(ctx, 'is-system-running');
  const state = r.stdout.trim();
  if (MANAGER_STATES.has(state)) return { reachable: true, why: state };
  if (r.error?.startsWith('ENOENT')) return { reachable: false, why: 'systemctl is not installed' };
  return { reachable: false, why: `systemctl --user is-system-running: ${state || failureText(r)}` };
}

/** The wants link, made by hand when no manager is there to make it. Replaces only a link to our own unit. */
function linkWants(ctx: ServiceContext): void {
  const link = wantsLink(ctx);
  fs.mkdirSync(path.dirname(link), { recursive: true });
  try {
    const st = fs.lstatSync(link);
    if (!st.isSymbolicLink() || path.resolve(path.dirname(link), fs.readlinkSync(link)) !== unitPath(ctx)) return;
    fs.unlinkSync(link);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  fs.symlinkSync(unitPath(ctx), link);
}

/** Removes the wants link only when it is a symbolic link to our unit path. */
function unlinkWants(ctx: ServiceContext): boolean {
  const link = wantsLink(ctx);
  try {
    if (!fs.lstatSync(link).isSymbolicLink()) return false;
    if (path.resolve(path.dirname(link), fs.readlinkSync(link)) !== unitPath(ctx)) return false;
    fs.unlinkSync(link);
    return true;
  } catch {
    return false;
  }
}

function hasWantsLink(ctx: ServiceContext): boolean {
  try {
    return fs.lstatSync(wantsLink(ctx)).isSymbolicLink();
  } catch {
    return false;
  }
}

async function must(ctx: ServiceContext, what: string, ...args: string[]): Promise<void> {
  const r = await systemctl(ctx, ...args);
  if (r.code !== 0)
    throw new ServiceError(`systemctl --user ${args.join(' ')} failed (${failureText(r)}) while ${what}.`);
}

async function install(spec: ServiceSpec, ctx: ServiceContext): Promise<InstallResult> {
  const file = unitPath(ctx);
  const before = readText(file);
  if (before !== undefined) assertOurs(file, before, 'replace');
  let text: string;
  try {
    text = systemdUnit(spec);
  } catch (err) {
    throw new ServiceError((err as Error).message);
  }
  writeAtomic(file, text);
  fs.mkdirSync(path.dirname(spec.logFile), { recursive: true, mode: 0o700 });
  const lines = [`${before === undefined ? 'wrote' : 'updated'} ${file}`];
  const manager = await probeManager(ctx);
  if (!manager.reachable) {
    linkWants(ctx);
    lines.push(
      `enabled for your next login (link ${wantsLink(ctx)})`,
      `NOT started now: no user systemd manager answers (${manager.why}).`,
      'In a desktop or SSH login session with systemd, start it with: systemctl --user daemon-reload && systemctl --user start reshoot.service',
      'To have it start at boot without anyone logging in: loginctl enable-linger "$USER"; to run it by hand meanwhile: reshoot serve',
    );
    return { file, started: false, lines };
  }
  await must(ctx, 'reloading the unit files', 'daemon-reload');
  await must(ctx, 'enabling the unit for login', 'enable', UNIT_NAME);
  // restart, not start: an update must replace an engine already running with the old options.
  await must(ctx, 'starting the engine', 'restart', UNIT_NAME);
  lines.push(`enabled and started ${UNIT_NAME} (systemctl --user status ${UNIT_NAME})`);
  return { file, started: true, lines };
}

async function uninstall(ctx: ServiceContext): Promise<UninstallResult> {
  const file = unitPath(ctx);
  const text = readText(file);
  if (text === undefined) {
    const link = unlinkWants(ctx);
    return {
      removed: link,
      lines: [`not installed: no ${file}${link ? ` (removed a leftover link ${wantsLink(ctx)})` : ''}; nothing to do`],
    };
  }
  assertOurs(file, text, 'remove');
  const lines: string[] = [];
  const manager = await probeManager(ctx);
  if (manager.reachable) {
    // disable --now stops the engine and removes the wants link; a unit the manager never loaded is no error.
    const r = await systemctl(ctx, 'disable', '--now', UNIT_NAME);
    lines.push(
      r.code === 0 ? `stopped and disabled ${UNIT_NAME}` : `systemctl --user disable --now: ${failureText(r)}`,
    );
  } else {
    lines.push(`no user systemd manager answers (${manager.why}); nothing to stop`);
  }
  if (unlinkWants(ctx)) lines.push(`removed ${wantsLink(ctx)}`);
  removeIfPresent(file);
  lines.push(`removed ${file}`);
  if (manager.reachable) await systemctl(ctx, 'daemon-reload');
  return { removed: true, lines };
}

/** `systemctl --user show` output (Key=value lines) as an object. */
function showProps(stdout: string): Record<string, string> {
  return Object.fromEntries(
    stdout
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1).trim()]),
  );
}

async function status(ctx: ServiceContext): Promise<ServiceStatus> {
  const file = unitPath(ctx);
  const text = readText(file);
  const exec = text === undefined ? undefined : unitValue(text, 'ExecStart');
  const out = text === undefined ? undefined : unitValue(text, 'StandardOutput');
  const base: ServiceStatus = {
    platform: 'linux',
    manager: 'systemd',
    name: UNIT_NAME,
    file,
    installed: text !== undefined,
    writtenByReshoot: text === undefined ? null : isOurs(text),
    command: exec === undefined ? null : parseExecStart(exec),
    log: out?.startsWith('append:') ? out.slice('append:'.length).replace(/%%/g, '%') : ctx.defaultLog,
    managerReachable: false,
    loaded: null,
    running: null,
    pid: null,
    detail: '',
  };
  const manager = await probeManager(ctx);
  if (!manager.reachable) {
    const enabled = hasWantsLink(ctx);
    return {
      ...base,
      detail:
        `no user systemd manager answers (${manager.why}); ` +
        (base.installed
          ? `the unit is ${enabled ? 'enabled' : 'NOT enabled'} for the next login. In a login session: systemctl --user start ${UNIT_NAME}`
          : 'nothing is installed'),
    };
  }
  const r = await systemctl(ctx, 'show', UNIT_NAME, '--property=LoadState,ActiveState,SubState,UnitFileState,MainPID');
  const p = showProps(r.stdout);
  const loaded = p.LoadState === 'loaded';
  const running = p.ActiveState === 'active';
  const pid = Number(p.MainPID) > 0 ? Number(p.MainPID) : null;
  return {
    ...base,
    managerReachable: true,
    loaded,
    running,
    pid,
    detail: loaded
      ? `${p.ActiveState ?? '?'} (${p.SubState ?? '?'}), ${p.UnitFileState ?? '?'} at login` +
        (running ? '' : `; see the log, or: systemctl --user status ${UNIT_NAME}`)
      : `systemd has not loaded ${UNIT_NAME} (${p.LoadState ?? failureText(r)})` +
        (base.installed ? '; run: systemctl --user daemon-reload' : ''),
  };
}

export const linux: ServicePlatform = { install, uninstall, status };
