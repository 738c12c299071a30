// Server responsiveness: a real `reshoot serve` child on loopback runs one job while this process asks GET /v1/health
// at a bounded rate and times each answer. Only answers given while the job was running count.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import type { JobRequestInput } from '../api/schemas';

export interface HealthOptions {
  /** dist/engine/src/cli/main.js */
  cli: string;
  modelDir: string;
  /** RESHOOT_HOME of the server: token, job store and cache live there. */
  home: string;
  request: JobRequestInput;
  threads?: number;
  /** Pause between health requests (each waits for the previous answer). */
  intervalMs?: number;
  maxSamples?: number;
  timeoutMs?: number;
}

export interface HealthResult {
  samples: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Answers slower than 50 ms. */
  over50: number;
  /** Requests that took longer than the 2 s client timeout or failed. */
  failures: number;
  jobSeconds: number;
  jobState: string;
}

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A `reshoot serve` child on an ephemeral loopback port, and how to talk to it. */
export interface ServeChild {
  base: string;
  headers: { Authorization: string };
  stop(): Promise<void>;
}

export async function startServeChild(o: {
  cli: string;
  modelDir: string;
  home: string;
  threads?: number;
}): Promise<ServeChild> {
  fs.mkdirSync(o.home, { recursive: true });
  const args = [
    o.cli,
    'serve',
    '--port',
    '0',
    '--model',
    o.modelDir,
    ...(o.threads ? ['--threads', String(o.threads)] : []),
  ];
  const child = spawn(process.execPath, args, {
    env: { ...process.env, RESHOOT_HOME: o.home },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null) child.kill('SIGTERM');
    await Promise.race([exited, sleep(15_000)]);
    if (child.exitCode === null) child.kill('SIGKILL');
  };
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`reshoot serve did not start within 60 s: ${stderr}`)), 60_000);
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        const line = out.split('\n').find((l) => l.startsWith('http://'));
        if (line) {
          clearTimeout(timer);
          resolve(line.trim());
        }
      });
      child.once('exit', (code) => reject(new Error(`reshoot serve exited (${code}) before it listened: ${stderr}`)));
    });
    const u = new URL(url);
    return {
      base: `${u.protocol}//${u.host}`,
      headers: { Authorization: `Bearer ${u.searchParams.get('token')!}` },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

export async function measureHealth(o: HealthOptions): Promise<HealthResult> {
  const serve = await startServeChild(o);
  const { base, headers } = serve;
  try {
    const submitted = await fetch(`${base}/v1/jobs`, {
      method: 'POST',
      headers: { ...headers, 'Content-Type': 'application/json' },
      body: JSON.stringify(o.request),
    });
    if (submitted.status !== 202)
      throw new Error(`job submission answered ${submitted.status}: ${await submitted.text()}`);
    const job = (await submitted.json()) as { id: string };

    let state = 'queued';
    let finished = false;
    const t0 = performance.now();
    const poller = (async () => {
      while (!finished) {
        const r = await fetch(`${base}/v1/jobs/${job.id}`, { headers, signal: AbortSignal.timeout(5000) }).catch(
          () => undefined,
        );
        if (r?.ok) state = ((await r.json()) as { state: string }).state;
        if (['succeeded', 'failed', 'canceled'].includes(state)) finished = true;
        else await sleep(200);
        if (performance.now() - t0 > (o.timeoutMs ?? 300_000)) finished = true;
      }
    })();
    const latencies: number[] = [];
    let failures = 0;
    while (!finished && latencies.length < (o.maxSamples ?? 5000)) {
      const start = performance.now();
      const ok = await fetch(`${base}/v1/health`, { headers, signal: AbortSignal.timeout(2000) })
        .then(async (r) => (await r.arrayBuffer(), r.ok))
        .catch(() => false);
      const ms = performance.now() - start;
      if (state === 'running') {
        if (ok) latencies.push(ms);
        else failures++;
      }
      await sleep(o.intervalMs ?? 20);
    }
    await poller;
    const sorted = [...latencies].sort((a, b) => a - b);
    const round = (v: number) => Math.round(v * 100) / 100;
    return {
      samples: sorted.length,
      p50Ms: round(percentile(sorted, 50)),
      p99Ms: round(percentile(sorted, 99)),
      maxMs: round(sorted[sorted.length - 1] ?? NaN),
      over50: sorted.filter((v) => v > 50).length,
      failures,
      jobSeconds: round((performance.now() - t0) / 1000),
      jobState: state,
    };
  } finally {
    await serve.stop();
  }
}
