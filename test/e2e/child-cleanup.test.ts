// A suite that fails in beforeAll after starting `reshoot serve` must still let jest exit by itself and leave no
// engine behind: before test/support/children.ts, such a run hung until CI killed it. The fixture suite runs in a jest
// of its own, in band (as a 2-core machine runs the real suites), and must end within a generous bound.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '../..');
const FIXTURES = path.join(__dirname, 'fixtures', 'child-cleanup');
const JEST = require.resolve('jest/bin/jest');
const BOUND_MS = 120_000;

jest.setTimeout(BOUND_MS + 30_000);

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

it('a beforeAll that throws after starting reshoot serve: jest exits by itself and the engine is gone', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reshoot-cleanup-'));
  const pidFile = path.join(dir, 'serve.pid');
  const config = {
    rootDir: FIXTURES,
    testMatch: ['<rootDir>/*.fixture.ts'],
    testEnvironment: 'node',
    transform: { '^.+\\.ts$': ['@swc/jest', { jsc: { target: 'es2022' }, module: { type: 'commonjs' } }] },
    cacheDirectory: path.join(dir, 'jest-cache'),
  };
  const env: NodeJS.ProcessEnv = { ...process.env, RESHOOT_FIXTURE_PID_FILE: pidFile };
  delete env.RESHOOT_FIXTURE_NO_CLEANUP;
  const t0 = Date.now();
  const proc = spawn(
    process.execPath,
    [JEST, '--config', JSON.stringify(config), '--runInBand', '--ci', '--watchman=false'],
    {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  proc.stdout.on('data', (d: Buffer) => (output += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (output += d.toString()));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill('SIGKILL');
  }, BOUND_MS);
  const code = await new Promise<number | null>((resolve) => proc.once('exit', (c) => resolve(c)));
  clearTimeout(timer);
  const ms = Date.now() - t0;
  const pid = fs.existsSync(pidFile) ? Number(fs.readFileSync(pidFile, 'utf8')) : NaN;
  const left = Number.isInteger(pid) && pid > 0 && alive(pid);
  // Whatever happened, leave nothing running.
  if (left) process.kill(pid, 'SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
  console.log(
    `child cleanup: the fixture jest exited with ${code} after ${(ms / 1000).toFixed(1)} s; reshoot serve (pid ${pid}) ${left ? 'was still running' : 'gone'}`,
  );

  expect({ timedOut, tail: timedOut ? output.slice(-2000) : '' }).toEqual({ timedOut: false, tail: '' });
  // The engine did start (its pid was recorded) and the suite failed for the fixture's reason, not another.
  expect(Number.isInteger(pid) && pid > 0).toBe(true);
  expect(output).toMatch(/fixture: the browser did not launch/);
  expect(code).toBe(1);
  expect(left).toBe(false);
});
