// Suite 4: who can reach the engine. Binding, the token on every route of the route table, the Host check against DNS
// rebinding, foreign pages in real Chromium (the variants test/e2e does not cover: a rebound host name, Origin null,
// a cross-site form post), the token kept out of every response and log line, and the token file's permissions.
import * as http from 'node:http';
import * as fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import type { Browser } from 'playwright-core';
import { createApp, ROUTES } from '../../engine/src/server/app';
import { startServer } from '../../engine/src/server/listen';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import { launchChromium } from '../support/browser';
import { stopChildren, track } from '../support/children';
import { FakeJobService } from '../support/fake-job-service';
import { Engine, httpCall, jobId, serveFails, type Reply } from './support/engine';
import { makeFixtures, smallJob, type Fixtures } from './support/fixtures';

// Counts every constant-time comparison the token check makes; the real function still does the work.
jest.mock('node:crypto', () => {
  const actual = jest.requireActual<typeof import('node:crypto')>('node:crypto');
  return { ...actual, timingSafeEqual: jest.fn(actual.timingSafeEqual) };
});

jest.setTimeout(90_000);

let root: string;
let home: string;
let model: string;
let fx: Fixtures;
let engine: Engine;
let out: string;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'rel-sec-'));
  model = path.join(root, 'oracle');
  generateOracle(model);
  home = path.join(root, 'home');
  out = path.join(root, 'out');
  fs.mkdirSync(out);
  // allSettled, not all: if the fixtures fail, the engine that did start must still reach afterAll.
  const [made, started] = await Promise.allSettled([
    makeFixtures(path.join(root, 'media')),
    startEngine({ home, args: ['--model', model] }),
  ]);
  if (started.status === 'fulfilled') engine = started.value;
  if (made.status === 'rejected') throw made.reason;
  if (started.status === 'rejected') throw started.reason;
  fx = made.value;
});

afterAll(async () => {
  try {
    await engine?.stop();
  } finally {
    // Any engine a failed test left running (each is tracked from the moment it listens).
    await stopChildren();
    if (root) fs.rmSync(root, { recursive: true, force: true });
  }
});

/** Engine.start, its child tracked so that afterAll stops it whatever a test does with the handle. */
async function startEngine(o: Parameters<typeof Engine.start>[0]): Promise<Engine> {
  const e = await Engine.start(o);
  track(e.proc);
  return e;
}

/** Every route of the table as a concrete request, path parameters filled in with a job that exists. */
async function concreteRoutes(): Promise<{ method: string; path: string; queryToken: boolean }[]> {
  const job = await engine.api('POST', '/v1/jobs', smallJob(fx.clip, out));
  expect(job.status).toBe(202);
  const id = jobId(job);
  await engine.settle(id);
  const query: Record<string, string> = {
    '/v1/media/probe': `?path=${encodeURIComponent(fx.clip)}`,
    '/v1/media/still': `?path=${encodeURIComponent(fx.clip)}&t=0`,
    '/v1/jobs/:id/matte': '?frame=0',
  };
  return ROUTES.map((r) => ({
    method: r.method,
    path: r.path.replace(':id', id) + (query[r.path] ?? ''),
    queryToken: r.queryToken,
  }));
}

describe('binding', () => {
  it('refuses a non-loopback address unless told, before loading the model or touching queued jobs', async () => {
    const h = path.join(root, 'home-bind');
    // A queued job from an earlier run: an engine that refuses to listen must not start editing it.
    const jobsDir = path.join(h, 'data', 'jobs');
    fs.mkdirSync(jobsDir, { recursive: true });
    const queued = {
      id: 'waiting00001',
      state: 'queued',
      createdAt: new Date().toISOString(),
      request: {
        ...(smallJob(fx.clip, out) as object),
        sourcePrompt: '',
        mask: { type: 'none' },
        method: 'inversion',
        directInversion: true,
        batchSize: 4,
      },
      seed: 1,
      outputPath: path.join(out, 'never.mp4'),
      progress: { stage: 'queued', fraction: 0 },
      warnings: [],
      restarts: 0,
    };
    fs.writeFileSync(path.join(jobsDir, 'waiting00001.json'), JSON.stringify(queued));
    for (const host of ['0.0.0.0', '::', '192.0.2.1']) {
      const r = await serveFails({ home: h, args: ['--model', model, '--host', host] });
      expect(r.code).not.toBe(0);
      expect(r.code).not.toBeNull();
      expect(r.stderr).toMatch(
        new RegExp(
          `refusing to listen on ${host.replace(/\./g, '\\.')}: .*reachable from other machines.*--allow-non-loopback`,
        ),
      );
      expect(r.stdout).toBe('');
      expect(r.ms).toBeLessThan(5000);
    }
    expect(
      (JSON.parse(fs.readFileSync(path.join(jobsDir, 'waiting00001.json'), 'utf8')) as { state: string }).state,
    ).toBe('queued');
    expect(fs.existsSync(path.join(out, 'never.mp4'))).toBe(false);

    // Told explicitly, it listens on all interfaces but still answers only to loopback host names.
    const open = await startEngine({
      home: path.join(root, 'home-open'),
      args: ['--model', model, '--host', '0.0.0.0', '--allow-non-loopback'],
    });
    try {
      expect((await open.api('GET', '/v1/health')).status).toBe(200);
      expect((await open.call('GET', '/v1/health', { host: `192.0.2.1:${open.port}` })).status).toBe(403);
      open.expectNoTokenLeak();
    } finally {
      await open.stop();
    }
    console.log(
      'binding: 0.0.0.0, ::, 192.0.2.1 refused with the reason (exit non-zero, queued job untouched); --allow-non-loopback listens but keeps the Host check',
    );
  });
});

describe('the token', () => {
  it('is required on every route of the table, under every spelling of its path, and a wrong one is refused', async () => {
    const routes = await concreteRoutes();
    expect(routes.length).toBe(ROUTES.length);
    const wrongSameLength = crypto.randomBytes(32).toString('base64url');
    expect(wrongSameLength.length).toBe(engine.token.length);
    const nearMiss = engine.token.slice(0, -1) + (engine.token.endsWith('A') ? 'B' : 'A');
    const checks: { what: string; send: () => Promise<Reply> }[] = [];
    const variants = (p: string) => {
      const [pathname, q = ''] = p.split('?');
      const qs = q ? `?${q}` : '';
      return [
        p,
        `${pathname}/${qs}`,
        `${pathname.replace('/v1/', '/V1/')}${qs}`,
        `${pathname}${qs ? `${qs}&` : '?'}x=1`,
      ];
    };
    for (const r of routes) {
      const methods = r.method === 'GET' ? ['GET', 'HEAD'] : [r.method];
      for (const method of methods) {
        for (const p of variants(r.path)) {
          checks.push({ what: `${method} ${p} without a token`, send: () => engine.call(method, p, { token: null }) });
        }
        checks.push({
          what: `${method} ${r.path} with a wrong token of the same length`,
          send: () => engine.call(method, r.path, { token: wrongSameLength }),
        });
        checks.push({
          what: `${method} ${r.path} with the token off by one character`,
          send: () => engine.call(method, r.path, { token: nearMiss }),
        });
        checks.push({
          what: `${method} ${r.path} with a Basic header`,
          send: () =>
            engine.call(method, r.path, {
              token: null,
              headers: { authorization: `Basic ${Buffer.from(`x:${engine.token}`).toString('base64')}` },
            }),
        });
        const sep = r.path.includes('?') ? '&' : '?';
        checks.push({
          what: `${method} ${r.path} with a wrong ?token=`,
          send: () => engine.call(method, `${r.path}${sep}token=${wrongSameLength}`, { token: null }),
        });
        if (!r.queryToken) {
          checks.push({
            what: `${method} ${r.path} with the right token in the query, where only the header counts`,
            send: () => engine.call(method, `${r.path}${sep}token=${engine.token}`, { token: null }),
          });
        }
      }
    }
    // Paths that are not routes must not tell a caller without the token which ones are.
    for (const p of [
      '/v1',
      '/v1/',
      '/v1/admin',
      '/v1/jobs/x/y/z',
      '/v1/../v1/jobs',
      '/V1/JOBS',
      '/v1/%2e%2e/v1/jobs',
    ]) {
      checks.push({ what: `GET ${p} without a token`, send: () => engine.call('GET', p, { token: null }) });
    }
    const failures: string[] = [];
    for (const c of checks) {
      const r = await c.send();
      if (r.status !== 401) failures.push(`${c.what}: ${r.status}`);
      else if (c.what.startsWith('HEAD')) continue;
      else if (!/token/i.test(r.json?.detail ?? ''))
        failures.push(`${c.what}: 401 without saying how to authenticate: ${r.text}`);
    }
    // And with the right token every route answers (not 401/403).
    const ok = await Promise.all(routes.map((r) => engine.call(r.method, r.path)));
    ok.forEach((r, i) => {
      if (r.status === 401 || r.status === 403 || r.status >= 500)
        failures.push(`${routes[i].method} ${routes[i].path} with the token: ${r.status}`);
    });
    console.log(
      `token: ${ROUTES.length} routes in the table, ${checks.length} unauthenticated or wrongly authenticated requests, all 401; with the token all ${routes.length} answer`,
    );
    expect(failures).toEqual([]);
  });

  it('is compared in constant time: every check goes through crypto.timingSafeEqual, right, wrong or of another length', async () => {
    const spy = crypto.timingSafeEqual as jest.Mock;
    const token = crypto.randomBytes(32).toString('base64url');
    const app = createApp(new FakeJobService(), { token, port: 0, version: 'test' });
    const server = await startServer(app, { port: 0 });
    try {
      const tries: [string, string | null, number][] = [
        ['right', token, 200],
        ['wrong, same length', crypto.randomBytes(32).toString('base64url'), 401],
        ['wrong, first character only', (token[0] === 'a' ? 'b' : 'a') + token.slice(1), 401],
        ['wrong, last character only', token.slice(0, -1) + (token.endsWith('a') ? 'b' : 'a'), 401],
        ['a prefix of the token', token.slice(0, 20), 401],
        ['the token twice', token + token, 401],
      ];
      for (const [what, t, status] of tries) {
        spy.mockClear();
        const r = await httpCall(server.port, 'GET', '/v1/health', { token: t });
        expect([what, r.status]).toEqual([what, status]);
        expect([what, spy.mock.calls.length]).toEqual([what, 1]);
        // Both sides are SHA-256 digests, so lengths always match and the token's length does not leak either.
        const [a, b] = spy.mock.calls[0] as [Buffer, Buffer];
        expect([a.length, b.length]).toEqual([32, 32]);
      }
      spy.mockClear();
      const q = await httpCall(
        server.port,
        'GET',
        `/v1/jobs/x/events?token=${crypto.randomBytes(32).toString('base64url')}`,
      );
      expect(q.status).toBe(401);
      expect(spy.mock.calls.length).toBe(1);
      console.log(
        `constant-time compare: ${tries.length + 1} token checks (header and query), each exactly one timingSafeEqual over two 32-byte digests`,
      );
    } finally {
      await server.close();
    }
  });

  it('lives in a file only its user can read, and is tightened again if loosened', async () => {
    const file = path.join(home, 'config', 'token');
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    expect(fs.readFileSync(file, 'utf8').trim()).toBe(engine.token);
    const h = path.join(root, 'home-loose');
    const first = await startEngine({ home: h, args: ['--model', model] });
    await first.stop();
    const loose = path.join(h, 'config', 'token');
    fs.chmodSync(loose, 0o644);
    fs.chmodSync(path.dirname(loose), 0o755);
    const again = await startEngine({ home: h, args: ['--model', model] });
    try {
      expect(again.token).toBe(first.token);
      expect(fs.statSync(loose).mode & 0o777).toBe(0o600);
      expect(fs.statSync(path.dirname(loose)).mode & 0o777).toBe(0o700);
    } finally {
      await again.stop();
    }
    console.log('token file: 0600 in a 0700 folder; a loosened file (0644) is back to 0600 at the next start');
  });
});

describe('DNS rebinding', () => {
  it('refuses every Host that is not the loopback address and port, on API routes and on the web UI', async () => {
    const p = engine.port;
    const hosts = [
      `evil.example:${p}`,
      `127.0.0.1.nip.io:${p}`,
      `localhost.:${p}`,
      `127.0.0.1:${p + 1}`,
      `127.0.0.2:${p}`,
      `0.0.0.0:${p}`,
      `[::ffff:127.0.0.1]:${p}`,
      '127.0.0.1',
      `127.0.0.1:${p}@evil.example`,
      `127.0.0.1:${p}.evil.example`,
      `2130706433:${p}`,
      `0x7f000001:${p}`,
      '',
    ];
    const failures: string[] = [];
    let n = 0;
    for (const host of hosts) {
      for (const target of ['/v1/health', '/v1/jobs', '/', '/index.html']) {
        n++;
        // The right token too: a rebinding page cannot know it, but the Host check must not depend on that.
        const r = await engine.call('GET', target, { host });
        if (r.status !== 403) failures.push(`Host ${JSON.stringify(host)} ${target}: ${r.status}`);
        else if (!/DNS rebinding/.test(r.json?.detail ?? ''))
          failures.push(`Host ${JSON.stringify(host)} ${target}: 403 without the reason`);
      }
    }
    const post = await engine.call('POST', '/v1/jobs', { host: `evil.example:${p}`, json: smallJob(fx.clip, out) });
    if (post.status !== 403) failures.push(`POST with a foreign Host: ${post.status}`);
    for (const host of [`127.0.0.1:${p}`, `localhost:${p}`, `LOCALHOST:${p}`, `[::1]:${p}`]) {
      const r = await engine.call('GET', '/v1/health', { host });
      if (r.status !== 200) failures.push(`own Host ${host}: ${r.status}`);
    }
    console.log(
      `Host check: ${hosts.length} foreign Host values × 4 targets (${n} requests) and a POST, all 403; 4 loopback spellings accepted`,
    );
    expect(failures).toEqual([]);
  });
});

describe('foreign pages in Chromium', () => {
  let browser: Browser;

  beforeAll(async () => {
    ({ browser } = await launchChromium([
      // rebind.test resolves to 127.0.0.1, as a rebinding attacker's DNS would answer after the page loaded.
      '--host-resolver-rules=MAP rebind.test 127.0.0.1',
      // Chromium's own guard against public pages calling local addresses (Private/Local Network Access) is off:
      // other browsers have none, and the engine must hold without it.
      '--disable-features=LocalNetworkAccessChecks,PrivateNetworkAccessRespectPreflightResults,PrivateNetworkAccessSendPreflights,BlockInsecurePrivateNetworkRequests',
    ]));
  });

  afterAll(async () => {
    await browser?.close();
  });

  const jobCount = async () => (await engine.jobs()).length;
  const request = () => JSON.stringify({ ...smallJob(fx.clip, out), prompt: 'planted by a web page' });
  const attempts = (base: string) => `
    async function attempt(name, run) {
      try { const res = await run(); let text = null; try { text = await res.text(); } catch (e) {}
        return { name, read: true, type: res.type, status: res.status, text };
      } catch (e) { return { name, read: false, error: String(e) }; }
    }
    (async () => {
      const body = ${JSON.stringify(request())};
      const results = [
        await attempt('health', () => fetch('${base}/v1/health')),
        await attempt('jobs', () => fetch('${base}/v1/jobs')),
        await attempt('submit json', () => fetch('${base}/v1/jobs', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body })),
        await attempt('submit text/plain', () => fetch('${base}/v1/jobs', { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body })),
        await attempt('web UI', () => fetch('${base}/')),
      ];
      document.getElementById('out').textContent = JSON.stringify(results);
    })();`;

  type Attempt = { name: string; read: boolean; type?: string; status?: number; text?: string | null; error?: string };
  async function run(url: string, html: string, intercept: boolean): Promise<Attempt[]> {
    const page = await browser.newPage();
    try {
      // Only the page itself comes from the attacker; everything it fetches goes to whatever the name resolves to now.
      if (intercept)
        await page.route(url, (route) =>
          route.request().isNavigationRequest()
            ? route.fulfill({ status: 200, contentType: 'text/html', body: html })
            : route.continue(),
        );
      await page.goto(url);
      await page.waitForFunction(
        'document.getElementById("out") && document.getElementById("out").textContent !== "running"',
        undefined,
        { timeout: 20_000 },
      );
      return JSON.parse((await page.textContent('#out'))!) as Attempt[];
    } finally {
      await page.close();
    }
  }

  it('a rebound host name reaches the engine same-origin and gets only 403s with nothing in them', async () => {
    const before = await jobCount();
    const refusedBefore = (engine.logText().match(/refused Host "rebind\.test/g) ?? []).length;
    const origin = `http://rebind.test:${engine.port}`;
    // The attacker's page is served for rebind.test; its scripts then talk to "its own" origin, which is now the engine.
    const results = await run(
      `${origin}/`,
      `<!doctype html><pre id="out">running</pre><script>${attempts('')}</script>`,
      true,
    );
    expect(results.map((r) => r.name)).toEqual(['health', 'jobs', 'submit json', 'submit text/plain', 'web UI']);
    for (const r of results) {
      expect([r.name, r.read, r.status]).toEqual([r.name, true, 403]);
      expect(r.text).toMatch(/DNS rebinding/);
      expect(r.text).not.toMatch(/oracle|"jobs"|"id"/);
    }
    expect(await jobCount()).toBe(before);
    expect((engine.logText().match(/refused Host "rebind\.test/g) ?? []).length - refusedBefore).toBe(results.length);
    console.log(
      `rebinding in Chromium: ${results.length} same-origin requests from http://rebind.test:${engine.port}, all 403, no data, no job`,
    );
  });

  it('a page with Origin null (a data: URL) can neither read nor submit', async () => {
    const before = await jobCount();
    const html = `<!doctype html><pre id="out">running</pre><script>${attempts(engine.url)}</script>`;
    const results = await run(`data:text/html,${encodeURIComponent(html)}`, html, false);
    for (const r of results) {
      if (r.read) expect(r).toMatchObject({ type: 'opaque', status: 0, text: '' });
      else expect(r.error).toMatch(/TypeError/);
    }
    expect(await jobCount()).toBe(before);
    expect(engine.logText()).toMatch(/refused Origin "null" on POST \/v1\/jobs/);
    console.log(
      `Origin null in Chromium: ${results.length} attempts, none readable, no job; the engine logged the refused Origin "null"`,
    );
  });

  it('a cross-site form post (text/plain, no CORS at all) is refused by its Origin', async () => {
    const before = await jobCount();
    const evil = http.createServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      // A form submission is a navigation: no preflight and no CORS, the one way a page can send a body without asking.
      res.end(`<!doctype html><form id="f" method="POST" enctype="text/plain" action="${engine.url}/v1/jobs">
        <input name='${request().slice(0, -1)}, "x": "' value='"}'></form><script>document.getElementById('f').submit()</script>`);
    });
    await new Promise<void>((r) => evil.listen(0, '127.0.0.1', () => r()));
    const page = await browser.newPage();
    try {
      const answered = page.waitForResponse((r) => r.url() === `${engine.url}/v1/jobs`);
      await page.goto(`http://127.0.0.1:${(evil.address() as AddressInfo).port}/`);
      const res = await answered;
      expect(res.status()).toBe(403);
      expect(res.request().headers()['content-type']).toMatch(/text\/plain/);
    } finally {
      await page.close();
      await new Promise<void>((r) => evil.close(() => r()));
    }
    expect(await jobCount()).toBe(before);
    expect(engine.logText()).toMatch(/refused Origin "http:\/\/127\.0\.0\.1:\d+" on POST \/v1\/jobs/);
    console.log('form post in Chromium: text/plain navigation POST from another origin → 403, no job');
  });
});

// Last, so that it sees every response and log line of the suite above, Chromium's included.
describe('the token, after everything above', () => {
  it('never appears in a response or a log line, even when a request tries to make the engine echo it', async () => {
    const t = engine.token;
    // Echo bait: the token as a path (problem documents quote paths), in a wrong-token query, in a Host, in a field name.
    await engine.api('POST', '/v1/jobs', smallJob(path.join(fx.dir, t), out));
    await engine.api('POST', '/v1/jobs', { ...smallJob(fx.clip, out), [t]: 1 });
    await engine.api('GET', `/v1/media/probe?path=${encodeURIComponent(`/nowhere/${t}.mov`)}`);
    await engine.call('GET', `/v1/jobs?token=${t}`, { token: null });
    await engine.call('GET', `/v1/jobs/x/events?token=${t}x`, { token: null });
    await engine.call('GET', `/?token=${t}`, { token: null });
    await engine.call('GET', '/v1/health', { token: null, host: `${t}.example:${engine.port}` });
    await engine.api('GET', `/v1/jobs/${t}`);
    const { responses, logBytes } = engine.expectNoTokenLeak();
    console.log(
      `token leak check: ${responses} responses and ${logBytes} bytes of engine log collected across this suite, token in none (stdout carries it once, in the URL)`,
    );
  });
});
