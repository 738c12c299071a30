// macOS: a LaunchAgent in ~/Library/LaunchAgents, which launchd loads at every login of this user (no admin rights),
// loaded now with `launchctl bootstrap gui/<uid>` and unloaded with `launchctl bootout` (launchctl(1), the
// bootstrap/bootout subcommands that replace load/unload since macOS 10.10).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { assertOurs, isOurs, readText, removeIfPresent, writeAtomic } from './files';
import { LABEL, launchAgentPlist, plistArray, plistString } from './launchd';
import { failureText } from './runner';
import {
  ServiceError,
  type InstallResult,
  type ServiceContext,
  type ServicePlatform,
  type ServiceSpec,
  type ServiceStatus,
  type UninstallResult,
} from './types';

export function plistPath(ctx: ServiceContext): string {
  return path.join(ctx.home, 'Library', 'LaunchAgents', `${LABEL}.plist`);
}

const domain = (ctx: ServiceContext) => `gui/${ctx.uid}`;
const target = (ctx: ServiceContext) => `${domain(ctx)}/${LABEL}`;

/** `launchctl print gui/<uid>/<label>`: loaded or not, and the state and pid it reports. */
async function printed(ctx: ServiceContext): Promise<{ loaded: boolean; state?: string; pid?: number; why: string }> {
  const r = await ctx.runner('launchctl', ['print', target(ctx)]);
  if (r.code !== 0) return { loaded: false, why: failureText(r) };
  const state = /^\s*state = (.+)$/m.exec(r.stdout)?.[1].trim();
  const pid = /^\s*pid = (\d+)$/m.exec(r.stdout)?.[1];
  return { loaded: true, state, pid: pid ? Number(pid) : undefined, why: '' };
}

async function install(spec: ServiceSpec, ctx: ServiceContext): Promise<InstallResult> {
  const file = plistPath(ctx);
  const before = readText(file);
  if (before !== undefined) assertOurs(file, before, 'replace');
  let text: string;
  try {
    text = launchAgentPlist(spec);
  } catch (err) {
    throw new ServiceError(`cannot write the LaunchAgent: ${(err as Error).message}`);
  }
  writeAtomic(file, text);
  fs.mkdirSync(path.dirname(spec.logFile), { recursive: true, mode: 0o700 });
  const lines = [`${before === undefined ? 'wrote' : 'updated'} ${file}`];
  // launchd keeps the definition it loaded: an update takes effect only after bootout and a new bootstrap.
  if ((await printed(ctx)).loaded) {
    const out = await ctx.runner('launchctl', ['bootout', target(ctx)]);
    if (out.code !== 0) throw new ServiceError(`launchctl bootout ${target(ctx)} failed (${failureText(out)}).`);
    lines.push(`unloaded the previous ${LABEL}`);
  }
  const r = await ctx.runner('launchctl', ['bootstrap', domain(ctx), file]);
  if (r.code !== 0) {
    lines.push(
      `loads at your next login; NOT started now: launchctl bootstrap ${domain(ctx)} failed (${failureText(r)}).`,
      "An SSH session has no GUI domain; from Terminal on the Mac's desktop run: " +
        `launchctl bootstrap ${domain(ctx)} "${file}"`,
    );
    return { file, started: false, lines };
  }
  lines.push(`loaded ${LABEL} into ${domain(ctx)}; it starts now and at every login`);
  return { file, started: true, lines };
}

async function uninstall(ctx: ServiceContext): Promise<UninstallResult> {
  const file = plistPath(ctx);
  const text = readText(file);
  if (text === undefined) return { removed: false, lines: [`not installed: no ${file}; nothing to do`] };
  assertOurs(file, text, 'remove');
  const lines: string[] = [];
  if ((await printed(ctx)).loaded) {
    const r = await ctx.runner('launchctl', ['bootout', target(ctx)]);
    lines.push(r.code === 0 ? `stopped and unloaded ${LABEL}` : `launchctl bootout: ${failureText(r)}`);
  }
  removeIfPresent(file);
  lines.push(`removed ${file}`);
  return { removed: true, lines };
}

async function status(ctx: ServiceContext): Promise<ServiceStatus> {
  const file = plistPath(ctx);
  const text = readText(file);
  const p = await printed(ctx);
  const running = p.loaded ? p.state === 'running' : null;
  return {
    platform: 'darwin',
    manager: 'launchd',
    name: LABEL,
    file,
    installed: text !== undefined,
    writtenByReshoot: text === undefined ? null : isOurs(text),
    command: text === undefined ? null : (plistArray(text, 'ProgramArguments') ?? null),
    log: (text !== undefined && plistString(text, 'StandardErrorPath')) || ctx.defaultLog,
    managerReachable: true,
    loaded: p.loaded,
    running,
    pid: p.pid ?? null,
    detail: p.loaded
      ? `loaded in ${domain(ctx)}, state ${p.state ?? 'unknown'}`
      : `not loaded in ${domain(ctx)}` +
        (text !== undefined ? `; load it with: launchctl bootstrap ${domain(ctx)} "${file}"` : ''),
  };
}

export const darwin: ServicePlatform = { install, uninstall, status };
