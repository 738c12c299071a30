// GET /v1/jobs/:id/matte?frame=k, the viewer's matte overlay: the PNG of frame k of the automatic mask that a finished
// job wrote, found from the job's own result.mattePath and nothing the client names, so the route cannot be used to
// read other files. Against the real app with a scripted job service.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Problem } from '../../engine/src/api/schemas';
import { encodePng } from '../../engine/src/media/png';
import { createApp } from '../../engine/src/server/app';
import { startServer, type RunningServer } from '../../engine/src/server/listen';
import { FakeJobService } from '../support/fake-job-service';

const TOKEN = crypto.randomBytes(32).toString('base64url');
let tmp: string;
let clip: string;
let service: FakeJobService;
let server: RunningServer;

async function get(
  route: string,
  token: string | null = TOKEN,
): Promise<{ status: number; type: string; body: Buffer }> {
  const res = await fetch(`${server.url}${route}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  return {
    status: res.status,
    type: res.headers.get('content-type') ?? '',
    body: Buffer.from(await res.arrayBuffer()),
  };
}

/** A finished job whose result has a matte sequence of `frames` grey levels (frame k is all 10·k), or none. */
async function finishedJob(frames: number | null): Promise<string> {
  const job = await service.submit({
    source: { path: clip, in: 0, out: 1 },
    prompt: 'p',
  } as Parameters<FakeJobService['submit']>[0]);
  const out = path.join(tmp, `${job.id}.mp4`);
  fs.writeFileSync(out, 'video');
  const done = service.finish(job.id, out);
  if (frames !== null) {
    const dir = `${out}.matte`;
    fs.mkdirSync(dir);
    for (let k = 0; k < frames; k++)
      fs.writeFileSync(
        path.join(dir, `matte_${String(k).padStart(6, '0')}.png`),
        encodePng(new Uint8Array(4 * 2 * 3).fill(10 * k), 4, 2, 3),
      );
    done.result = { ...done.result!, frames, mattePath: path.join(dir, 'matte_%06d.png') };
  }
  return job.id;
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'reshoot-matte-route-'));
  clip = path.join(tmp, 'clip.mp4');
  fs.writeFileSync(clip, 'not really a video; the fake service only checks it exists');
  service = new FakeJobService();
  server = await startServer(createApp(service, { token: TOKEN, port: 0, version: 't' }), { port: 0 });
});

afterAll(async () => {
  await server?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

it('serves frame k of the job’s own matte sequence as PNG, with the token in the header or the query', async () => {
  const id = await finishedJob(3);
  const r = await get(`/v1/jobs/${id}/matte?frame=2`);
  expect(r.status).toBe(200);
  expect(r.type).toBe('image/png');
  expect(r.body.equals(fs.readFileSync(path.join(tmp, `${id}.mp4.matte`, 'matte_000002.png')))).toBe(true);
  // An <img> cannot send a header: ?token= is accepted here.
  const q = await get(`/v1/jobs/${id}/matte?frame=0&token=${TOKEN}`, null);
  expect(q.status).toBe(200);
  expect(q.body.equals(fs.readFileSync(path.join(tmp, `${id}.mp4.matte`, 'matte_000000.png')))).toBe(true);
  expect((await get(`/v1/jobs/${id}/matte?frame=0`, null)).status).toBe(401);
});

it('says why there is no matte: no frame, a frame past the end, no mask, an unknown job, a removed file', async () => {
  const id = await finishedJob(3);
  const problem = async (route: string, status: number) => {
    const r = await get(route);
    expect({ route, status: r.status }).toEqual({ route, status });
    return Problem.parse(JSON.parse(r.body.toString('utf8')));
  };
  expect((await problem(`/v1/jobs/${id}/matte`, 400)).field).toBe('frame');
  expect((await problem(`/v1/jobs/${id}/matte?frame=-1`, 400)).field).toBe('frame');
  expect((await problem(`/v1/jobs/${id}/matte?frame=1.5`, 400)).field).toBe('frame');
  expect((await problem(`/v1/jobs/${id}/matte?frame=3`, 404)).detail).toContain('has 3 frames');
  expect((await problem(`/v1/jobs/${await finishedJob(null)}/matte?frame=0`, 404)).title).toBe('No matte');
  expect((await problem('/v1/jobs/nope/matte?frame=0', 404)).detail).toContain('nope');
  // Other query parameters are refused rather than ignored: no path can be slipped in.
  await problem(`/v1/jobs/${id}/matte?frame=0&path=${encodeURIComponent('/etc/passwd')}`, 400);
  fs.rmSync(path.join(tmp, `${id}.mp4.matte`, 'matte_000001.png'));
  expect((await problem(`/v1/jobs/${id}/matte?frame=1`, 410)).title).toBe('Matte removed');
});
