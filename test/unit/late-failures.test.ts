// Inputs that used to fail late, or strangely, now refused up front with a sentence (issue "Hardening", finding 9).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { JobRequest } from '../../engine/src/api/schemas';
import { escapeControls } from '../../engine/src/cli/serve';
import { configDir, dataDir } from '../../engine/src/config/paths';
import { defaultOutputPath } from '../../engine/src/jobs/runner';
import { checkOutputTarget } from '../../engine/src/media/output-target';
import { loadOrCreateToken } from '../../engine/src/server/token';

const saved = { ...process.env };
let root: string;

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'late-'));
});

afterEach(() => {
  for (const k of ['RESHOOT_HOME', 'XDG_DATA_HOME', 'XDG_CONFIG_HOME']) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
});

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

it('ignores an empty or relative XDG_DATA_HOME / XDG_CONFIG_HOME, as the XDG spec says: the folders stay absolute', () => {
  delete process.env.RESHOOT_HOME;
  for (const v of ['', 'relative/data']) {
    process.env.XDG_DATA_HOME = v;
    process.env.XDG_CONFIG_HOME = v;
    if (process.platform === 'linux') {
      expect(dataDir()).toBe(path.join(os.homedir(), '.local', 'share', 'reshoot'));
      expect(configDir()).toBe(path.join(os.homedir(), '.config', 'reshoot'));
    }
    expect(path.isAbsolute(dataDir())).toBe(true);
    expect(path.isAbsolute(configDir())).toBe(true);
  }
  process.env.XDG_DATA_HOME = path.join(root, 'xdg');
  if (process.platform === 'linux') expect(dataDir()).toBe(path.join(root, 'xdg', 'reshoot'));
});

it('writes a path or prompt with a newline or other control characters into one log line', () => {
  const line = escapeControls('job abc: /media/clip\n2026-12-06T00:00:00Z job xyz: succeeded\u0007\u2028');
  expect(line.split('\n')).toHaveLength(1);
  expect(line).toBe('job abc: /media/clip\\u000a2026-12-06T00:00:00Z job xyz: succeeded\\u0007\\u2028');
});

it('refuses a token file of binary garbage at start, with what to do', () => {
  const dir = path.join(root, 'config');
  fs.mkdirSync(dir, { mode: 0o700 });
  fs.writeFileSync(
    path.join(dir, 'token'),
    Buffer.from([
      0xff, 0xfe, 0x00, 0x41, 0x9c, 0x81, 0x20, 0x10, 0xe2, 0x82, 0xac, 0x7f, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86,
      0x87,
    ]),
    { mode: 0o600 },
  );
  expect(() => loadOrCreateToken(dir)).toThrow(
    /characters other than printable ASCII.*delete the file and start the engine again/,
  );
});

it('refuses an output name too long for the temporary names beside it, and shortens a default name instead', () => {
  const folder = path.join(root, 'out');
  fs.mkdirSync(folder);
  expect(() =>
    checkOutputTarget(path.join(folder, `${'x'.repeat(230)}.mp4`), {
      overwrite: false,
      mayCreateFolder: false,
      videoName: true,
    }),
  ).toThrow(/is too long \(234 bytes\).*at most \d+ bytes/);
  const longSource = path.join(folder, `${'é'.repeat(150)}.mov`);
  const req = JobRequest.parse({ source: { path: longSource, in: 0, out: 1 }, prompt: 'a blue car' });
  const out = defaultOutputPath(req, 'abcdef12', folder);
  expect(Buffer.byteLength(path.basename(out))).toBeLessThanOrEqual(150);
  expect(() => checkOutputTarget(out, { overwrite: false, mayCreateFolder: false, videoName: false })).not.toThrow();
});
