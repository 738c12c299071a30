// The data folder made private on Windows: the commands, checked with the platform and the runner injected (no
// Windows machine in CI). POSIX modes are checked for real in test/integration/private-data.test.ts.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { makePrivateDir, type CommandRunner } from '../../engine/src/config/private-dir';

const SID = 'S-1-5-21-1004336348-1177238915-682003330-1001';
let root: string;

beforeAll(() => (root = fs.mkdtempSync(path.join(os.tmpdir(), 'private-dir-'))));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function recorder(answers: Record<string, { status: number | null; stdout: string }>) {
  const calls: string[][] = [];
  const run: CommandRunner = (command, args) => {
    calls.push([command, ...args]);
    return answers[command] ?? { status: 1, stdout: '' };
  };
  return { calls, run };
}

const whoami = { status: 0, stdout: `"desktop-7\\\\editor","${SID}"\r\n` };

describe('makePrivateDir on Windows', () => {
  it('a folder inside the profile inherits its ACLs: no command runs', () => {
    const { calls, run } = recorder({});
    // The temporary folder stands for the profile here: what counts is that the data folder is inside it.
    const dir = path.join(root, 'profile-data');
    expect(makePrivateDir(dir, { platform: 'win32', home: root, run })).toBeNull();
    expect(calls).toEqual([]);
    expect(fs.statSync(dir).isDirectory()).toBe(true);
  });

  it('a folder elsewhere: inherited entries removed, full control for this user and SYSTEM only, once', () => {
    const { calls, run } = recorder({ whoami, icacls: { status: 0, stdout: '' } });
    const dir = path.join(root, 'elsewhere');
    const o = { platform: 'win32' as const, home: 'C:\\Users\\editor', run };
    expect(makePrivateDir(dir, o)).toBeNull();
    expect(makePrivateDir(dir, o)).toBeNull();
    const full = path.win32.resolve(dir);
    expect(calls).toEqual([
      ['whoami', '/user', '/fo', 'csv', '/nh'],
      ['icacls', full, '/inheritance:r', '/grant:r', `*${SID}:(OI)(CI)F`, '*S-1-5-18:(OI)(CI)F', '/Q'],
    ]);
  });

  it('when icacls fails: the folder is still there and the sentence says what it means', () => {
    const { run } = recorder({ whoami, icacls: { status: 5, stdout: '' } });
    const dir = path.join(root, 'denied');
    const said = makePrivateDir(dir, { platform: 'win32', home: 'C:\\Users\\editor', run });
    expect(said).toMatch(
      /^could not make .*denied private to this user \(icacls exit 5\); other users of this machine may read/,
    );
    expect(fs.statSync(dir).isDirectory()).toBe(true);
  });

  it('without a SID from whoami: says so, runs no icacls', () => {
    const { calls, run } = recorder({ whoami: { status: 0, stdout: 'nothing useful' } });
    const said = makePrivateDir(path.join(root, 'nosid'), { platform: 'win32', home: 'C:\\Users\\editor', run });
    expect(said).toMatch(/whoami \/user did not give this user's SID/);
    expect(calls.map((c) => c[0])).toEqual(['whoami']);
  });

  it('on POSIX: no command, modes tightened', () => {
    const { calls, run } = recorder({});
    const dir = path.join(root, 'posix');
    fs.mkdirSync(dir, { mode: 0o755 });
    fs.chmodSync(dir, 0o755);
    expect(makePrivateDir(dir, { platform: 'linux', run })).toBeNull();
    expect(calls).toEqual([]);
    if (process.platform !== 'win32') expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
  });
});
