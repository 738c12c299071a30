// Suite 3: a second process on loopback submits 200 jobs at once and polls, then keeps the engine busy for a soak
// (RESHOOT_SOAK_SECONDS, 10 s by default) while this process samples the engine's resident memory.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import { spawnTracked, stopChildren, track } from '../support/children';
import { Engine, waitFor } from './support/engine';
import { makeFixtures, smallJob, type Fixtures } from './support/fixtures';

const SOAK_SECONDS = Number(process.env.RESHOOT_SOAK_SECONDS ?? 10);
const BURST = 200;
const QUEUE_BOUND = 100; // JobManager's default maxQueued
jest.setTimeout(120_000 + SOAK_SECONDS * 1000);

const CLIENT = path.join(__dirname, 'support', 'load-client.mjs');
let root: string;
let fx: Fixtures;
let engine: Engine;
let out: string;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'rel-load-'));
  const model = path.join(root, 'oracle');
  generateOracle(model);
  out = path.join(root, 'out');
  fs.mkdirSync(out);
  // allSettled, not all: if the fixtures fail, the engine that did start must still reach afterAll.
  const [made, started] = await Promise.allSettled([
    makeFixtures(path.join(root, 'media')),
    Engine.start({ home: path.join(root, 'home'), args: ['--model', model] }).then((e) => {
      track(e.proc);
      return e;
    }),
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
    // The engine and any load client a failed or timed-out test left running.
    await stopChildren();
    if (root) fs.rmSync(root, { recursive: true, force: true });
  }
});

/** Latency figures in ms, as load-client.mjs reports them. */
interface Latency {
  n: number;
  p50: number;
  p99: number;
  max: number;
}

/** The summary line load-client.mjs prints for `burst`. */
interface BurstSummary {
  burstMs: number;
  statusCounts: Record<string, number>;
  accepted: string[];
  refusedDetails: string[];
  pollsOk: number;
  submitLatency: Latency;
  /** Of the 429 answers alone. */
  refusedLatency: Latency;
  health: Latency;
  maxQueuedSeen: number;
  listIds: string[];
}

/** The summary line load-client.mjs prints for `soak`. */
interface SoakSummary {
  ids: string[];
  requests: number;
  events: number;
  errors: string[];
  health: Latency;
}

function client(mode: 'burst', options: Record<string, unknown>, timeoutMs: number): Promise<BurstSummary>;
function client(mode: 'soak', options: Record<string, unknown>, timeoutMs: number): Promise<SoakSummary>;
function client(
  mode: 'burst' | 'soak',
  options: Record<string, unknown>,
  timeoutMs: number,
): Promise<BurstSummary | SoakSummary> {
  const proc = spawnTracked(
    process.execPath,
    [CLIENT, mode, JSON.stringify({ url: engine.url, token: engine.token, job: smallJob(fx.clip, out), ...options })],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`load client (${mode}) exited ${code}: ${stderr}`));
      // The client is ours and prints exactly one of the two summaries; the assertions below check its contents.
      resolve(JSON.parse(stdout.trim().split('\n').pop()!) as BurstSummary | SoakSummary);
    });
  });
}

const mb = (b: number) => `${(b / 2 ** 20).toFixed(0)} MB`;

it(`${BURST} concurrent submissions from another process: each accepted or refused with 429 at the bound, none lost or duplicated`, async () => {
  const r = await client('burst', { count: BURST }, 90_000);
  const accepted = r.accepted;
  const counts = r.statusCounts;
  expect(Object.keys(counts).sort()).toEqual(['202', '429']);
  expect(counts['202'] + counts['429']).toBe(BURST);
  expect(new Set(accepted).size).toBe(accepted.length);
  expect(r.refusedDetails).toEqual(['Queue full']);
  // At most the bound waits at any moment (the running job and any that finished meanwhile come on top).
  expect(r.maxQueuedSeen).toBeLessThanOrEqual(QUEUE_BOUND);
  expect(accepted.length).toBeGreaterThanOrEqual(QUEUE_BOUND);
  expect(accepted.length).toBeLessThan(BURST);
  expect(r.pollsOk).toBe(accepted.length);
  expect([...r.listIds].sort()).toEqual([...accepted].sort());

  // Nothing accepted goes missing: cancel what still waits, and every job ends (canceled or edited).
  const cancels = await Promise.all(accepted.map((id) => engine.api('POST', `/v1/jobs/${id}/cancel`)));
  expect(cancels.every((c) => c.status === 200 || c.status === 409)).toBe(true);
  const finals = await waitFor(
    async () => {
      const jobs = await engine.jobs();
      return jobs.every((j) => ['succeeded', 'canceled'].includes(j.state)) ? jobs : undefined;
    },
    'every burst job to end',
    60_000,
  );
  expect(finals.map((j) => j.id).sort()).toEqual([...accepted].sort());
  const edited = finals.filter((j) => j.state === 'succeeded').length;
  console.log(
    `load: ${BURST} concurrent submissions in ${(r.burstMs / 1000).toFixed(1)} s → ${counts['202']} accepted (202), ${counts['429']} refused (429), ` +
      `0 lost, 0 duplicated, ${r.pollsOk} status polls answered; at most ${r.maxQueuedSeen} queued (bound ${QUEUE_BOUND}); ` +
      `${edited} edited, ${finals.length - edited} canceled afterwards; submit p50 ${r.submitLatency.p50.toFixed(0)} ms p99 ${r.submitLatency.p99.toFixed(0)} ms, ` +
      `429 p50 ${r.refusedLatency.p50.toFixed(0)} ms p99 ${r.refusedLatency.p99.toFixed(0)} ms max ${r.refusedLatency.max.toFixed(0)} ms; ` +
      `health during the burst: ${r.health.n} calls, p50 ${r.health.p50.toFixed(1)} ms, p99 ${r.health.p99.toFixed(1)} ms, max ${r.health.max.toFixed(1)} ms`,
  );
  // Health kept answering through the burst, every time with 200 (a non-200 health answer would show in statusCounts
  // above as "health NNN"). How fast it answered is reported above and is a benchmark figure
  // (docs/BENCHMARKS.md), not bounded here: on a busy shared machine wall-clock time says nothing about the engine.
  expect(r.health.n).toBeGreaterThan(0);
  expect(engine.alive).toBe(true);
});

it(`soak for ${SOAK_SECONDS} s: jobs, polls, event streams, probes and stills keep succeeding; memory is sampled`, async () => {
  const samples: number[] = [];
  const sampler = setInterval(() => samples.push(engine.rssBytes()), 250);
  samples.push(engine.rssBytes());
  let r: SoakSummary;
  try {
    r = await client('soak', { seconds: SOAK_SECONDS }, SOAK_SECONDS * 1000 + 60_000);
  } finally {
    clearInterval(sampler);
  }
  samples.push(engine.rssBytes());
  const first = samples[0];
  const last = samples[samples.length - 1];
  const peak = Math.max(...samples);
  // Growth over the second half: a steady state should hold flat, a leak keeps climbing.
  const half = samples.slice(Math.floor(samples.length / 2));
  const secondHalfGrowth = half[half.length - 1] - half[0];
  console.log(
    `soak: ${SOAK_SECONDS} s, ${r.ids.length} jobs edited, ${r.requests} requests, ${r.events} SSE events, ${r.errors.length} errors; ` +
      `health p50 ${r.health.p50.toFixed(1)} ms p99 ${r.health.p99.toFixed(1)} ms; engine RSS ${samples.length} samples: start ${mb(first)}, peak ${mb(peak)}, end ${mb(last)}, ` +
      `second-half growth ${mb(secondHalfGrowth)}`,
  );
  expect(r.errors).toEqual([]);
  expect(r.ids.length).toBeGreaterThan(0);
  expect(engine.alive).toBe(true);
  expect(peak).toBeLessThan(first + 512 * 2 ** 20);
  expect(secondHalfGrowth).toBeLessThan(128 * 2 ** 20);
  engine.expectNoTokenLeak();
});
