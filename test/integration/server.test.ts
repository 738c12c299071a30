// The HTTP layer over real loopback sockets, against a fake job service the tests drive step by step. node:http is
// used throughout because fetch() cannot set the Host header, which the DNS-rebinding tests need.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { Job, MediaInfoSchema, Problem, type Health } from '../../engine/src/api/schemas';
import { ProblemError } from '../../engine/src/jobs/service';
import { createApp, ROUTES } from '../../engine/src/server/app';
import { startServer, type RunningServer } from '../../engine/src/server/listen';
import { loadOrCreateToken } from '../../engine/src/server/token';
import { FakeJobService } from '../support/fake-job-service';

const TOKEN = crypto.randomBytes(32).toString('base64url');
const WRONG_SAME_LENGTH = crypto.randomBytes(32).toString('base64url');
const PNG = Buffer.from('89504e470d0a1a0a0000000d4948445200000001000000010806000000', 'hex');
const EXTRA_ORIGIN = 'http://localhost:5173';

const bodies: string[] = [];
const logs: string[] = [];
let tmp: string;
let clip: string;
let staticDir: string;
let service: FakeJobService;
let server: RunningServer;
let port: number;
const probeCalls: string[] = [];
const stillCalls: Array<[string, number, number | undefined]> = [];

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  text: string;
  json: unknown;
}

interface CallOptions {
  /** Bearer token; null for none. Defaults to the right one. */
  token?: string | null;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** JSON body with Content-Type application/json. */
  json?: unknown;
  /** false: send no Host header at all. */
  setHost?: boolean;
}

function call(method: string, urlPath: string, o: CallOptions = {}): Promise<Reply> {
  const headers: Record<string, string> = { ...o.headers };
  const token = o.token === undefined ? TOKEN : o.token;
  if (token !== null) headers.authorization ??= `Bearer ${token}`;
  let body = o.body;
  if (o.json !== undefined) {
    body = JSON.stringify(o.json);
    headers['content-type'] ??= 'application/json';
  }
  if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = http.request(
      { host: '127.0.0.1', port, method, path: urlPath, headers, setHost: o.setHost ?? true, agent: false },
      (res) => {
        answered = true;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const buf = Buffer.concat(chunks);
          const text = buf.toString('utf8');
          bodies.push(text);
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: buf, text, json });
        });
      },
    );
    // The server may answer (413) before it has read a large body; the write then fails, which is fine.
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    if (body !== undefined) req.write(body);
    req.end();
  });
}

function expectProblem(r: Reply, status: number): Problem {
  expect(r.status).toBe(status);
  expect(r.headers['content-type']).toMatch(/^application\/problem\+json/);
  const p = Problem.parse(r.json);
  expect(p.status).toBe(status);
  expect(p.detail.length).toBeGreaterThan(10);
  return p;
}

interface SseEvent {
  id?: string;
  event: string;
  data: unknown;
}

/** The `type` of an event's data: a JobEvent's, or `job` for the snapshot that opens the stream. */
function eventType(e: SseEvent): string {
  return (e.data as { type: string }).type;
}

/** The job that a `job`, `progress` or `done` event carries (a type only: the tests check the values). */
function eventJob(e: SseEvent): Job {
  return (e.data as { job: Job }).job;
}

interface SseClient {
  status: number;
  headers: http.IncomingHttpHeaders;
  events: SseEvent[];
  comments: string[];
  ended: Promise<void>;
  isEnded(): boolean;
  close(): void;
}

function openEvents(
  urlPath: string,
  headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` },
): Promise<SseClient> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method: 'GET', path: urlPath, headers, agent: false },
      (res) => {
        const events: SseEvent[] = [];
        const comments: string[] = [];
        let buffer = '';
        let done = false;
        const ended = new Promise<void>((resolveEnd) => {
          res.on('end', () => {
            done = true;
            bodies.push(buffer);
            resolveEnd();
          });
          res.on('close', () => {
            done = true;
            resolveEnd();
          });
        });
        res.setEncoding('utf8');
        let all = '';
        res.on('data', (chunk: string) => {
          buffer += chunk;
          all += chunk;
          let cut: number;
          while ((cut = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            const e: Partial<SseEvent> = {};
            for (const line of block.split('\n')) {
              if (line.startsWith(':')) comments.push(line);
              else if (line.startsWith('event: ')) e.event = line.slice(7);
              else if (line.startsWith('id: ')) e.id = line.slice(4);
              else if (line.startsWith('data: ')) e.data = JSON.parse(line.slice(6));
            }
            if (e.event) events.push(e as SseEvent);
          }
          bodies.push(all);
        });
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          events,
          comments,
          ended,
          isEnded: () => done,
          close: () => req.destroy(),
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function waitUntil(check: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const validRequest = () => ({
  source: { path: clip, in: 0.5, out: 2 },
  prompt: 'make the red car a blue vintage convertible',
});

async function submit(): Promise<Job> {
  const r = await call('POST', '/v1/jobs', { json: validRequest() });
  expect(r.status).toBe(202);
  return Job.parse(r.json);
}

function writeResult(name: string, size = 4096): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, Buffer.from(Array.from({ length: size }, (_, i) => i % 251)));
  return file;
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'reshoot-server-'));
  clip = path.join(tmp, 'clip.mp4');
  fs.writeFileSync(clip, 'not really a video');
  staticDir = path.join(tmp, 'web');
  fs.mkdirSync(staticDir);
  fs.writeFileSync(path.join(staticDir, 'index.html'), '<!doctype html><title>Reshoot</title>');
  service = new FakeJobService({
    probe: async (p) => {
      probeCalls.push(p);
      if (p.endsWith('missing.mov'))
        throw ProblemError.of(422, 'Media not found', `${p} does not exist`, 'path', 'media-not-found');
      if (p.endsWith('explode.mov')) throw new Error('ffprobe crashed at /internal/secret/location');
      // Only what MediaInfoSchema promises clients; the server passes the object through untouched.
      const info = {
        path: p,
        container: 'mov,mp4,m4a,3gp,3g2,mj2',
        durationSec: 2.5,
        sizeBytes: 18,
        video: {
          codec: 'h264',
          width: 64,
          height: 48,
          displayWidth: 64,
          displayHeight: 48,
          rotation: 0,
          fps: { num: 24, den: 1 },
          frameCount: 60,
          pixFmt: 'yuv420p',
          bitDepth: 8,
        },
        audio: [],
      };
      return info as unknown as Awaited<ReturnType<FakeJobService['probe']>>;
    },
    still: async (p, t, maxWidth) => {
      stillCalls.push([p, t, maxWidth]);
      return PNG;
    },
  });
  const app = createApp(service, {
    token: TOKEN,
    port: 0,
    version: '9.9.9-test',
    staticDir,
    allowedOrigins: [EXTRA_ORIGIN],
    log: (l) => logs.push(l),
    heartbeatMs: 100,
  });
  server = await startServer(app, { port: 0 });
  port = server.port;
});

afterAll(async () => {
  await server?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** A concrete path for a route, with an existing job where it takes one. */
function concretePath(p: string, id: string): string {
  return (
    p.replace(':id', id) +
    (p === '/v1/media/probe' || p === '/v1/media/still' ? `?path=${encodeURIComponent(clip)}` : '') +
    (p === '/v1/jobs/:id/matte' ? '?frame=0' : '')
  );
}

describe('health and models', () => {
  test('GET /v1/health answers with the service health', async () => {
    const r = await call('GET', '/v1/health');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^application\/json/);
    expect(r.json).toEqual(service.health());
    expect(r.headers['cache-control']).toBe('no-store');
    expect(r.headers['x-content-type-options']).toBe('nosniff');
  });

  test('GET /v1/models lists the models', async () => {
    const r = await call('GET', '/v1/models');
    expect(r.status).toBe(200);
    expect(r.json).toEqual({
      models: [
        { name: 'oracle', dir: '/models/oracle', loaded: true, nativeSize: 64, latentChannels: 4, provider: 'cpu' },
      ],
    });
  });

  test('GET /v1/workers lists no render nodes when jobs run in the engine itself', async () => {
    const r = await call('GET', '/v1/workers');
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ workers: [] });
  });
});

describe('authentication', () => {
  let job: Job;
  beforeAll(async () => {
    job = await submit();
  });

  const wrongs: Array<[string, Record<string, string>]> = [
    ['no token', {}],
    ['a wrong token of the same length', { authorization: `Bearer ${WRONG_SAME_LENGTH}` }],
    ['a wrong token of another length', { authorization: 'Bearer short' }],
    ['the right token with the wrong scheme', { authorization: `Basic ${TOKEN}` }],
    ['the right token with a suffix', { authorization: `Bearer ${TOKEN}x` }],
  ];
  for (const route of ROUTES) {
    for (const [label, headers] of wrongs) {
      test(`${route.method} ${route.path} with ${label} → 401`, async () => {
        const r = await call(route.method, concretePath(route.path, job.id), {
          token: null,
          headers,
          ...(route.method === 'POST' ? { json: validRequest() } : {}),
        });
        const p = expectProblem(r, 401);
        expect(p.title).toBe('Token required');
        expect(r.headers['www-authenticate']).toMatch(/^Bearer/);
      });
    }
  }

  test('unknown /v1 routes need the token too (no probing), and are 404 with it', async () => {
    expectProblem(await call('GET', '/v1/secret-admin', { token: null }), 401);
    expectProblem(await call('GET', '/V1/HEALTH', { token: null }), 401);
    expect(expectProblem(await call('GET', '/v1/secret-admin'), 404).detail).toMatch(/openapi\.json/);
    expectProblem(await call('GET', '/V1/HEALTH'), 404);
  });

  test('a known path with another method is 405 with Allow', async () => {
    const r = await call('DELETE', `/v1/jobs/${job.id}`);
    expectProblem(r, 405);
    expect(r.headers.allow).toBe('GET');
    expectProblem(await call('DELETE', `/v1/jobs/${job.id}`, { token: null }), 401);
  });

  test('?token= is accepted only on job events, preview, result, matte and media still', async () => {
    const finished = await submit();
    service.finish(finished.id, writeResult('query-token.mp4'));
    const accepted: string[] = [];
    for (const route of ROUTES) {
      const url = concretePath(route.path, finished.id);
      const r = await call(route.method, `${url}${url.includes('?') ? '&' : '?'}token=${TOKEN}`, {
        token: null,
        ...(route.method === 'POST' ? { json: validRequest() } : {}),
      });
      if (r.status === 401) {
        expect(Problem.parse(r.json).detail).toMatch(/only in the Authorization header/);
      } else if (route.operationId === 'getJobMatte') {
        // Past the token check: this fake result has no automatic mask, and the route says so.
        expect(Problem.parse(r.json).title).toBe('No matte');
        accepted.push(`${route.method} ${route.path}`);
      } else if (route.operationId === 'getJobPreview') {
        // Past the token check: the job ended, so there is no live preview to show.
        expect(r.status).toBe(204);
        accepted.push(`${route.method} ${route.path}`);
      } else {
        expect(r.status).toBe(200);
        accepted.push(`${route.method} ${route.path}`);
      }
    }
    expect(accepted.sort()).toEqual([
      'GET /v1/jobs/:id/events',
      'GET /v1/jobs/:id/matte',
      'GET /v1/jobs/:id/preview',
      'GET /v1/jobs/:id/result',
      'GET /v1/media/still',
    ]);
    // A wrong query token is refused where query tokens are allowed.
    expectProblem(await call('GET', `/v1/jobs/${finished.id}/result?token=${WRONG_SAME_LENGTH}`, { token: null }), 401);
    expectProblem(
      await call('GET', `/v1/jobs/${finished.id}/result?token=${TOKEN}&token=${TOKEN}`, { token: null }),
      401,
    );
  });
});

describe('Host header (DNS rebinding)', () => {
  test('foreign Host names are refused on /v1 and on static files, with or without a token', async () => {
    for (const host of [
      `evil.example:${port}`,
      'evil.example',
      `127.0.0.1.nip.io:${port}`,
      `localhost.evil.example:${port}`,
      '127.0.0.1:1',
      '127.0.0.1',
    ]) {
      for (const p of ['/v1/health', '/', '/index.html']) {
        const r = await call('GET', p, { headers: { host } });
        const problem = expectProblem(r, 403);
        expect(problem.detail).toBe(
          `requests must use http://127.0.0.1:${port} or http://localhost:${port}; this engine refuses other host names so that web pages cannot reach it through DNS rebinding`,
        );
      }
    }
    expectProblem(await call('GET', '/v1/health', { setHost: false }), 403);
  });

  test('127.0.0.1, localhost and [::1] with the real port are accepted', async () => {
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`, `[::1]:${port}`]) {
      const r = await call('GET', '/v1/health', { headers: { host } });
      expect(r.status).toBe(200);
      expect((r.json as Health).ok).toBe(true);
    }
  });

  test('static files are served without a token behind the Host check', async () => {
    const r = await call('GET', '/', { token: null });
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^text\/html/);
    expect(r.text).toBe('<!doctype html><title>Reshoot</title>');
    expect(r.headers['referrer-policy']).toBe('no-referrer');
    expect(r.headers['x-frame-options']).toBe('DENY');
    const missing = await call('GET', '/nothing-here.js', { token: null });
    expectProblem(missing, 404);
  });
});

describe('CORS and Origin', () => {
  test('an Origin from another site is refused on every /v1 request, even with the token', async () => {
    for (const origin of ['https://evil.example', 'http://127.0.0.1:1', 'http://localhost', 'null']) {
      const get = await call('GET', '/v1/health', { headers: { origin } });
      expect(expectProblem(get, 403).title).toBe('Origin not allowed');
      expect(get.headers['access-control-allow-origin']).toBeUndefined();
      // A text/plain POST is a "simple" request a foreign page can send without preflight: refused before anything runs.
      const before = service.submitted.length;
      const post = await call('POST', '/v1/jobs', {
        token: null,
        headers: { origin, 'content-type': 'text/plain' },
        body: JSON.stringify(validRequest()),
      });
      expectProblem(post, 403);
      expect(service.submitted.length).toBe(before);
    }
  });

  test("the engine's own origins and configured ones get Access-Control-Allow-Origin", async () => {
    for (const origin of [`http://127.0.0.1:${port}`, `http://localhost:${port}`, EXTRA_ORIGIN]) {
      const r = await call('GET', '/v1/health', { headers: { origin } });
      expect(r.status).toBe(200);
      expect(r.headers['access-control-allow-origin']).toBe(origin);
      expect(r.headers.vary).toMatch(/Origin/);
      expect(r.headers['access-control-allow-credentials']).toBeUndefined();
    }
  });

  test('requests without Origin (CLI, UXP) are judged by the token alone', async () => {
    const r = await call('GET', '/v1/health');
    expect(r.status).toBe(200);
    expect(r.headers['access-control-allow-origin']).toBeUndefined();
  });

  test('preflight: allowed origins get the methods and headers, others 403', async () => {
    const ok = await call('OPTIONS', '/v1/jobs', {
      token: null,
      headers: {
        origin: EXTRA_ORIGIN,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type',
      },
    });
    expect(ok.status).toBe(204);
    expect(ok.text).toBe('');
    expect(ok.headers['access-control-allow-origin']).toBe(EXTRA_ORIGIN);
    expect(ok.headers['access-control-allow-methods']).toBe('GET, POST');
    expect(ok.headers['access-control-allow-headers']).toMatch(/Authorization/);
    expect(ok.headers['access-control-allow-headers']).toMatch(/Content-Type/);
    expect(ok.headers['access-control-max-age']).toBe('600');
    const bad = await call('OPTIONS', '/v1/jobs', {
      token: null,
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
    });
    expectProblem(bad, 403);
    expect(bad.headers['access-control-allow-origin']).toBeUndefined();
  });

  test('OPTIONS without a token says the same for existing and missing routes and job ids', async () => {
    const answers = await Promise.all(
      ['/v1/jobs', '/v1/health', '/v1/jobs/nope/result', '/v1/no-such-route', '/v1/jobs/x/cancel'].map((p) =>
        call('OPTIONS', p, { token: null }),
      ),
    );
    const shape = (r: (typeof answers)[number]) => ({
      status: r.status,
      allow: r.headers['allow'],
      methods: r.headers['access-control-allow-methods'],
      body: r.text,
    });
    for (const r of answers) expect(shape(r)).toEqual(shape(answers[0]));
    expect(shape(answers[0])).toEqual({ status: 204, allow: 'GET, POST, OPTIONS', methods: 'GET, POST', body: '' });
  });
});

describe('POST /v1/jobs', () => {
  afterEach(() => {
    service.maxActive = Infinity;
  });

  test('202 with Location and the job; defaults filled in', async () => {
    const r = await call('POST', '/v1/jobs', { json: { ...validRequest(), steps: 20, seed: 7 } });
    expect(r.status).toBe(202);
    const job = Job.parse(r.json);
    expect(r.headers.location).toBe(`/v1/jobs/${job.id}`);
    expect(job.state).toBe('queued');
    expect(job.request).toMatchObject({
      source: { path: clip, in: 0.5, out: 2 },
      steps: 20,
      seed: 7,
      method: 'inversion',
      guidance: 7.5,
      mask: { type: 'none' },
    });
    const again = await call('GET', r.headers.location!);
    expect(again.status).toBe(200);
    expect(again.json).toEqual(r.json);
  });

  // Bodies are built lazily: the clip path exists only once beforeAll has run.
  const invalid: Array<[string, () => unknown, string, RegExp]> = [
    ['an unknown field', () => ({ ...validRequest(), colour: 'blue' }), '(body)', /unknown field "colour"/],
    [
      'an unknown nested field',
      () => ({ ...validRequest(), source: { path: '/a.mov', in: 0, out: 1, speed: 2 } }),
      'source',
      /unknown field "speed"/,
    ],
    ['no prompt', () => ({ source: validRequest().source }), 'prompt', /prompt: is required/],
    ['a blank prompt', () => ({ ...validRequest(), prompt: '   ' }), 'prompt', /prompt is empty/],
    [
      'a reversed range',
      () => ({ ...validRequest(), source: { path: clip, in: 3, out: 1 } }),
      'source.out',
      /^Out must be later than In$/,
    ],
    [
      'a non-number in point',
      () => ({ ...validRequest(), source: { path: clip, in: 'abc', out: 1 } }),
      'source.in',
      /^In must be a number of seconds/,
    ],
    ['steps 0', () => ({ ...validRequest(), steps: 0 }), 'steps', /at least 1/],
    ['steps 500', () => ({ ...validRequest(), steps: 500 }), 'steps', /at most 200/],
    ['fractional steps', () => ({ ...validRequest(), steps: 2.5 }), 'steps', /whole number/],
    [
      'a prompt over 2000 characters',
      () => ({ ...validRequest(), prompt: 'x'.repeat(2001) }),
      'prompt',
      /longer than 2000/,
    ],
    [
      'a mask box outside the frame',
      () => ({ ...validRequest(), mask: { type: 'box', x: 0.8, y: 0, w: 0.5, h: 0.5 } }),
      'mask',
      /inside the frame/,
    ],
    ['an array body', () => [validRequest()], '(body)', /expected object/],
  ];
  for (const [label, body, field, detail] of invalid) {
    test(`${label} → 400 naming ${field}`, async () => {
      const before = service.submitted.length;
      const p = expectProblem(await call('POST', '/v1/jobs', { json: body() }), 400);
      expect(p.title).toBe('Invalid request');
      expect(p.field).toBe(field);
      expect(p.detail).toMatch(detail);
      expect(p.issues?.[0]?.field).toBe(field);
      expect(service.submitted.length).toBe(before);
    });
  }

  test('a 1 MB body → 413', async () => {
    const p = expectProblem(
      await call('POST', '/v1/jobs', { json: { ...validRequest(), prompt: 'x'.repeat(1024 * 1024) } }),
      413,
    );
    expect(p.detail).toMatch(/larger than 64 kB/);
  });

  test('a body that is not JSON-typed → 415, also without any Content-Type', async () => {
    const text = expectProblem(
      await call('POST', '/v1/jobs', {
        headers: { 'content-type': 'text/plain' },
        body: JSON.stringify(validRequest()),
      }),
      415,
    );
    expect(text.detail).toMatch(/Content-Type: application\/json/);
    expectProblem(
      await call('POST', '/v1/jobs', {
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'prompt=x',
      }),
      415,
    );
    expectProblem(await call('POST', '/v1/jobs', { body: JSON.stringify(validRequest()) }), 415);
    expectProblem(await call('POST', '/v1/jobs'), 415);
    // A JSON content type with a charset is still JSON.
    const ok = await call('POST', '/v1/jobs', {
      headers: { 'content-type': 'application/json; charset=utf-8' },
      body: JSON.stringify(validRequest()),
    });
    expect(ok.status).toBe(202);
  });

  test('malformed JSON → 400 without echoing the body', async () => {
    const p = expectProblem(
      await call('POST', '/v1/jobs', {
        headers: { 'content-type': 'application/json' },
        body: '{"prompt": sneaky-body-text',
      }),
      400,
    );
    expect(p.title).toBe('Malformed JSON');
    expect(p.detail).toMatch(/^body is not valid JSON: /);
    expect(p.detail).not.toMatch(/sneaky/);
  });

  test('a missing source file → 422 from the service', async () => {
    const p = expectProblem(
      await call('POST', '/v1/jobs', {
        json: { ...validRequest(), source: { path: path.join(tmp, 'gone.mov'), in: 0, out: 1 } },
      }),
      422,
    );
    expect(p.field).toBe('source.path');
    expect(p.detail).toMatch(/gone\.mov does not exist/);
  });

  test('a full queue → 429', async () => {
    service.maxActive = service.list().filter((j) => j.state === 'queued' || j.state === 'running').length;
    const p = expectProblem(await call('POST', '/v1/jobs', { json: validRequest() }), 429);
    expect(p.title).toBe('Queue full');
  });
});

describe('GET /v1/jobs', () => {
  test('lists every job, and one job by id', async () => {
    const job = await submit();
    const r = await call('GET', '/v1/jobs');
    expect(r.status).toBe(200);
    const jobs = (r.json as { jobs: unknown[] }).jobs.map((j) => Job.parse(j));
    expect(jobs.map((j) => j.id)).toEqual(service.list().map((j) => j.id));
    expect(jobs.map((j) => j.id)).toContain(job.id);
    const one = await call('GET', `/v1/jobs/${job.id}`);
    expect(one.status).toBe(200);
    expect(Job.parse(one.json).id).toBe(job.id);
  });

  test('an unknown id → 404 problem', async () => {
    const p = expectProblem(await call('GET', '/v1/jobs/no-such-job'), 404);
    expect(p.detail).toMatch(/there is no job no-such-job/);
    expectProblem(await call('GET', '/v1/jobs/%E0%A4%A'), 400);
  });
});

describe('GET /v1/jobs/:id/events', () => {
  test('a job snapshot, progress, preview and done in order, then the stream ends and unsubscribes', async () => {
    const job = await submit();
    const sse = await openEvents(`/v1/jobs/${job.id}/events`);
    expect(sse.status).toBe(200);
    expect(sse.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    await waitUntil(() => sse.events.length === 1, 'the snapshot event');
    expect(service.listenerCount(job.id)).toBe(1);
    service.advance(job.id, 0.25);
    service.advance(job.id, { stage: 'inverting', fraction: 0.5, step: 5, steps: 10 });
    service.preview(job.id, PNG);
    service.finish(job.id, writeResult('events.mp4'));
    await sse.ended;
    expect(sse.events.map((e) => e.event)).toEqual(['job', 'progress', 'progress', 'preview', 'done']);
    expect(sse.events.map((e) => e.id)).toEqual(['1', '2', '3', '4', '5']);
    expect(sse.events.map((e) => eventType(e))).toEqual(['job', 'progress', 'progress', 'preview', 'done']);
    expect(Job.parse(eventJob(sse.events[0])).state).toBe('queued');
    expect(eventJob(sse.events[1]).progress).toEqual({ stage: 'editing', fraction: 0.25 });
    expect(eventJob(sse.events[2]).progress).toEqual({ stage: 'inverting', fraction: 0.5, step: 5, steps: 10 });
    expect(sse.events[3].data).toEqual({ type: 'preview', jobId: job.id, png: PNG.toString('base64') });
    const done = Job.parse(eventJob(sse.events[4]));
    expect(done.state).toBe('succeeded');
    expect(done.result?.path).toBe(path.join(tmp, 'events.mp4'));
    expect(service.listenerCount(job.id)).toBe(0);
  });

  test('a client that disconnects is unsubscribed', async () => {
    const job = await submit();
    const sse = await openEvents(`/v1/jobs/${job.id}/events`);
    await waitUntil(() => sse.events.length === 1, 'the snapshot event');
    expect(service.listenerCount(job.id)).toBe(1);
    sse.close();
    await waitUntil(() => service.listenerCount(job.id) === 0, 'the server to unsubscribe');
    expect(() => service.advance(job.id, 0.5)).not.toThrow();
  });

  test('heartbeat comments keep an idle stream alive', async () => {
    const job = await submit();
    const sse = await openEvents(`/v1/jobs/${job.id}/events`);
    await waitUntil(() => sse.comments.length >= 2, 'two heartbeats');
    expect(sse.comments[0]).toBe(': keep-alive');
    expect(sse.events.map((e) => e.event)).toEqual(['job']);
    service.cancel(job.id);
    await sse.ended;
    expect(sse.events.map((e) => e.event)).toEqual(['job', 'done']);
    expect(eventJob(sse.events[1]).state).toBe('canceled');
  });

  test('a finished job: snapshot and done at once; a reconnect with Last-Event-ID gets 204', async () => {
    const job = await submit();
    service.fail(job.id, 'Out of memory', 'the GPU ran out of memory');
    const sse = await openEvents(`/v1/jobs/${job.id}/events`);
    await sse.ended;
    expect(sse.events.map((e) => e.event)).toEqual(['job', 'done']);
    expect(eventJob(sse.events[1]).error).toEqual({ title: 'Out of memory', detail: 'the GPU ran out of memory' });
    expect(service.listenerCount(job.id)).toBe(0);
    const again = await call('GET', `/v1/jobs/${job.id}/events`, { headers: { 'last-event-id': '2' } });
    expect(again.status).toBe(204);
    expect(again.text).toBe('');
  });

  test('an unknown job → 404 problem, not a stream', async () => {
    expectProblem(await call('GET', '/v1/jobs/nope/events'), 404);
  });
});

describe('GET /v1/jobs/:id/preview', () => {
  test('204 until the first preview, then the newest one as PNG, and 204 again once the job ended', async () => {
    const job = await submit();
    const before = await call('GET', `/v1/jobs/${job.id}/preview`);
    expect(before.status).toBe(204);
    expect(before.text).toBe('');
    service.advance(job.id, 0.25);
    service.preview(job.id, Buffer.from('first'));
    service.preview(job.id, PNG);
    const newest = await call('GET', `/v1/jobs/${job.id}/preview`);
    expect(newest.status).toBe(200);
    expect(newest.headers['content-type']).toBe('image/png');
    expect(newest.headers['cache-control']).toBe('no-store');
    expect(newest.body.equals(PNG)).toBe(true);
    const asJson = await call('GET', `/v1/jobs/${job.id}/preview`, { headers: { accept: 'application/json' } });
    expect(asJson.json).toEqual({ png: PNG.toString('base64') });
    service.finish(job.id, writeResult('preview.mp4'));
    expect((await call('GET', `/v1/jobs/${job.id}/preview`)).status).toBe(204);
    expectProblem(await call('GET', '/v1/jobs/nope/preview'), 404);
  });
});

describe('POST /v1/jobs/:id/cancel', () => {
  test('cancels a queued job; a second cancel → 409; unknown → 404', async () => {
    const job = await submit();
    const r = await call('POST', `/v1/jobs/${job.id}/cancel`);
    expect(r.status).toBe(200);
    const canceled = Job.parse(r.json);
    expect(canceled.state).toBe('canceled');
    expect(canceled.id).toBe(job.id);
    const p = expectProblem(await call('POST', `/v1/jobs/${job.id}/cancel`), 409);
    expect(p.detail).toMatch(/already canceled/);
    expectProblem(await call('POST', '/v1/jobs/nope/cancel'), 404);
  });

  test('a body on cancel must be JSON too', async () => {
    const job = await submit();
    expectProblem(
      await call('POST', `/v1/jobs/${job.id}/cancel`, { headers: { 'content-type': 'text/plain' }, body: 'please' }),
      415,
    );
    expect(service.get(job.id)?.state).toBe('queued');
  });
});

describe('GET /v1/jobs/:id/result', () => {
  test('409 while running, the file when finished, 206 for a Range', async () => {
    const job = await submit();
    service.advance(job.id, 0.3);
    const running = expectProblem(await call('GET', `/v1/jobs/${job.id}/result`), 409);
    expect(running.detail).toMatch(/is running/);
    const file = writeResult('result.mp4', 5000);
    service.finish(job.id, file);
    const full = await call('GET', `/v1/jobs/${job.id}/result`);
    expect(full.status).toBe(200);
    expect(full.headers['content-type']).toBe('video/mp4');
    expect(full.headers['accept-ranges']).toBe('bytes');
    expect(full.body.equals(fs.readFileSync(file))).toBe(true);
    const part = await call('GET', `/v1/jobs/${job.id}/result`, { headers: { range: 'bytes=100-199' } });
    expect(part.status).toBe(206);
    expect(part.headers['content-range']).toBe('bytes 100-199/5000');
    expect(part.body.equals(fs.readFileSync(file).subarray(100, 200))).toBe(true);
  });

  test('a .mov result is video/quicktime, also under a dot folder', async () => {
    const job = await submit();
    fs.mkdirSync(path.join(tmp, '.local'), { recursive: true });
    const file = writeResult(path.join('.local', 'result.mov'), 300);
    service.finish(job.id, file);
    const r = await call('GET', `/v1/jobs/${job.id}/result`);
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('video/quicktime');
    expect(r.body.length).toBe(300);
  });

  test('a result file removed after the job → 410; unknown job → 404', async () => {
    const job = await submit();
    const file = writeResult('removed.mp4');
    service.finish(job.id, file);
    fs.rmSync(file);
    expectProblem(await call('GET', `/v1/jobs/${job.id}/result`), 410);
    expectProblem(await call('GET', '/v1/jobs/nope/result'), 404);
  });
});

describe('media', () => {
  test('probe returns MediaInfo', async () => {
    const r = await call('GET', `/v1/media/probe?path=${encodeURIComponent(clip)}`);
    expect(r.status).toBe(200);
    expect(MediaInfoSchema.parse(r.json).video.frameCount).toBe(60);
    expect(probeCalls.at(-1)).toBe(clip);
  });

  test('probe errors: 400 for a bad query, 422 from the service, 500 without details for a crash', async () => {
    const none = expectProblem(await call('GET', '/v1/media/probe'), 400);
    expect(none.field).toBe('path');
    expect(none.title).toBe('Invalid query');
    expect(none.detail).toBe('path: is required: give the absolute path of a media file');
    expect(expectProblem(await call('GET', '/v1/media/probe?path='), 400).field).toBe('path');
    expect(expectProblem(await call('GET', '/v1/media/probe?path=a&path=b'), 400).field).toBe('path');
    expect(expectProblem(await call('GET', `/v1/media/probe?path=x&extra=1`), 400).detail).toMatch(
      /unknown field "extra"/,
    );
    expect(
      expectProblem(await call('GET', `/v1/media/probe?path=${encodeURIComponent('/v/missing.mov')}`), 422).field,
    ).toBe('path');
    const crash = expectProblem(await call('GET', `/v1/media/probe?path=${encodeURIComponent('/v/explode.mov')}`), 500);
    expect(crash.detail).not.toMatch(/secret|ffprobe|internal\//);
    expect(logs.some((l) => l.includes('ffprobe crashed at /internal/secret/location'))).toBe(true);
  });

  test('still returns a PNG with parsed numbers', async () => {
    const r = await call('GET', `/v1/media/still?path=${encodeURIComponent(clip)}&t=1.25&maxWidth=320`);
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('image/png');
    expect(r.body.equals(PNG)).toBe(true);
    expect(stillCalls.at(-1)).toEqual([clip, 1.25, 320]);
    await call('GET', `/v1/media/still?path=${encodeURIComponent(clip)}`);
    expect(stillCalls.at(-1)).toEqual([clip, 0, undefined]);
  });

  test('still rejects bad numbers', async () => {
    const calls = stillCalls.length;
    const abc = expectProblem(await call('GET', `/v1/media/still?path=x&t=abc`), 400);
    expect(abc.field).toBe('t');
    expect(abc.detail).toBe('t: must be a number');
    expect(expectProblem(await call('GET', `/v1/media/still?path=x&t=-1`), 400).field).toBe('t');
    expect(expectProblem(await call('GET', `/v1/media/still?path=x&t=Infinity`), 400).field).toBe('t');
    expect(expectProblem(await call('GET', `/v1/media/still?path=x&t=1&maxWidth=10`), 400).field).toBe('maxWidth');
    expect(expectProblem(await call('GET', `/v1/media/still?path=x&t=1&maxWidth=100.5`), 400).field).toBe('maxWidth');
    expect(stillCalls.length).toBe(calls);
  });
});

/** The parts of the OpenAPI document that the test reads (a type only: the assertions check the values). */
interface OpenApiContent {
  content: Record<string, { schema: unknown }>;
}
interface OpenApiOperation {
  operationId: string;
  responses: Record<string, OpenApiContent>;
  requestBody?: OpenApiContent;
}
interface JsonSchema {
  additionalProperties?: unknown;
  required?: string[];
  enum?: unknown[];
  properties: Record<string, JsonSchema>;
}
interface OpenApiDocument {
  openapi: string;
  info: { version: string };
  paths: Record<string, Record<string, OpenApiOperation>>;
  components: { schemas: Record<string, JsonSchema> };
}

describe('GET /v1/openapi.json', () => {
  test('documents every route and generates components from the zod schemas', async () => {
    const r = await call('GET', '/v1/openapi.json');
    expect(r.status).toBe(200);
    const doc = r.json as OpenApiDocument;
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.info.version).toBe('9.9.9-test');
    for (const route of ROUTES) {
      const op = doc.paths[route.path.replace(':id', '{id}')]?.[route.method.toLowerCase()];
      expect(op).toBeDefined();
      expect(op.operationId).toBe(route.operationId);
      expect(op.responses['401'].content['application/problem+json'].schema).toEqual({
        $ref: '#/components/schemas/Problem',
      });
    }
    const documented = Object.entries(doc.paths).flatMap(([p, ops]) =>
      Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`),
    );
    expect(documented.sort()).toEqual(ROUTES.map((r) => `${r.method} ${r.path.replace(':id', '{id}')}`).sort());
    const schemas = doc.components.schemas;
    expect(schemas.JobRequest.additionalProperties).toBe(false);
    expect(schemas.JobRequest.required).toEqual(['source', 'prompt']);
    expect(schemas.JobRequest.properties.steps).toMatchObject({
      type: 'integer',
      minimum: 1,
      maximum: 200,
      default: 10,
    });
    expect(schemas.Job.properties.state.enum).toEqual(['queued', 'running', 'succeeded', 'failed', 'canceled']);
    expect(Object.keys(schemas).sort()).toEqual([
      'FolderListing',
      'Health',
      'Job',
      'JobEvent',
      'JobRequest',
      'MediaInfo',
      'ModelEntry',
      'Problem',
      'WorkerStatus',
    ]);
    // Every $ref points at a component that exists.
    const refs = [...r.text.matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)].map((m) => m[1]);
    expect(refs.length).toBeGreaterThan(10);
    for (const name of refs) expect(schemas[name]).toBeDefined();
    expect(doc.paths['/v1/jobs'].post.requestBody!.content['application/json'].schema).toEqual({
      $ref: '#/components/schemas/JobRequest',
    });
  });
});

describe('listening', () => {
  test('refuses non-loopback hosts unless allowed, and says why', async () => {
    const app = createApp(new FakeJobService(), { token: TOKEN, port: 0, version: 't' });
    for (const host of ['0.0.0.0', '192.168.1.10', '::']) {
      await expect(startServer(app, { host, port: 0 })).rejects.toThrow(
        /refusing to listen on .*reachable from other machines.*allowNonLoopback/,
      );
    }
    const open = await startServer(app, { host: '0.0.0.0', port: 0, allowNonLoopback: true });
    try {
      expect(open.url).toBe(`http://127.0.0.1:${open.port}`);
    } finally {
      await open.close();
    }
  });

  test('port 0 picks a free port, the Host check uses it, and close() ends open event streams', async () => {
    const svc = new FakeJobService();
    const app = createApp(svc, { token: TOKEN, port: 0, version: 't' });
    const s = await startServer(app, { port: 0 });
    expect(s.port).toBeGreaterThan(0);
    expect(s.url).toBe(`http://127.0.0.1:${s.port}`);
    const health = await fetch(`${s.url}/v1/health`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(health.status).toBe(200);
    expect(((await health.json()) as { ok: boolean }).ok).toBe(true);
    const job = await svc.submit({
      ...validRequest(),
      sourcePrompt: '',
      mask: { type: 'none' },
      method: 'inversion',
      steps: 10,
      guidance: 7.5,
      directInversion: true,
      batchSize: 4,
    });
    const events = await fetch(`${s.url}/v1/jobs/${job.id}/events?token=${TOKEN}`);
    expect(events.status).toBe(200);
    await waitUntil(() => svc.listenerCount(job.id) === 1, 'the subscription');
    const started = Date.now();
    await s.close();
    expect(Date.now() - started).toBeLessThan(1500);
    const rest = await events.text();
    expect(rest).toMatch(/^id: 1\nevent: job\n/);
    expect(svc.listenerCount(job.id)).toBe(0);
    await expect(fetch(`${s.url}/v1/health`)).rejects.toThrow();
  });

  test('a port in use is reported plainly', async () => {
    const app = createApp(new FakeJobService(), { token: TOKEN, port, version: 't' });
    await expect(startServer(app, { port })).rejects.toThrow(`port ${port} on 127.0.0.1 is already in use`);
  });
});

describe('token file', () => {
  const posix = process.platform !== 'win32';

  test('created with mode 0600 in a 0700 folder, and reused', () => {
    const dir = path.join(tmp, 'config', 'reshoot');
    const token = loadOrCreateToken(dir);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(fs.readFileSync(path.join(dir, 'token'), 'utf8').trim()).toBe(token);
    if (posix) {
      expect(fs.statSync(path.join(dir, 'token')).mode & 0o777).toBe(0o600);
      expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    }
    expect(loadOrCreateToken(dir)).toBe(token);
    expect(fs.readdirSync(dir)).toEqual(['token']);
  });

  test('looser modes are tightened', () => {
    if (!posix) return; // Windows has ACLs, not mode bits.
    const dir = path.join(tmp, 'config-loose');
    const token = loadOrCreateToken(dir);
    fs.chmodSync(path.join(dir, 'token'), 0o644);
    fs.chmodSync(dir, 0o755);
    expect(loadOrCreateToken(dir)).toBe(token);
    expect(fs.statSync(path.join(dir, 'token')).mode & 0o777).toBe(0o600);
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
  });

  test('an empty token file is replaced; a weak token is refused with what to do', () => {
    const dir = path.join(tmp, 'config-empty');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'token'), '\n');
    const token = loadOrCreateToken(dir);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    fs.writeFileSync(path.join(dir, 'token'), 'abc');
    expect(() => loadOrCreateToken(dir)).toThrow(/too short.*delete the file/);
  });
});

describe('the token never leaks', () => {
  test('no response body and no log line contains it', () => {
    expect(bodies.length).toBeGreaterThan(100);
    expect(bodies.filter((b) => b.includes(TOKEN))).toEqual([]);
    expect(logs.length).toBeGreaterThan(100);
    expect(logs.filter((l) => l.includes(TOKEN))).toEqual([]);
    // Query tokens were used and logged, redacted.
    expect(logs.some((l) => /\?token=\[redacted\]/.test(l))).toBe(true);
    expect(logs.some((l) => l.includes(WRONG_SAME_LENGTH))).toBe(false);
  });
});
