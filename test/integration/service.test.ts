// `reshoot service install|status|uninstall` as the real CLI (dist/) on this Linux machine, with HOME,
// XDG_CONFIG_HOME and RESHOOT_HOME in a temporary folder whose names hold spaces, %, $ and non-ASCII: the unit file
// written (and checked by systemd-analyze verify where it exists), status in text and JSON, the update, the
// uninstall, and the refusal to touch a unit reshoot did not write.
//
// Those runs are cut off from any user systemd (XDG_RUNTIME_DIR and the session bus pointed at nothing), so they
// take the path of a container or a bare SSH session everywhere: the unit written and enabled for the next login,
// and a message saying it was NOT started and what to run. Where a user systemd does answer, one more test really
// starts the engine from the user's own unit folder (the manager reads that one, not a temporary XDG_CONFIG_HOME),
// checks that it answers on its port, and uninstalls it.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MARKER } from '../../engine/src/service/types';

const REPO = path.resolve(__dirname, '../..');
const CLI = path.join(REPO, 'dist/engine/src/cli/main.js');
const linuxOnly = process.platform === 'linux' ? describe : describe.skip;

function managerReachable(): boolean {
  const r = spawnSync('systemctl', ['--user', 'is-system-running'], { encoding: 'utf8' });
  return ['initializing', 'starting', 'running', 'degraded', 'maintenance', 'stopping'].includes(
    (r.stdout ?? '').trim(),
  );
}

function hasSystemdAnalyze(): boolean {
  return spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' }).status === 0;
}

let root: string;
let env: NodeJS.ProcessEnv;
let unit: string;

function reshoot(args: string[], extraEnv: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [CLI, 'service', ...args], {
    env: { ...env, ...extraEnv },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'reshoot service ü-'));
  const home = path.join(root, 'home $USER');
  const config = path.join(root, 'cönfig 100%');
  fs.mkdirSync(home);
  fs.mkdirSync(config);
  env = {
    ...process.env,
    HOME: home,
    XDG_CONFIG_HOME: config,
    RESHOOT_HOME: path.join(root, 'reshoot 50% $HOME'),
    XDG_RUNTIME_DIR: path.join(root, 'no runtime dir'),
    DBUS_SESSION_BUS_ADDRESS: `unix:path=${path.join(root, 'no bus')}`,
  };
  delete env.RESHOOT_PORT;
  delete env.RESHOOT_MODEL;
  unit = path.join(config, 'systemd', 'user', 'reshoot.service');
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

linuxOnly('reshoot service on Linux', () => {
  const log = () => path.join(env.RESHOOT_HOME!, 'data', 'logs', 'engine.log');

  it('installs a unit that records absolute node and CLI paths, and says whether it started', () => {
    const r = reshoot(['install', '--port', '17865', '--threads', '2']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const text = fs.readFileSync(unit, 'utf8');
    expect(text.split('\n')[0]).toContain(MARKER);
    expect(text).toContain(`ExecStart="${fs.realpathSync(process.execPath)}" "${fs.realpathSync(CLI)}" "serve"`);
    expect(text).toContain('"--port" "17865" "--threads" "2"');
    // $ doubled only in ExecStart arguments; % doubled everywhere; Environment= keeps $ as it is
    expect(text).toContain(`Environment="RESHOOT_HOME=${env.RESHOOT_HOME!.replace(/%/g, '%%')}"`);
    expect(text).toContain(`StandardOutput=append:${log().replace(/%/g, '%%')}`);
    expect(r.stdout).toContain(`log     ${log()}`);
    expect(r.stdout).toContain(`wrote ${unit}`);
    expect(r.stdout).toMatch(/NOT started now: no user systemd manager answers \(/);
    expect(r.stdout).toContain('systemctl --user daemon-reload && systemctl --user start reshoot.service');
    expect(r.stdout).toContain('loginctl enable-linger');
    expect(fs.readlinkSync(path.join(path.dirname(unit), 'default.target.wants', 'reshoot.service'))).toBe(unit);
  });

  it('writes a unit that systemd-analyze verify accepts (where systemd-analyze exists)', () => {
    if (!hasSystemdAnalyze()) {
      // No systemd tools here: the unit's syntax is still checked by test/unit/service-generators.test.ts.
      expect(fs.readFileSync(unit, 'utf8')).toMatch(/^\[Service\]$/m);
      return;
    }
    const r = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
    expect(r.stderr).not.toMatch(/not executable|Unknown|Invalid|Failed/i);
    expect(r.status).toBe(0);
  });

  it('status says what is installed, where, what it runs and where it logs; --json too', () => {
    const t = reshoot(['status']);
    expect(t.code).toBe(0);
    expect(t.stdout).toContain('installed  yes');
    expect(t.stdout).toContain(`file       ${unit}`);
    expect(t.stdout).toContain(`log        ${log()}`);
    const j = reshoot(['status', '--json']);
    const s = JSON.parse(j.stdout) as Record<string, unknown>;
    expect(s).toMatchObject({
      platform: 'linux',
      manager: 'systemd',
      installed: true,
      writtenByReshoot: true,
      file: unit,
      log: log(),
    });
    expect(s.command).toEqual([
      fs.realpathSync(process.execPath),
      fs.realpathSync(CLI),
      'serve',
      '--port',
      '17865',
      '--threads',
      '2',
    ]);
    expect(s).toMatchObject({ managerReachable: false, running: null });
  });

  it('install again updates the unit; bad options are refused before anything is written', () => {
    const r = reshoot(['install', '--port', '17866']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`updated ${unit}`);
    expect(fs.readFileSync(unit, 'utf8')).toContain('"--port" "17866"');
    const bad = reshoot(['install', '--model', path.join(root, 'no such model')]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--model .*no such folder/);
    expect(fs.readFileSync(unit, 'utf8')).toContain('"--port" "17866"');
  });

  it('uninstall removes what install wrote, and is idempotent', () => {
    const r = reshoot(['uninstall']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`removed ${unit}`);
    expect(fs.existsSync(unit)).toBe(false);
    expect(fs.existsSync(path.join(path.dirname(unit), 'default.target.wants', 'reshoot.service'))).toBe(false);
    const again = reshoot(['uninstall']);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/not installed/);
    expect(reshoot(['status']).stdout).toContain('installed  no');
  });

  it('refuses to remove or replace a unit it did not write', () => {
    fs.mkdirSync(path.dirname(unit), { recursive: true });
    const foreign = '[Service]\nExecStart=/usr/bin/sleep infinity\n';
    fs.writeFileSync(unit, foreign);
    const u = reshoot(['uninstall']);
    expect(u.code).toBe(1);
    expect(u.stderr).toMatch(/was not written by `reshoot service install`.*nothing was removed/);
    const i = reshoot(['install']);
    expect(i.code).toBe(1);
    expect(i.stderr).toMatch(/nothing was installed/);
    expect(fs.readFileSync(unit, 'utf8')).toBe(foreign);
    expect(JSON.parse(reshoot(['status', '--json']).stdout)).toMatchObject({
      installed: true,
      writtenByReshoot: false,
    });
    fs.rmSync(unit);
  });

  it('with a user systemd: really starts the engine on its port, then stops it; without one, says why', async () => {
    if (!managerReachable()) {
      // This machine (a container, or a session without a user manager): install must say it could not start the
      // engine and give systemctl's own reason, which the first test of this file checks in full.
      const probe = spawnSync('systemctl', ['--user', 'is-system-running'], { encoding: 'utf8' });
      expect(probe.status).not.toBe(0);
      const r = reshoot(['install']);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/NOT started now: no user systemd manager answers \(/);
      reshoot(['uninstall']);
      return;
    }
    // The manager's own unit folder: used only when no reshoot.service is there already.
    const realEnv = { ...process.env, RESHOOT_HOME: env.RESHOOT_HOME };
    const realUnit = path.join(
      process.env.XDG_CONFIG_HOME || path.join(os.homedir(), '.config'),
      'systemd/user/reshoot.service',
    );
    if (fs.existsSync(realUnit)) throw new Error(`${realUnit} exists; not touching a real installation`);
    const port = 20000 + Math.floor(Math.random() * 20000);
    try {
      const r = reshoot(['install', '--port', String(port)], realEnv);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('enabled and started');
      let answered = false;
      for (let i = 0; i < 120 && !answered; i++) {
        answered = await fetch(`http://127.0.0.1:${port}/v1/health`).then(
          () => true,
          () => false,
        );
        if (!answered) await new Promise((res) => setTimeout(res, 500));
      }
      expect(answered).toBe(true);
      expect(JSON.parse(reshoot(['status', '--json'], realEnv).stdout)).toMatchObject({ running: true });
    } finally {
      reshoot(['uninstall'], realEnv);
    }
    expect(fs.existsSync(realUnit)).toBe(false);
  });

  it('without a user systemd, status says so and what to run', () => {
    reshoot(['install']);
    const t = reshoot(['status']);
    expect(t.stdout).toMatch(/systemd\s+not reachable/);
    expect(t.stdout).toMatch(/no user systemd manager answers .*enabled for the next login.*systemctl --user start/);
    reshoot(['uninstall']);
  });
});
