// Server responsiveness under a burst of submissions: a second process (burst-client.ts) sends `count` job requests
// at once, as a script or render manager would, while this process, standing for a panel, asks GET /v1/health every
// 10 ms, each request sent on time whatever the previous answer (so a stalled engine shows as latency, not as fewer
// samples). Two processes, because one client doing both measures its own event loop as much as the engine's.
import { spawn } from 'node:child_process';
import type { JobRequestInput } from '../api/schemas';
import { percentile, sleep, startServeChild } from './health';
import type { BurstClientSpec } from './burst-client';

export interface BurstOptions {
  /** dist/engine/src/cli/main.js */
  cli: string;
  /** dist/engine/src/bench/burst-client.js */
  client: string;
  modelDir: string;
  home: string;
  job: JobRequestInput;
  outputPrefix: string;
  count: number;
  threads?: number;
}

export interface Latency {
  n: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface BurstResult {
  count: number;
  /** Answers by HTTP status (0: no answer). */
  statuses: Record<string, number>;
  burstMs: number;
  submit: Latency;
  /** The 429 answers alone: a refusal at the queue bound must not wait behind accepted submissions' media work. */
  refused: Latency;
  health: Latency & { failures: number };
}

function latency(xs: number[]): Latency {
  const s = [...xs].sort((a, b) => a - b);
  const round = (v: number) => Math.round(v * 10) / 10;
  return {
    n: s.length,
    p50Ms: round(percentile(s, 50)),
    p99Ms: round(percentile(s, 99)),
    maxMs: round(s[s.length - 1] ?? NaN),
  };
}

export async function measureBurst(o: BurstOptions): Promise<BurstResult> {
  const serve = await startServeChild(o);
  try {
    const spec: BurstClientSpec = {
      base: serve.base,
      token: serve.headers.Authorization.replace(/^Bearer /, ''),
      count: o.count,
      job: o.job,
      outputPrefix: o.outputPrefix,
    };
    const client = spawn(process.execPath, [o.client, JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    client.stdout.on('data', (b: Buffer) => (out += b.toString()));
    client.stderr.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-2000)));
    let done = false;
    const t0 = performance.now();
    const finished = new Promise<number | null>((resolve) =>
      client.once('exit', (code) => {
        done = true;
        resolve(code);
      }),
    );
    const health: number[] = [];
    let failures = 0;
    const inFlight: Promise<void>[] = [];
    while (!done) {
      const start = performance.now();
      inFlight.push(
        fetch(`${serve.base}/v1/health`, { headers: serve.headers, signal: AbortSignal.timeout(10_000) })
          .then(async (r) => {
            await r.arrayBuffer();
            if (r.ok) health.push(performance.now() - start);
            else failures++;
          })
          .catch(() => void failures++),
      );
      await sleep(10);
    }
    const code = await finished;
    const burstMs = performance.now() - t0;
    await Promise.all(inFlight);
    if (code !== 0) throw new Error(`the burst client failed (${code}): ${err}`);
    const answers = JSON.parse(out.trim().split('\n').pop() ?? '[]') as { status: number; ms: number }[];
    const statuses: Record<string, number> = {};
    for (const a of answers) statuses[a.status] = (statuses[a.status] ?? 0) + 1;
    return {
      count: o.count,
      statuses,
      burstMs: Math.round(burstMs),
      submit: latency(answers.map((a) => a.ms)),
      refused: latency(answers.filter((a) => a.status === 429).map((a) => a.ms)),
      health: { ...latency(health), failures },
    };
  } finally {
    await serve.stop();
  }
}
