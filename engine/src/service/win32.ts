// Windows: a per-user scheduled task "Reshoot" with a logon trigger for this user (see task-xml.ts for why a task,
// how it avoids elevation and how it avoids a console window). The XML registered is kept under reshoot's data folder
// too, which is the file that status shows.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isOurs, readText, removeIfPresent, writeAtomic } from './files';
import { failureText, type RunResult } from './runner';
import { conhostPath, TASK_NAME, taskXml, taskXmlCommand } from './task-xml';
import {
  MARKER,
  ServiceError,
  type InstallResult,
  type ServiceContext,
  type ServicePlatform,
  type ServiceSpec,
  type ServiceStatus,
  type UninstallResult,
} from './types';

export function taskFile(ctx: ServiceContext): string {
  return path.join(ctx.stateDir, 'reshoot-task.xml');
}

/** Where `reshoot service run` records the engine's process id (beside its log). */
export function pidFile(logFile: string): string {
  return path.join(path.dirname(logFile), 'engine.pid');
}

const schtasks = (ctx: ServiceContext, ...args: string[]): Promise<RunResult> => ctx.runner('schtasks', args);

/** The registered task's XML, or undefined when there is no task by our name. NULs dropped (UTF-16 on a pipe). */
async function registered(ctx: ServiceContext): Promise<string | undefined> {
  const r = await schtasks(ctx, '/Query', '/TN', TASK_NAME, '/XML');
  return r.code === 0 ? r.stdout.replace(/\u0000/g, '') : undefined;
}

/** This user's SID from `whoami /user`, else DOMAIN\name from the environment. */
async function currentUser(ctx: ServiceContext): Promise<string> {
  const r = await ctx.runner('whoami', ['/user', '/fo', 'csv', '/nh']);
  const sid = /"(S-1-[0-9-]+)"/.exec(r.stdout)?.[1];
  if (sid) return sid;
  const name = ctx.env.USERNAME;
  if (!name)
    throw new ServiceError(
      `cannot tell who you are: whoami /user gave no SID (${failureText(r)}) and USERNAME is not set.`,
    );
  return ctx.env.USERDOMAIN ? `${ctx.env.USERDOMAIN}\\${name}` : name;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readPid(logFile: string): number | null {
  const n = Number(readText(pidFile(logFile))?.trim());
  return Number.isInteger(n) && n > 0 ? n : null;
}

/**
 * Ends the task, then the engine if it outlived it: schtasks /End stops the process the task started (conhost), and
 * the node.exe under it may be left holding the port.
 */
async function stop(ctx: ServiceContext, logFile: string | undefined): Promise<string[]> {
  const lines: string[] = [];
  const end = await schtasks(ctx, '/End', '/TN', TASK_NAME);
  if (end.code === 0) lines.push(`ended the task ${TASK_NAME}`);
  const pid = logFile ? readPid(logFile) : null;
  if (pid !== null && alive(pid)) {
    try {
      process.kill(pid);
      lines.push(`stopped the engine (process ${pid})`);
    } catch (err) {
      lines.push(`could not stop the engine (process ${pid}): ${(err as Error).message}`);
    }
  }
  return lines;
}

function logOf(xml: string | undefined): string | undefined {
  const cmd = xml ? taskXmlCommand(xml) : undefined;
  const i = cmd?.indexOf('--log') ?? -1;
  return cmd && i >= 0 ? cmd[i + 1] : undefined;
}

async function install(spec: ServiceSpec, ctx: ServiceContext): Promise<InstallResult> {
  const existing = await registered(ctx);
  if (existing !== undefined && !isOurs(existing))
    throw new ServiceError(
      `a scheduled task named "${TASK_NAME}" exists but was not registered by \`reshoot service install\` (its ` +
        `description lacks "${MARKER}"); it was left as it is and nothing was installed. See it with: schtasks /Query /TN ${TASK_NAME} /V /FO LIST`,
    );
  let xml: string;
  try {
    xml = taskXml(spec, await currentUser(ctx), conhostPath(ctx.env));
  } catch (err) {
    if (err instanceof ServiceError) throw err;
    throw new ServiceError(`cannot write the scheduled task: ${(err as Error).message}`);
  }
  const lines = existing !== undefined ? await stop(ctx, logOf(existing)) : [];
  const file = taskFile(ctx);
  // UTF-16 with a byte order mark, as the declaration says: what schtasks /XML reads without guessing.
  writeAtomic(file, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(xml, 'utf16le')]));
  fs.mkdirSync(path.dirname(spec.logFile), { recursive: true });
  const created = await schtasks(ctx, '/Create', '/TN', TASK_NAME, '/XML', file, '/F');
  if (created.code !== 0)
    throw new ServiceError(
      `schtasks /Create failed (${failureText(created)}). The task XML is at ${file}; a task for your own logon ` +
        'needs no administrator rights, so "Access is denied" usually means a policy forbids scheduled tasks here.',
    );
  lines.push(
    `${existing === undefined ? 'registered' : 'updated'} the scheduled task ${TASK_NAME} (runs at your logon); XML ${file}`,
  );
  const run = await schtasks(ctx, '/Run', '/TN', TASK_NAME);
  if (run.code !== 0) {
    lines.push(
      `NOT started now: schtasks /Run failed (${failureText(run)}); it starts at your next logon, or run: schtasks /Run /TN ${TASK_NAME}`,
    );
    return { file, started: false, lines };
  }
  lines.push(`started it (schtasks /Run /TN ${TASK_NAME})`);
  return { file, started: true, lines };
}

async function uninstall(ctx: ServiceContext): Promise<UninstallResult> {
  const file = taskFile(ctx);
  const copy = readText(file);
  const existing = await registered(ctx);
  if (existing === undefined) {
    const removed = copy !== undefined && isOurs(copy) && removeIfPresent(file);
    return { removed, lines: [`not installed: no scheduled task ${TASK_NAME}; nothing to do`] };
  }
  if (!isOurs(existing))
    throw new ServiceError(
      `the scheduled task "${TASK_NAME}" was not registered by \`reshoot service install\` (its description lacks ` +
        `"${MARKER}"), so it was left as it is. Remove it yourself if it is yours: schtasks /Delete /TN ${TASK_NAME}`,
    );
  const log = logOf(existing);
  const lines = await stop(ctx, log);
  const del = await schtasks(ctx, '/Delete', '/TN', TASK_NAME, '/F');
  if (del.code !== 0) throw new ServiceError(`schtasks /Delete /TN ${TASK_NAME} /F failed (${failureText(del)}).`);
  lines.push(`deleted the scheduled task ${TASK_NAME}`);
  if (copy !== undefined && isOurs(copy) && removeIfPresent(file)) lines.push(`removed ${file}`);
  if (log) removeIfPresent(pidFile(log));
  return { removed: true, lines };
}

async function status(ctx: ServiceContext): Promise<ServiceStatus> {
  const file = taskFile(ctx);
  const xml = await registered(ctx);
  const log = logOf(xml) ?? ctx.defaultLog;
  const pid = xml !== undefined ? readPid(log) : null;
  const running = xml === undefined ? null : pid !== null && alive(pid);
  return {
    platform: 'win32',
    manager: 'task-scheduler',
    name: TASK_NAME,
    file,
    installed: xml !== undefined,
    writtenByReshoot: xml === undefined ? null : isOurs(xml),
    command: xml === undefined ? null : (taskXmlCommand(xml) ?? null),
    log,
    managerReachable: true,
    loaded: xml !== undefined,
    running,
    pid: running ? pid : null,
    detail:
      xml === undefined
        ? `no scheduled task ${TASK_NAME}`
        : running
          ? `task ${TASK_NAME} registered; the engine runs as process ${pid}`
          : `task ${TASK_NAME} registered; the engine is not running (see the log, or start it: schtasks /Run /TN ${TASK_NAME})`,
  };
}

export const win32: ServicePlatform = { install, uninstall, status };
