// install / uninstall / status per platform, with a temporary home and a recording fake runner: the exact
// systemctl, launchctl and schtasks commands, the files written, and the refusals (a file reshoot did not write is
// neither replaced nor removed). Nothing here runs a real platform command.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { darwin, plistPath } from '../../engine/src/service/darwin';
import { linux, unitPath } from '../../engine/src/service/linux';
import type { RunResult, Runner } from '../../engine/src/service/runner';
import { MARKER, type ServiceContext, type ServiceSpec } from '../../engine/src/service/types';
import { pidFile, taskFile, win32 } from '../../engine/src/service/win32';

type Reply = Partial<RunResult> | ((args: readonly string[]) => Partial<RunResult>);

/** Records every command; answers from `replies` by "command arg0 arg1..." prefix, else exit 0 with no output. */
function fakeRunner(replies: Record<string, Reply> = {}): Runner & { calls: string[] } {
  const calls: string[] = [];
  const run = (async (command: string, args: readonly string[]) => {
    const line = [command, ...args].join(' ');
    calls.push(line);
    const key = Object.keys(replies)
      .filter((k) => line.startsWith(k))
      .sort((a, b) => b.length - a.length)[0];
    const r = key === undefined ? {} : replies[key];
    return { code: 0, stdout: '', stderr: '', ...(typeof r === 'function' ? r(args) : r) };
  }) as Runner & { calls: string[] };
  run.calls = calls;
  return run;
}

let home: string;
beforeEach(() => {
  home = fs.mkdtempSync(path.join(os.tmpdir(), 'reshoot-service-'));
});
afterEach(() => fs.rmSync(home, { recursive: true, force: true }));

function ctx(runner: Runner, env: NodeJS.ProcessEnv = {}): ServiceContext {
  return {
    runner,
    home,
    env,
    uid: 501,
    stateDir: path.join(home, 'data', 'service'),
    defaultLog: path.join(home, 'data', 'logs', 'engine.log'),
  };
}

function spec(over: Partial<ServiceSpec> = {}): ServiceSpec {
  return {
    node: '/usr/bin/node',
    cli: '/opt/re shoot/dist/engine/src/cli/main.js',
    serveArgs: ['--port', '7865'],
    env: {},
    logFile: path.join(home, 'data', 'logs', 'engine.log'),
    version: '9.9.9',
    ...over,
  };
}

describe('linux (systemd --user)', () => {
  it('with a user manager: writes the unit, reloads, enables and restarts it', async () => {
    const run = fakeRunner({ 'systemctl --user is-system-running': { stdout: 'running\n' } });
    const c = ctx(run);
    const r = await linux.install(spec(), c);
    expect(r.started).toBe(true);
    expect(r.file).toBe(path.join(home, '.config', 'systemd', 'user', 'reshoot.service'));
    expect(fs.readFileSync(r.file, 'utf8')).toContain(MARKER);
    expect(fs.existsSync(path.join(home, 'data', 'logs'))).toBe(true);
    expect(run.calls).toEqual([
      'systemctl --user is-system-running',
      'systemctl --user daemon-reload',
      'systemctl --user enable reshoot.service',
      'systemctl --user restart reshoot.service',
    ]);
  });

  it('honours an absolute XDG_CONFIG_HOME and ignores a relative one', () => {
    expect(unitPath(ctx(fakeRunner(), { XDG_CONFIG_HOME: '/x/cfg' }))).toBe('/x/cfg/systemd/user/reshoot.service');
    expect(unitPath(ctx(fakeRunner(), { XDG_CONFIG_HOME: 'rel' }))).toBe(
      path.join(home, '.config/systemd/user/reshoot.service'),
    );
  });

  it('without a user manager: writes and enables the unit by hand, and says it is NOT started', async () => {
    const run = fakeRunner({
      'systemctl --user is-system-running': { code: 1, stdout: 'offline\n', stderr: 'Failed to connect to bus' },
    });
    const r = await linux.install(spec(), ctx(run));
    expect(r.started).toBe(false);
    expect(r.lines.join('\n')).toMatch(/NOT started now: no user systemd manager answers/);
    expect(r.lines.join('\n')).toContain('loginctl enable-linger');
    const link = path.join(home, '.config/systemd/user/default.target.wants/reshoot.service');
    expect(fs.readlinkSync(link)).toBe(r.file);
    expect(run.calls).toEqual(['systemctl --user is-system-running']);

    const s = await linux.status(ctx(run));
    expect(s).toMatchObject({ installed: true, writtenByReshoot: true, managerReachable: false, running: null });
    expect(s.command).toEqual([
      '/usr/bin/node',
      '/opt/re shoot/dist/engine/src/cli/main.js',
      'serve',
      '--port',
      '7865',
    ]);
    expect(s.log).toBe(spec().logFile);
    expect(s.detail).toMatch(/enabled for the next login/);

    const u = await linux.uninstall(ctx(run));
    expect(u.removed).toBe(true);
    expect(fs.existsSync(r.file)).toBe(false);
    expect(fs.existsSync(link)).toBe(false);
    // idempotent
    expect((await linux.uninstall(ctx(run))).lines[0]).toMatch(/not installed/);
  });

  it('status reads the manager: loaded, active, pid', async () => {
    const run = fakeRunner({
      'systemctl --user is-system-running': { stdout: 'degraded\n', code: 1 },
      'systemctl --user show': {
        stdout: 'LoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=enabled\nMainPID=4242\n',
      },
    });
    await linux.install(spec(), ctx(run));
    const s = await linux.status(ctx(run));
    expect(s).toMatchObject({ managerReachable: true, loaded: true, running: true, pid: 4242 });
    expect(run.calls).toContain(
      'systemctl --user show reshoot.service --property=LoadState,ActiveState,SubState,UnitFileState,MainPID',
    );
  });

  it('uninstall stops and disables through systemctl, then removes the unit', async () => {
    const run = fakeRunner({ 'systemctl --user is-system-running': { stdout: 'running\n' } });
    await linux.install(spec(), ctx(run));
    run.calls.length = 0;
    await linux.uninstall(ctx(run));
    expect(run.calls).toEqual([
      'systemctl --user is-system-running',
      'systemctl --user disable --now reshoot.service',
      'systemctl --user daemon-reload',
    ]);
    expect(fs.existsSync(unitPath(ctx(run)))).toBe(false);
  });

  it('install over its own unit updates it; a unit it did not write is neither replaced nor removed', async () => {
    const run = fakeRunner({ 'systemctl --user is-system-running': { code: 1, stdout: 'offline' } });
    const c = ctx(run);
    await linux.install(spec(), c);
    const r = await linux.install(spec({ serveArgs: ['--port', '9000'] }), c);
    expect(r.lines[0]).toMatch(/^updated /);
    expect(fs.readFileSync(r.file, 'utf8')).toContain('"--port" "9000"');

    fs.writeFileSync(r.file, '[Service]\nExecStart=/usr/bin/someone-else\n');
    await expect(linux.install(spec(), c)).rejects.toThrow(/was not written by `reshoot service install`/);
    await expect(linux.uninstall(c)).rejects.toThrow(/nothing was removed/);
    expect(fs.readFileSync(r.file, 'utf8')).toContain('someone-else');
  });

  it('says systemctl is missing when it is', async () => {
    const run = fakeRunner({ systemctl: { code: null, error: 'ENOENT: spawn systemctl ENOENT' } });
    const r = await linux.install(spec(), ctx(run));
    expect(r.lines.join('\n')).toContain('systemctl is not installed');
  });
});

describe('darwin (launchd)', () => {
  const gone = { code: 113, stderr: 'Could not find service "com.reshoot.engine" in domain for port' };

  it('writes the plist and bootstraps it into gui/<uid>', async () => {
    const run = fakeRunner({ 'launchctl print': gone });
    const r = await darwin.install(spec(), ctx(run));
    expect(r.file).toBe(path.join(home, 'Library/LaunchAgents/com.reshoot.engine.plist'));
    expect(r.started).toBe(true);
    expect(run.calls).toEqual(['launchctl print gui/501/com.reshoot.engine', `launchctl bootstrap gui/501 ${r.file}`]);
  });

  it('an update boots the loaded one out first; uninstall boots out and removes', async () => {
    const run = fakeRunner({ 'launchctl print': { stdout: '\tstate = running\n\tpid = 777\n' } });
    const c = ctx(run);
    await darwin.install(spec(), c);
    expect(run.calls).toEqual([
      'launchctl print gui/501/com.reshoot.engine',
      'launchctl bootout gui/501/com.reshoot.engine',
      `launchctl bootstrap gui/501 ${plistPath(c)}`,
    ]);
    const s = await darwin.status(c);
    expect(s).toMatchObject({ installed: true, loaded: true, running: true, pid: 777, log: spec().logFile });
    expect(s.command).toEqual(['/usr/bin/node', spec().cli, 'serve', '--port', '7865']);
    run.calls.length = 0;
    await darwin.uninstall(c);
    expect(run.calls).toEqual([
      'launchctl print gui/501/com.reshoot.engine',
      'launchctl bootout gui/501/com.reshoot.engine',
    ]);
    expect(fs.existsSync(plistPath(c))).toBe(false);
  });

  it('a failed bootstrap (an SSH session) leaves the plist for the next login and says so', async () => {
    const run = fakeRunner({
      'launchctl print': gone,
      'launchctl bootstrap': { code: 125, stderr: 'Bootstrap failed: 125: Domain does not support specified action' },
    });
    const r = await darwin.install(spec(), ctx(run));
    expect(r.started).toBe(false);
    expect(r.lines.join('\n')).toMatch(/loads at your next login; NOT started now/);
    expect(fs.existsSync(r.file)).toBe(true);
  });

  it('refuses a plist at its path that it did not write', async () => {
    const c = ctx(fakeRunner({ 'launchctl print': gone }));
    fs.mkdirSync(path.dirname(plistPath(c)), { recursive: true });
    fs.writeFileSync(plistPath(c), '<plist><dict/></plist>');
    await expect(darwin.uninstall(c)).rejects.toThrow(/not written by/);
    await expect(darwin.install(spec(), c)).rejects.toThrow(/not written by/);
    expect(fs.readFileSync(plistPath(c), 'utf8')).toBe('<plist><dict/></plist>');
  });
});

describe('win32 (Task Scheduler)', () => {
  const wspec = () =>
    spec({
      node: 'C:\\Program Files\\nodejs\\node.exe',
      cli: 'C:\\Users\\Zoë\\reshoot\\dist\\engine\\src\\cli\\main.js',
      logFile: path.join(home, 'logs', 'engine.log'),
    });
  const env = { SystemRoot: 'C:\\Windows', USERNAME: 'zoe', USERDOMAIN: 'PC' };
  const whoami = { stdout: '"pc\\zoe","S-1-5-21-11-22-33-1001"\r\n' };

  it('registers the task from a UTF-16 XML file for this user SID, then runs it', async () => {
    const run = fakeRunner({
      'schtasks /Query': { code: 1, stderr: 'ERROR: The system cannot find the file specified.' },
      whoami,
    });
    const c = ctx(run, env);
    const r = await win32.install(wspec(), c);
    expect(r.file).toBe(taskFile(c));
    const bytes = fs.readFileSync(r.file);
    expect([bytes[0], bytes[1]]).toEqual([0xff, 0xfe]);
    const xml = bytes.subarray(2).toString('utf16le');
    expect(xml).toContain('<UserId>S-1-5-21-11-22-33-1001</UserId>');
    expect(xml).toContain('<Command>C:\\Windows\\System32\\conhost.exe</Command>');
    expect(run.calls).toEqual([
      'schtasks /Query /TN Reshoot /XML',
      'whoami /user /fo csv /nh',
      `schtasks /Create /TN Reshoot /XML ${r.file} /F`,
      'schtasks /Run /TN Reshoot',
    ]);
    expect(r.started).toBe(true);
  });

  it('status, update and uninstall go by the registered task, which must carry the marker', async () => {
    let xml = '';
    const run = fakeRunner({
      'schtasks /Query': () => (xml ? { stdout: xml } : { code: 1 }),
      whoami,
    });
    const c = ctx(run, env);
    const first = await win32.install(wspec(), c);
    xml = fs.readFileSync(first.file).subarray(2).toString('utf16le');
    fs.mkdirSync(path.dirname(wspec().logFile), { recursive: true });
    fs.writeFileSync(pidFile(wspec().logFile), `${process.pid}\n`); // a live process stands in for the engine

    const s = await win32.status(c);
    expect(s).toMatchObject({ installed: true, writtenByReshoot: true, loaded: true, running: true, pid: process.pid });
    expect(s.command?.slice(0, 4)).toEqual([wspec().node, wspec().cli, 'service', 'run']);
    expect(s.log).toBe(wspec().logFile);

    fs.writeFileSync(pidFile(wspec().logFile), '999999999\n'); // gone: nothing to kill
    run.calls.length = 0;
    const again = await win32.install(wspec(), c);
    expect(again.lines.join('\n')).toMatch(/updated the scheduled task/);
    expect(run.calls[0]).toBe('schtasks /Query /TN Reshoot /XML');
    expect(run.calls[1]).toBe('whoami /user /fo csv /nh');
    expect(run.calls[2]).toBe('schtasks /End /TN Reshoot');

    run.calls.length = 0;
    await win32.uninstall(c);
    expect(run.calls).toEqual([
      'schtasks /Query /TN Reshoot /XML',
      'schtasks /End /TN Reshoot',
      'schtasks /Delete /TN Reshoot /F',
    ]);
    expect(fs.existsSync(taskFile(c))).toBe(false);
  });

  it('leaves a task named Reshoot that it did not register', async () => {
    const run = fakeRunner({ 'schtasks /Query': { stdout: '<Task><Description>someone else</Description></Task>' } });
    const c = ctx(run, env);
    await expect(win32.uninstall(c)).rejects.toThrow(/was not registered by `reshoot service install`/);
    await expect(win32.install(wspec(), c)).rejects.toThrow(/nothing was installed/);
    expect(run.calls.filter((l) => /\/(Delete|Create|End)/.test(l))).toEqual([]);
  });

  it('uninstall without a task is a no-op', async () => {
    const run = fakeRunner({ 'schtasks /Query': { code: 1 } });
    expect((await win32.uninstall(ctx(run, env))).lines[0]).toMatch(/not installed/);
    expect(run.calls).toEqual(['schtasks /Query /TN Reshoot /XML']);
  });
});
