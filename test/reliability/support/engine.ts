// A real `reshoot serve` child process for the reliability suites: started with its own RESHOOT_HOME, spoken to over
// node:http (fetch cannot set Host), killed with SIGKILL when a suite wants a crash. Every response body and header
// and every line the engine prints are kept, so each suite can check that the token never leaked.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { track } from '../../support/children';

export const CLI = path.resolve(__dirname, '../../../dist/engine/src/cli/main.js');

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  /** The body parsed as JSON; undefined when it was not JSON. */
  json: ApiJson | undefined;
  ms: number;
}

/**
 * The fields of the engine's JSON answers that the suites read, loosely: a job's, the job list's, a problem
 * document's, the health report's. Each is there only in the answers that carry it; where the whole shape matters,
 * a suite parses `json` with the api/ schemas instead.
 */
export interface ApiJson {
  id?: string;
  state?: string;
  jobs?: Job[];
  title?: string;
  detail?: string;
  model?: string;
  ffmpeg?: { ok: boolean; detail?: string };
}

/** The id of the job a 202 answer accepted; a readable failure when the answer has none. */
export function jobId(r: Reply): string {
  const id = r.json?.id;
  if (typeof id !== 'string') throw new Error(`expected a job in the answer, got ${r.status}: ${r.text.slice(0, 300)}`);
  return id;
}

export interface CallOptions {
  /** Bearer token; null sends none. Default: the engine's. */
  token?: string | null;
  headers?: Record<string, string>;
  /** Raw body, sent as is (set content-type yourself). */
  body?: string | Buffer;
  /** JSON body with Content-Type application/json. */
  json?: unknown;
  /** Host header; default 127.0.0.1:PORT. */
  host?: string;
  timeoutMs?: number;
}

export interface StartOptions {
  home: string;
  env?: Record<string, string | undefined>;
  args?: string[];
  cwd?: string;
}

export function assertBuilt(): void {
  if (!fs.existsSync(CLI))
    throw new Error(`${CLI} is missing: run npm run build (npm test does) before the reliability suites`);
}

/** Everything a response carried, for the leak check. */
const seen: string[] = [];

export class Engine {
  readonly stdout: string[] = [];
  readonly stderr: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  url = '';
  port = 0;
  token = '';
  requests = 0;

  private constructor(readonly proc: ChildProcess) {
    this.exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  }

  static start(o: StartOptions): Promise<Engine> {
    assertBuilt();
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries({ ...process.env, RESHOOT_HOME: o.home, ...o.env }))
      if (v !== undefined) env[k] = v;
    // Tracked from the spawn: a child that never prints its URL is still stopped when the suite ends.
    const proc = track(
      spawn(process.execPath, [CLI, 'serve', '--port', '0', '--threads', '1', ...(o.args ?? [])], {
        env,
        cwd: o.cwd,
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    const e = new Engine(proc);
    return new Promise((resolve, reject) => {
      let out = '';
      proc.stderr.on('data', (d: Buffer) => e.stderr.push(d.toString()));
      proc.stdout.on('data', (d: Buffer) => {
        const s = d.toString();
        e.stdout.push(s);
        out += s;
        const m = /http:\/\/127\.0\.0\.1:(\d+)\/\?token=([A-Za-z0-9_-]+)/.exec(out);
        if (m && !e.url) {
          e.port = Number(m[1]);
          e.url = `http://127.0.0.1:${e.port}`;
          e.token = m[2];
          resolve(e);
        }
      });
      void e.exited.then(({ code, signal }) =>
        reject(new Error(`engine exited (${code ?? signal}) before it listened: ${e.stderr.join('')}`)),
      );
    });
  }

  get alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  call(method: string, urlPath: string, o: CallOptions = {}): Promise<Reply> {
    return httpCall(this.port, method, urlPath, { ...o, token: o.token === undefined ? this.token : o.token }).then(
      (r) => {
        this.requests++;
        return r;
      },
    );
  }

  /** The API with the right token; JSON in, JSON out. */
  api(method: string, urlPath: string, json?: unknown): Promise<Reply> {
    return this.call(method, urlPath, json === undefined ? {} : { json });
  }

  async job(id: string): Promise<Job> {
    const r = await this.api('GET', `/v1/jobs/${id}`);
    if (r.status !== 200) throw new Error(`GET /v1/jobs/${id}: ${r.status} ${r.text}`);
    return r.json as Job;
  }

  /** GET /v1/jobs: every job the engine knows. */
  async jobs(): Promise<Job[]> {
    const r = await this.api('GET', '/v1/jobs');
    if (r.status !== 200 || !Array.isArray(r.json?.jobs))
      throw new Error(`GET /v1/jobs: ${r.status} ${r.text.slice(0, 300)}`);
    return r.json.jobs;
  }

  /** Polls until the job is over (SSE is exercised elsewhere; polling keeps failures easy to read). */
  async settle(id: string, timeoutMs = 60_000): Promise<Job> {
    return waitFor(
      async () => {
        const j = await this.job(id);
        return TERMINAL.has(j.state) ? j : undefined;
      },
      `job ${id} to end`,
      timeoutMs,
    );
  }

  async waitForStage(id: string, stages: string[], timeoutMs = 30_000): Promise<Job> {
    return waitFor(
      async () => {
        const j = await this.job(id);
        if (TERMINAL.has(j.state))
          throw new Error(
            `job ${id} ended (${j.state}) before reaching ${stages.join('/')}: ${JSON.stringify(j.error ?? {})}`,
          );
        return j.state === 'running' && stages.includes(j.progress.stage) ? j : undefined;
      },
      `job ${id} to reach ${stages.join('/')}`,
      timeoutMs,
      10,
    );
  }

  /** Resident memory of the engine process in bytes (Linux /proc; elsewhere ps). */
  rssBytes(): number {
    return rssOf(this.proc.pid!);
  }

  async kill9(): Promise<void> {
    this.proc.kill('SIGKILL');
    await this.exited;
  }

  async stop(): Promise<void> {
    if (!this.alive) return;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
  }

  /** Log lines, without the one stdout line that is meant to carry the token (the browser URL). */
  logText(): string {
    return this.stderr.join('');
  }

  /** The token may be printed once, in the URL on stdout; nowhere else, and never in any response. */
  expectNoTokenLeak(): { responses: number; logBytes: number } {
    const printed = this.stdout.join('').split(this.token).length - 1;
    if (printed !== 1) throw new Error(`the token was printed ${printed} times on stdout, expected once`);
    if (this.logText().includes(this.token)) throw new Error('the token appears in the engine log');
    const leaked = seen.find((s) => s.includes(this.token));
    if (leaked !== undefined) throw new Error(`the token appears in a response: ${leaked.slice(0, 300)}`);
    return { responses: seen.length, logBytes: this.logText().length };
  }
}

export interface Job {
  id: string;
  state: 'queued' | 'running' | 'succeeded' | 'failed' | 'canceled';
  outputPath: string;
  restarts: number;
  warnings: string[];
  progress: { stage: string; fraction: number; frames?: number };
  result?: { path: string; frames: number };
  error?: { title: string; detail: string };
}

export const TERMINAL = new Set(['succeeded', 'failed', 'canceled']);

export function httpCall(port: number, method: string, urlPath: string, o: CallOptions = {}): Promise<Reply> {
  const headers: Record<string, string> = { ...o.headers };
  if (o.token) headers.authorization ??= `Bearer ${o.token}`;
  let body = o.body;
  if (o.json !== undefined) {
    body = JSON.stringify(o.json);
    headers['content-type'] ??= 'application/json';
  }
  if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
  // An empty host means none at all (Node would otherwise fill in its own).
  const setHost = o.host !== '';
  if (setHost) headers.host = o.host ?? `127.0.0.1:${port}`;
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: urlPath,
        headers,
        setHost,
        agent: false,
        timeout: o.timeoutMs ?? 30_000,
      },
      (res) => {
        answered = true;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          seen.push(`${JSON.stringify(res.headers)}\n${text}`);
          let json: ApiJson | undefined;
          try {
            json = JSON.parse(text) as ApiJson;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json, ms: performance.now() - t0 });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath} timed out`)));
    // The server may answer (413) before reading a large body; the write then fails, which is fine.
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    if (body !== undefined) req.write(body);
    req.end();
  });
}

export async function waitFor<T>(
  fn: () => Promise<T | undefined>,
  what: string,
  timeoutMs = 30_000,
  everyMs = 40,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export function rssOf(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux
  }
  return (
    Number(
      execFileSync('ps', ['-o', 'rss=', '-p', String(pid)])
        .toString()
        .trim(),
    ) * 1024
  );
}

/** `reshoot serve` that is expected to refuse to start: its exit code, what it printed, how long it took. */
export function serveFails(
  o: StartOptions & { timeoutMs?: number },
): Promise<{ code: number | null; stderr: string; stdout: string; ms: number }> {
  assertBuilt();
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, RESHOOT_HOME: o.home, ...o.env }))
    if (v !== undefined) env[k] = v;
  const t0 = Date.now();
  const proc = track(
    spawn(process.execPath, [CLI, 'serve', '--port', '0', '--threads', '1', ...(o.args ?? [])], {
      env,
      cwd: o.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => {
    const timer = setTimeout(() => proc.kill('SIGKILL'), o.timeoutMs ?? 30_000);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, stdout, ms: Date.now() - t0 });
    });
  });
}

/** Files whose names mark an interrupted write (media encoder, job store, inversion cache), anywhere under dir. */
export function partialFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.includes('.partial-')) out.push(p);
    }
  };
  if (fs.existsSync(dir)) walk(dir);
  return out;
}
