// `reshoot serve` as a real process on loopback: the API with a token, health while a job computes, and a kill -9
// in the middle of a job followed by a restart.
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Job } from '../../engine/src/api/schemas';
import { makeTestClip, probeMedia } from '../../engine/src/media';
import { startServe, type ServeProcess } from '../support/cli';

let home: string;
let clip: string;

type Engine = ServeProcess;

const startEngine = () => startServe(['--threads', '1'], home);

async function api(
  e: Engine,
  method: string,
  route: string,
  body?: unknown,
): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${e.url}${route}`, {
    method,
    headers: { authorization: `Bearer ${e.token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as unknown) : undefined };
}

/** A response body read as a job: a type only, the assertions check the values. */
function asJob(json: unknown): Job {
  return json as Job;
}

async function waitFor<T>(fn: () => Promise<T | undefined>, what: string, timeoutMs = 60000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function stopped(proc: ChildProcess): Promise<void> {
  return proc.exitCode !== null || proc.signalCode !== null
    ? Promise.resolve()
    : new Promise((r) => proc.once('exit', () => r()));
}

beforeAll(async () => {
  home = fs.mkdtempSync(path.join(os.tmpdir(), 'engine-'));
  clip = path.join(home, 'clip.mp4');
  await makeTestClip({
    file: clip,
    width: 128,
    height: 72,
    fps: { num: 24, den: 1 },
    frames: 48,
    content: 'moving-square',
  });
});

afterAll(() => fs.rmSync(home, { recursive: true, force: true }));

it('serves the API with a token, answers health while a job computes, and survives kill -9 mid-job', async () => {
  let engine = await startEngine();
  try {
    expect((await fetch(`${engine.url}/v1/health`)).status).toBe(401);
    const health = await api(engine, 'GET', '/v1/health');
    expect(health.status).toBe(200);
    expect(health.json).toMatchObject({ ok: true, model: 'oracle', provider: 'cpu' });
    // The token file is the user's alone.
    expect(fs.statSync(path.join(home, 'config', 'token')).mode & 0o777).toBe(0o600);

    const output = path.join(home, 'long.mp4');
    const submit = await api(engine, 'POST', '/v1/jobs', {
      source: { path: clip, in: 0, out: 1 },
      prompt: 'a blue car on a gray road',
      sourcePrompt: 'a red car on a gray road',
      steps: 30,
      guidance: 1,
      output: { path: output },
    });
    expect(submit.status).toBe(202);
    const id = asJob(submit.json).id;

    // Health keeps answering quickly while the worker computes.
    await waitFor(
      async () =>
        asJob((await api(engine, 'GET', `/v1/jobs/${id}`)).json).progress.stage === 'inverting' ? true : undefined,
      'inverting',
    );
    const latencies: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      expect((await api(engine, 'GET', '/v1/health')).status).toBe(200);
      latencies.push(performance.now() - t0);
    }
    latencies.sort((a, b) => a - b);
    console.log(`health while computing: median ${latencies[10].toFixed(1)} ms, max ${latencies[19].toFixed(1)} ms`);
    expect(latencies[19]).toBeLessThan(500);

    engine.proc.kill('SIGKILL');
    await stopped(engine.proc);
    expect(fs.existsSync(output)).toBe(false);

    engine = await startEngine();
    const after = await api(engine, 'GET', `/v1/jobs/${id}`);
    expect(after.status).toBe(200);
    expect(['queued', 'running']).toContain(asJob(after.json).state);
    expect(asJob(after.json).restarts).toBe(1);
    // Left over partial files were cleaned up at start; the job completes on its own.
    const done = await waitFor(
      async () => {
        const j = asJob((await api(engine, 'GET', `/v1/jobs/${id}`)).json);
        return ['succeeded', 'failed', 'canceled'].includes(j.state) ? j : undefined;
      },
      'the re-queued job',
      120000,
    );
    expect(done.state).toBe('succeeded');
    expect(fs.readdirSync(home).filter((f) => f.includes('.partial-'))).toEqual([]);
    const info = await probeMedia(output);
    expect(info.video.frameCount).toBe(24);

    const file = await fetch(`${engine.url}/v1/jobs/${id}/result`, {
      headers: { authorization: `Bearer ${engine.token}` },
    });
    expect(file.status).toBe(200);
    expect(file.headers.get('content-type')).toMatch(/video\/mp4/);
    expect(Buffer.from(await file.arrayBuffer()).equals(fs.readFileSync(output))).toBe(true);

    // The token never appears in what the engine logged.
    expect(engine.stderr.join('')).not.toContain(engine.token);
  } finally {
    engine.proc.kill('SIGTERM');
    await stopped(engine.proc);
  }
});
