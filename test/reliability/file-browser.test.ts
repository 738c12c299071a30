// The web UI's file picker on the engine (GET /v1/files): it may show folders and video files inside the configured
// roots and nothing else. "..", encoded or not, a link that points out of a root (to a folder or to a video), a
// relative path and a NUL are refused; hidden entries and non-video files are not listed; the token and the Origin
// rule apply as on every route.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createApp } from '../../engine/src/server/app';
import { startServer, type RunningServer } from '../../engine/src/server/listen';
import { FakeJobService } from '../support/fake-job-service';
import { httpCall, type Reply } from './support/engine';

interface Listing {
  roots: { name: string; path: string }[];
  path?: string;
  parent?: string;
  entries: { name: string; path: string; kind: string; size?: number }[];
  truncated: boolean;
}

let tmp: string;
let root: string;
let outside: string;
let server: RunningServer;
const token = crypto.randomBytes(32).toString('base64url');

beforeAll(async () => {
  // realpath: macOS's tmpdir is itself a link, and the listing answers with resolved paths.
  tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'rel-files-')));
  root = path.join(tmp, 'home');
  outside = path.join(tmp, 'secret');
  fs.mkdirSync(path.join(root, 'clips', 'day 1'), { recursive: true });
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(root, 'clips', 'a.mp4'), 'video');
  fs.writeFileSync(path.join(root, 'clips', 'B.MOV'), 'video too');
  fs.writeFileSync(path.join(root, 'clips', 'notes.txt'), 'not a video');
  fs.writeFileSync(path.join(root, 'clips', '.hidden.mp4'), 'hidden');
  fs.writeFileSync(path.join(outside, 'private.mp4'), 'not yours');
  // Links out of the root (to a folder and to a video), and one that stays inside.
  fs.symlinkSync(outside, path.join(root, 'escape'), 'dir');
  fs.symlinkSync(path.join(outside, 'private.mp4'), path.join(root, 'clips', 'linked-out.mp4'));
  fs.symlinkSync(path.join(root, 'clips'), path.join(root, 'shortcut'), 'dir');
  const app = createApp(new FakeJobService(), { token, port: 0, version: 'test', browseRoots: [root] });
  server = await startServer(app, { port: 0 });
});

afterAll(async () => {
  await server?.close();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

function list(p?: string, o: Parameters<typeof httpCall>[3] = {}): Promise<Reply> {
  return httpCall(server.port, 'GET', p === undefined ? '/v1/files' : `/v1/files?path=${encodeURIComponent(p)}`, {
    token,
    ...o,
  });
}

const listing = (r: Reply) => JSON.parse(r.text) as Listing;

it('lists the roots, then folders and videos inside them, hidden files, other files and outward links left out', async () => {
  const top = await list();
  expect(top.status).toBe(200);
  expect(listing(top).roots).toEqual([{ name: 'home', path: root }]);

  const home = listing(await list(root));
  expect(home.path).toBe(root);
  expect(home.parent).toBeUndefined();
  // "escape" leads out of the root: not listed. "shortcut" stays inside: listed as where it leads.
  expect(home.entries).toEqual([
    { name: 'clips', path: path.join(root, 'clips'), kind: 'folder' },
    { name: 'shortcut', path: path.join(root, 'clips'), kind: 'folder' },
  ]);

  const clips = listing(await list(path.join(root, 'clips')));
  expect(clips.parent).toBe(root);
  expect(clips.entries.map((e) => [e.name, e.kind])).toEqual([
    ['a.mp4', 'video'],
    ['B.MOV', 'video'],
    ['day 1', 'folder'],
  ]);
  expect(clips.entries[0].size).toBe(5);
});

it('refuses every way out of the roots', async () => {
  const refusals: [string, string, number][] = [
    ['the parent of the root', path.join(root, '..'), 403],
    ['dot-dot through a folder', `${root}/clips/../../secret`, 403],
    ['the outside folder itself', outside, 403],
    ['a link out of the root', path.join(root, 'escape'), 403],
    ['a folder under a link out', path.join(root, 'escape', '.'), 403],
    ['the file system root', path.parse(root).root, 403],
    ['a relative path', 'clips', 422],
    ['a relative path with dot-dot', '../secret', 422],
    ['a missing folder', path.join(root, 'nope'), 404],
    ['a file', path.join(root, 'clips', 'a.mp4'), 422],
    ['a NUL', `${root}/clips\0/../../secret`, 400],
  ];
  const failures: string[] = [];
  for (const [what, p, status] of refusals) {
    const r = await list(p);
    if (r.status !== status) failures.push(`${what}: ${r.status} ${r.text}`);
    else if (r.status === 200 || /private\.mp4/.test(r.text)) failures.push(`${what}: leaked ${r.text}`);
    else if (!(r.json?.detail ?? '')) failures.push(`${what}: no detail`);
  }
  // Encoded by hand, as a client that does not normalise would send it.
  const raw = await httpCall(server.port, 'GET', `/v1/files?path=${root}/%2e%2e/secret`, { token });
  if (raw.status !== 403) failures.push(`encoded dot-dot: ${raw.status}`);
  expect(failures).toEqual([]);
  expect((await list(outside)).json?.detail).toMatch(/outside the folders the engine may show/);
});

it('needs the token and refuses a foreign page, like every route', async () => {
  expect((await list(root, { token: null })).status).toBe(401);
  expect((await list(root, { token: null, headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
  const foreign = await list(root, { headers: { origin: 'http://evil.example' } });
  expect(foreign.status).toBe(403);
  expect(foreign.text).not.toContain('clips');
});
