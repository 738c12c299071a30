// The render farm's throughput and its own overhead (docs/BENCHMARKS.md, "Render farm"). Real redis-server, BullMQ,
// `reshoot serve --queue` and `reshoot worker` processes (one ONNX Runtime thread each) on the oracle model:
//   1. a batch of jobs on one node, then the same batch on two: jobs per minute and their ratio;
//   2. jobs one after another on an idle node: submit → a node starts it (the job's createdAt to BullMQ's processedOn),
//      and the node's finish → the result visible in the engine (BullMQ's finishedOn to the job's finishedAt).
//   npm run build && node dist/scripts/bench-farm.js [JOBS] [SEQUENTIAL]      (default: 8 12)
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Queue } from 'bullmq';
import type { Job } from '../engine/src/api/schemas';
import { PREFIX, queueOf } from '../engine/src/farm/protocol';
import { DEFAULT_MODEL } from '../engine/src/models/default-model';
import { makeTestClip } from '../engine/src/media';
import { spawnTracked, stopChildren } from '../test/support/children';
import { startRedis } from '../test/support/redis';

// Run from dist/scripts: the CLI is dist/engine/src/cli/main.js.
const CLI = path.resolve(__dirname, '../engine/src/cli/main.js');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-farm-'));
let engine: { proc: ChildProcess; origin: string; token: string };
let clip: string;

async function api(method: string, route: string, body?: unknown): Promise<unknown> {
  const res = await fetch(`${engine.origin}${route}`, {
    method,
    headers: { authorization: `Bearer ${engine.token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (res.status >= 400) throw new Error(`${method} ${route}: ${res.status} ${await res.text()}`);
  return res.json();
}

/** A `reshoot` child with a home of its own, once its stdout matches `ready`. */
async function reshoot(args: string[], ready: RegExp): Promise<{ proc: ChildProcess; match: RegExpExecArray }> {
  const proc = spawnTracked(process.execPath, [CLI, ...args], {
    env: { ...process.env, RESHOOT_HOME: fs.mkdtempSync(path.join(root, 'home-')) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const match = await new Promise<RegExpExecArray>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = ready.exec(out);
      if (m) resolve(m);
    });
    proc.once('exit', (code) => reject(new Error(`reshoot ${args[0]} exited with ${code}`)));
  });
  return { proc, match };
}

async function node(url: string): Promise<ChildProcess> {
  return (await reshoot(['worker', '--queue', url, '--threads', '1'], /worker \S+ ready/)).proc;
}

const stop = (p: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (p.exitCode !== null) return resolve();
    p.once('exit', () => resolve());
    p.kill('SIGTERM');
  });

let seq = 0;
async function submit(): Promise<string> {
  const n = seq++;
  const job = (await api('POST', '/v1/jobs', {
    source: { path: clip, in: 0, out: 1 },
    prompt: 'a blue car on a gray road',
    sourcePrompt: 'a red car on a gray road',
    steps: 10,
    seed: n,
    output: { path: path.join(root, 'out', `job-${n}.mp4`) },
  })) as Job;
  return job.id;
}

async function done(id: string): Promise<Job> {
  for (;;) {
    const j = (await api('GET', `/v1/jobs/${id}`)) as Job;
    if (j.state === 'succeeded') return j;
    if (j.state !== 'queued' && j.state !== 'running') throw new Error(`job ${id} ${j.state}: ${j.error?.detail}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function batch(jobs: number): Promise<number> {
  const t0 = performance.now();
  const ids: string[] = [];
  for (let i = 0; i < jobs; i++) ids.push(await submit());
  await Promise.all(ids.map(done));
  return (performance.now() - t0) / 1000;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  const jobs = Number(process.argv[2] ?? 8);
  const sequential = Number(process.argv[3] ?? 12);
  fs.mkdirSync(path.join(root, 'out'));
  clip = path.join(root, 'clip.mp4');
  await makeTestClip({
    file: clip,
    width: 128,
    height: 72,
    fps: { num: 24, den: 1 },
    frames: 48,
    content: 'moving-square',
  });
  let queue: Queue | undefined;
  // Everything it started stops on the way out, a failure included (redis-server would outlive a bare exit).
  try {
    const redis = await startRedis();
    const served = await reshoot(
      ['serve', '--port', '0', '--threads', '1', '--queue', redis.url],
      /(http:\/\/127\.0\.0\.1:\d+)\/\?token=([A-Za-z0-9_-]+)/,
    );
    engine = { proc: served.proc, origin: served.match[1], token: served.match[2] };
    queue = new Queue(queueOf(DEFAULT_MODEL), { connection: { host: '127.0.0.1', port: redis.port }, prefix: PREFIX });
    const first = await node(redis.url);
    await batch(1); // warm-up: both nodes' models are loaded before the clock starts
    const one = await batch(jobs);
    console.log(`1 node: ${jobs} jobs in ${one.toFixed(1)} s (load ${os.loadavg()[0].toFixed(1)})`);
    const second = await node(redis.url);
    await batch(2);
    const two = await batch(jobs);
    console.log(`2 nodes: ${jobs} jobs in ${two.toFixed(1)} s (load ${os.loadavg()[0].toFixed(1)})`);
    console.log(`throughput ratio (2 nodes / 1 node): ${(one / two).toFixed(2)}`);
    await stop(second);

    const toStart: number[] = [];
    const toVisible: number[] = [];
    for (let i = 0; i < sequential; i++) {
      const id = await submit();
      const j = await done(id);
      const b = await queue.getJob(id);
      if (!b?.processedOn || !b.finishedOn) throw new Error(`job ${id} has no BullMQ times`);
      toStart.push(b.processedOn - Date.parse(j.createdAt));
      toVisible.push(Date.parse(j.finishedAt!) - b.finishedOn);
    }
    console.log(
      `queue overhead over ${sequential} jobs on an idle node: submit → start median ${median(toStart)} ms ` +
        `(max ${Math.max(...toStart)}), finish → result visible median ${median(toVisible)} ms (max ${Math.max(...toVisible)})`,
    );
    await stop(first);
  } finally {
    await queue?.close();
    await stopChildren();
    fs.rmSync(root, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
