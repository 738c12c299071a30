// The render farm end to end, every part real: redis-server (append-only, with a password), BullMQ, `reshoot serve
// --queue` taking jobs over its HTTP API, and `reshoot worker` processes running them with the oracle model. What
// an editor would check: the results are the local engine's bit for bit, a render node killed mid-job costs nothing
// but time, a Redis restart loses no queued job, cancel reaches the node, shared-storage paths are mapped (or the job
// says why not), and the password shows up nowhere.
import { spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Redis } from 'ioredis';
import type { Health, Job, WorkerStatus } from '../../engine/src/api/schemas';
import { makeTestClip, probeMedia } from '../../engine/src/media';
import { CLI, spawnTracked, startServe, type Served } from '../support/children';
import { startRedis, type RedisServer } from '../support/redis';
import { startRelay } from '../support/tcp-relay';

const PASSWORD = 'farm-secret-7f3a9c';

let root: string;
let clip: string;
let redis: RedisServer;
let engine: Served;
let engineHome: string;
/** The local engine's results of `request(…, 100 + i)`, made by the first test: what every farm run must equal. */
let localDir: string;

interface Node {
  proc: ChildProcess;
  id: string;
  stderr: string[];
}

const logs: string[][] = [];

async function api(
  method: string,
  route: string,
  body?: unknown,
  on: Served = engine,
): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${on.origin}${route}`, {
    method,
    headers: { authorization: `Bearer ${on.token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as unknown) : undefined };
}

const workersNow = async () => ((await api('GET', '/v1/workers')).json as { workers: WorkerStatus[] }).workers;

async function waitFor<T>(fn: () => Promise<T | undefined>, what: string, timeoutMs = 120_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const job = async (id: string): Promise<Job> => (await api('GET', `/v1/jobs/${id}`)).json as Job;
const finished = (id: string, timeoutMs?: number) =>
  waitFor(
    async () => {
      const j = await job(id);
      return ['succeeded', 'failed', 'canceled'].includes(j.state) ? j : undefined;
    },
    `job ${id} to end`,
    timeoutMs,
  );

/** With the error, and what the engine and the nodes logged about the job, in the comparison: a failure says why. */
function expectSucceeded(j: Job): void {
  const said =
    j.state === 'succeeded' ? [] : logs.flatMap((l) => l.join('').split('\n')).filter((line) => line.includes(j.id));
  expect({ state: j.state, error: j.error, said }).toEqual({ state: 'succeeded', error: undefined, said: [] });
}

/** The first preview frame on the job's Server-Sent Events stream. */
async function firstPreview(id: string): Promise<Buffer> {
  const res = await fetch(`${engine.origin}/v1/jobs/${id}/events`, {
    headers: { authorization: `Bearer ${engine.token}` },
  });
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  let text = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the event stream ended without a preview: ${text.slice(-500)}`);
      text += Buffer.from(value).toString();
      const m = /event: preview\ndata: (.*)\n/.exec(text);
      if (m) return Buffer.from((JSON.parse(m[1]) as { png: string }).png, 'base64');
    }
  } finally {
    await reader.cancel();
  }
}

/** `reshoot worker` with a home of its own; resolves once it says it is ready. */
function startNode(args: string[] = [], o: { url?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Node> {
  const home = fs.mkdtempSync(path.join(root, 'node-'));
  return new Promise((resolve, reject) => {
    const queue = o.url ?? redis.url;
    const proc = spawnTracked(process.execPath, [CLI, 'worker', '--queue', queue, '--threads', '1', ...args], {
      env: {
        ...process.env,
        ...o.env,
        RESHOOT_HOME: home,
        REDIS_PASSWORD: PASSWORD,
        // A killed node's job is handed out again within ~6 s instead of BullMQ's 30 s. Not shorter: a node renews
        // its lock every half of it, and on a loaded 2-core machine a 2-s lock can run out under a live node, whose
        // job the stalled check then hands out again (the likely cause of one failed run here).
        RESHOOT_QUEUE_LOCK_MS: '5000',
        RESHOOT_QUEUE_STALLED_MS: '1000',
        RESHOOT_QUEUE_HEARTBEAT_MS: '500',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const stderr: string[] = [];
    logs.push(stderr);
    proc.stderr!.on('data', (d: Buffer) => stderr.push(d.toString()));
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /worker (\S+) ready/.exec(out);
      if (m) resolve({ proc, id: m[1], stderr });
    });
    proc.once('exit', (code) => reject(new Error(`worker exited with ${code}: ${stderr.join('')}`)));
  });
}

function stopNode(node: Node, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (node.proc.exitCode !== null || node.proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    node.proc.once('exit', () => resolve());
    node.proc.kill(signal);
  });
}

/** A short edit of the clip: a few seconds of oracle compute on one thread. */
function request(output: string, seed: number, extra: Record<string, unknown> = {}) {
  return {
    source: { path: clip, in: 0, out: 0.5 },
    prompt: 'a blue car on a gray road',
    sourcePrompt: 'a red car on a gray road',
    steps: 4,
    seed,
    output: { path: output },
    ...extra,
  };
}

/** A job long enough to act on while it runs (tens of seconds on one core). */
const longRequest = (output: string) =>
  request(output, 7, { source: { path: clip, in: 0, out: 1 }, steps: 30, guidance: 1 });

/** Tests that run a long job: a hang guard for a busy 2-core machine, not a speed requirement. */
const LONG_TEST_MS = 360_000;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'farm-'));
  clip = path.join(root, 'clip.mp4');
  await makeTestClip({
    file: clip,
    width: 128,
    height: 72,
    fps: { num: 24, den: 1 },
    frames: 48,
    content: 'moving-square',
  });
  redis = await startRedis({ password: PASSWORD });
  engineHome = path.join(root, 'engine');
  localDir = path.join(root, 'local-out');
  process.env.REDIS_PASSWORD = PASSWORD;
  engine = await startServe({ home: engineHome, args: ['--queue', redis.url] });
  logs.push(engine.stderr);
});

afterAll(() => {
  delete process.env.REDIS_PASSWORD;
  fs.rmSync(root, { recursive: true, force: true });
});

it('runs jobs submitted over HTTP on two render nodes, bit for bit as the local engine does', async () => {
  const nodes = await Promise.all([startNode(), startNode()]);
  try {
    const workers = await waitFor(async () => {
      const ws = await workersNow();
      return ws.length === 2 ? ws : undefined;
    }, 'two render nodes');
    expect(workers.map((w) => w.id).sort()).toEqual(nodes.map((n) => n.id).sort());
    const cpu = `${os.cpus()[0].model.trim()} (${os.cpus().length} threads)`;
    for (const w of workers)
      expect(w).toMatchObject({
        host: os.hostname(),
        provider: 'cpu',
        device: cpu,
        models: ['oracle'],
        concurrency: 1,
      });

    const outDir = path.join(root, 'farm-out');
    fs.mkdirSync(outDir);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await api('POST', '/v1/jobs', request(path.join(outDir, `edit-${i}.mp4`), 100 + i));
      expect(r.status).toBe(202);
      ids.push((r.json as Job).id);
    }
    // While they run, `reshoot workers` shows the nodes and what they run.
    const listed = spawnSync(process.execPath, [CLI, 'workers', '--queue', redis.url, '--json'], {
      encoding: 'utf8',
      env: { ...process.env, REDIS_PASSWORD: PASSWORD },
    });
    expect(listed.status).toBe(0);
    expect((JSON.parse(listed.stdout) as { workers: WorkerStatus[] }).workers.map((w) => w.id).sort()).toEqual(
      nodes.map((n) => n.id).sort(),
    );

    const done = await Promise.all(ids.map((id) => finished(id)));
    for (const j of done) expectSucceeded(j);
    // Both nodes took jobs, and each job says where it ran.
    expect(new Set(done.map((j) => j.worker?.id)).size).toBe(2);
    for (const j of done) expect(nodes.map((n) => n.id)).toContain(j.worker?.id);

    // The same requests on an engine that runs them itself.
    const local = await startServe({ home: path.join(root, 'local'), args: [] });
    try {
      fs.mkdirSync(localDir);
      for (let i = 0; i < 4; i++) {
        const r = await fetch(`${local.origin}/v1/jobs`, {
          method: 'POST',
          headers: { authorization: `Bearer ${local.token}`, 'content-type': 'application/json' },
          body: JSON.stringify(request(path.join(localDir, `edit-${i}.mp4`), 100 + i)),
        });
        expect(r.status).toBe(202);
        const id = ((await r.json()) as Job).id;
        await waitFor(async () => {
          const j = (await (
            await fetch(`${local.origin}/v1/jobs/${id}`, { headers: { authorization: `Bearer ${local.token}` } })
          ).json()) as Job;
          return j.state === 'succeeded' ? j : j.state === 'queued' || j.state === 'running' ? undefined : null;
        }, 'the local job');
        const farm = fs.readFileSync(path.join(outDir, `edit-${i}.mp4`));
        expect(farm.length).toBeGreaterThan(1000);
        expect(farm.equals(fs.readFileSync(path.join(localDir, `edit-${i}.mp4`)))).toBe(true);
      }
    } finally {
      local.proc.kill('SIGTERM');
    }
    // The result route serves the node's file.
    const file = await fetch(`${engine.origin}/v1/jobs/${ids[0]}/result`, {
      headers: { authorization: `Bearer ${engine.token}` },
    });
    expect(file.status).toBe(200);
    expect(Buffer.from(await file.arrayBuffer()).equals(fs.readFileSync(path.join(outDir, 'edit-0.mp4')))).toBe(true);
  } finally {
    await Promise.all(nodes.map((n) => stopNode(n)));
  }
});

it(
  'finishes a job on the other node when its node is killed mid-job, with one result and no partial file',
  async () => {
    const nodes = await Promise.all([startNode(), startNode()]);
    try {
      const outDir = path.join(root, 'kill-out');
      fs.mkdirSync(outDir);
      const output = path.join(outDir, 'long.mp4');
      const r = await api('POST', '/v1/jobs', longRequest(output));
      expect(r.status).toBe(202);
      const id = (r.json as Job).id;
      const running = await waitFor(async () => {
        const j = await job(id);
        return j.worker && j.progress.stage === 'inverting' ? j : undefined;
      }, 'the job to compute on a node');
      const victim = nodes.find((n) => n.id === running.worker!.id)!;
      const survivor = nodes.find((n) => n !== victim)!;
      await stopNode(victim, 'SIGKILL');
      expect(fs.existsSync(output)).toBe(false);

      const done = await finished(id, 240_000);
      expectSucceeded(done);
      expect(done.worker?.id).toBe(survivor.id);
      expect((await probeMedia(output)).video.frameCount).toBe(24);
      // One result where it was expected, and nothing else left beside it.
      expect(fs.readdirSync(outDir)).toEqual(['long.mp4']);
      // The node that died drops off the list once its heartbeat key expires.
      await waitFor(async () => {
        const ws = await workersNow();
        return ws.length === 1 && ws[0].id === survivor.id ? true : undefined;
      }, 'the killed node to drop off');
    } finally {
      await Promise.all(nodes.map((n) => stopNode(n)));
    }
  },
  LONG_TEST_MS,
);

it(
  'stops a job on a live node that lost Redis longer than its lock, and leaves it to the node that took it over',
  async () => {
    // The first node reaches Redis through a relay that the test cuts, as a network outage would.
    const relay = await startRelay(redis.port);
    const cutOff = await startNode([], { url: relay.url });
    let takeover: Node | undefined;
    try {
      const outDir = path.join(root, 'lock-out');
      fs.mkdirSync(outDir);
      const output = path.join(outDir, 'long.mp4');
      const id = ((await api('POST', '/v1/jobs', longRequest(output))).json as Job).id;
      await waitFor(async () => {
        const j = await job(id);
        return j.worker?.id === cutOff.id && j.progress.stage === 'inverting' ? true : undefined;
      }, 'the job to compute on the first node');
      relay.cut();
      takeover = await startNode();
      await waitFor(
        async () => (cutOff.stderr.join('').includes(`job ${id}: this node's lock on it ran out`) ? true : undefined),
        'the cut-off node to stop the job',
      );
      await waitFor(
        async () => (cutOff.stderr.join('').includes(`job ${id} stopped here, nothing written`) ? true : undefined),
        'the cut-off node to give the job up',
      );
      const done = await finished(id, 240_000);
      expectSucceeded(done);
      expect(done.worker?.id).toBe(takeover.id);
      // Back in reach, the first node has nothing to write over the result.
      relay.restore();
      expect(cutOff.stderr.join('')).not.toContain(`job ${id} done`);
      expect(fs.readdirSync(outDir)).toEqual(['long.mp4']);
      expect((await probeMedia(output)).video.frameCount).toBe(24);
    } finally {
      // A node cut off from Redis cannot finish its stop (SIGTERM waits for its job to end on the queue).
      relay.restore();
      await Promise.all([cutOff, ...(takeover ? [takeover] : [])].map((n) => stopNode(n)));
      await relay.close();
    }
  },
  LONG_TEST_MS,
);

it('takes a job again after a node died between writing its result and the queue recording it', async () => {
  const outDir = path.join(root, 'commit-out');
  fs.mkdirSync(outDir);
  const keys = new Redis({ host: '127.0.0.1', port: redis.port, password: PASSWORD });
  try {
    // Both jobs wait (no node yet); then each output path is made to look as a node that died would leave it.
    const rerun = path.join(outDir, 'rerun.mp4');
    const recorded = path.join(outDir, 'recorded.mp4');
    const rerunId = ((await api('POST', '/v1/jobs', request(rerun, 100))).json as Job).id;
    const recordedId = ((await api('POST', '/v1/jobs', request(recorded, 101))).json as Job).id;
    // Renamed into place, then died before recording the result: the file is the job's own, but unvouched for.
    fs.writeFileSync(rerun, 'what the dead try renamed into place');
    await keys.set(`reshoot:committed:${rerunId}`, '1');
    // Renamed and recorded, then died before the queue marked the job done.
    fs.writeFileSync(recorded, 'the finished result');
    await keys.set(`reshoot:committed:${recordedId}`, '1');
    await keys.set(
      `reshoot:result:${recordedId}`,
      JSON.stringify({
        path: recorded,
        frames: 12,
        fps: { num: 24, den: 1 },
        width: 128,
        height: 72,
        durationSec: 0.5,
        codec: 'h264',
        workingSize: { width: 128, height: 72 },
        unetEvaluations: 1,
        inversionCacheHit: false,
        seconds: 123.5,
      }),
    );

    const node = await startNode();
    try {
      const [a, b] = await Promise.all([finished(rerunId), finished(recordedId)]);
      // Run again: the file is what a full run writes, the local engine's bit for bit.
      expectSucceeded(a);
      expect(fs.readFileSync(rerun).equals(fs.readFileSync(path.join(localDir, 'edit-0.mp4')))).toBe(true);
      // Reported as recorded, and its file left as it was.
      expectSucceeded(b);
      expect(b.result?.seconds).toBe(123.5);
      expect(fs.readFileSync(recorded, 'utf8')).toBe('the finished result');
      expect(node.stderr.join('')).toContain(`job ${recordedId}: an earlier try wrote ${recorded} and recorded it`);
      expect(node.stderr.join('')).toContain(
        `job ${rerunId}: an earlier try wrote ${rerun} and died before recording it`,
      );
      expect(fs.readdirSync(outDir).sort()).toEqual(['recorded.mp4', 'rerun.mp4']);
    } finally {
      await stopNode(node);
    }
  } finally {
    keys.disconnect();
  }
});

it(
  'cancels a job on the node that runs it, and one that no node has taken yet',
  async () => {
    const outDir = path.join(root, 'cancel-out');
    fs.mkdirSync(outDir);
    // No node yet: the job waits in the queue, and cancel takes it off.
    const waiting = (await api('POST', '/v1/jobs', request(path.join(outDir, 'waiting.mp4'), 1))).json as Job;
    expect((await api('POST', `/v1/jobs/${waiting.id}/cancel`)).status).toBe(200);
    expect((await finished(waiting.id)).state).toBe('canceled');

    const node = await startNode();
    try {
      const output = path.join(outDir, 'running.mp4');
      const id = ((await api('POST', '/v1/jobs', longRequest(output))).json as Job).id;
      await waitFor(async () => ((await job(id)).progress.stage === 'inverting' ? true : undefined), 'computing');
      // The node's previews reach the panel's event stream as they do from a local engine.
      const png = await firstPreview(id);
      expect(png.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))).toBe(true);
      expect((await api('POST', `/v1/jobs/${id}/cancel`)).status).toBe(200);
      const done = await finished(id, 60_000);
      expect(done.state).toBe('canceled');
      expect(node.stderr.join('')).toContain(`job ${id} canceled`);
      // The node stopped the job and left no file; it is free for the next one, which is never the canceled one.
      expect(fs.readdirSync(outDir)).toEqual([]);
      const next = ((await api('POST', '/v1/jobs', request(path.join(outDir, 'next.mp4'), 2))).json as Job).id;
      expectSucceeded(await finished(next));
      expect(fs.readdirSync(outDir)).toEqual(['next.mp4']);
      expect((await job(waiting.id)).state).toBe('canceled');
    } finally {
      await stopNode(node);
    }
  },
  LONG_TEST_MS,
);

it('loses no queued job when Redis restarts or is down at submission, and says why a job waits', async () => {
  const outDir = path.join(root, 'restart-out');
  fs.mkdirSync(outDir);
  const first = ((await api('POST', '/v1/jobs', request(path.join(outDir, 'a.mp4'), 11))).json as Job).id;
  await redis.restart();
  const second = await waitFor(async () => {
    // The engine reconnects by itself; a submission during the reconnect is refused, not lost.
    const r = await api('POST', '/v1/jobs', request(path.join(outDir, 'b.mp4'), 12));
    return r.status === 202 ? (r.json as Job).id : undefined;
  }, 'a submission after the restart');
  await redis.restart();
  // Redis down: a job is still accepted, and says why it waits; health says so; cancel still works.
  await redis.stop();
  const waitingReason = async (id: string) =>
    waitFor(async () => (await job(id)).progress.waiting, `job ${id} to say why it waits`);
  const third = ((await api('POST', '/v1/jobs', request(path.join(outDir, 'c.mp4'), 13))).json as Job).id;
  expect(await waitingReason(third)).toContain(
    `waiting for the render farm's queue: Redis at ${redis.url} cannot be reached`,
  );
  expect((await job(third)).state).toBe('queued');
  const health = (await api('GET', '/v1/health')).json as Health;
  expect(health.queue).toMatchObject({ reachable: false, url: redis.url });
  const dropped = ((await api('POST', '/v1/jobs', request(path.join(outDir, 'd.mp4'), 14))).json as Job).id;
  await waitingReason(dropped);
  expect((await api('POST', `/v1/jobs/${dropped}/cancel`)).status).toBe(200);
  expect((await finished(dropped, 30_000)).state).toBe('canceled');
  await redis.restart();
  await waitFor(
    async () => (((await api('GET', '/v1/health')).json as Health).queue.reachable ? true : undefined),
    'the queue to be reachable again',
  );
  await waitFor(async () => ((await job(third)).progress.waiting === undefined ? true : undefined), 'the note to go');
  const node = await startNode();
  try {
    for (const id of [first, second, third]) expectSucceeded(await finished(id));
    expect(fs.readdirSync(outDir).sort()).toEqual(['a.mp4', 'b.mp4', 'c.mp4']);
    expect((await job(dropped)).state).toBe('canceled');
  } finally {
    await stopNode(node);
  }
});

it(
  'leaves a job its node cannot map to a node that can, and fails one that no node can map once each has refused',
  async () => {
    // The engine sees the shared folder at one path, the nodes at another (a link stands in for the mount).
    const shared = path.join(root, 'nas');
    const engineView = path.join(root, 'Volumes-Projects');
    fs.mkdirSync(shared);
    fs.mkdirSync(path.join(shared, 'gone'));
    fs.copyFileSync(clip, path.join(shared, 'shot.mp4'));
    fs.symlinkSync(shared, engineView);
    // One node maps the engine's path; the other maps another share only and is idle whenever the first is busy.
    const [mapping, refusing] = await Promise.all([
      startNode(['--map', `${engineView}=${shared}`]),
      startNode(['--map', `/Volumes/Projects=${shared}`]),
    ]);
    try {
      await waitFor(async () => ((await workersNow()).length === 2 ? true : undefined), 'two render nodes');
      const submit = async (output: string, seed: number) => {
        const r = await api('POST', '/v1/jobs', {
          ...request(output, seed),
          source: { path: path.join(engineView, 'shot.mp4'), in: 0, out: 0.5 },
        });
        expect(r.status).toBe(202);
        return (r.json as Job).id;
      };
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) ids.push(await submit(path.join(engineView, `shot-edit-${i}.mp4`), 100 + i));
      // Its output folder is there when the engine checks it, and gone when a node does: the job's own fault.
      const gone = await submit(path.join(engineView, 'gone', 'edit.mp4'), 9);
      fs.rmdirSync(path.join(shared, 'gone'));
      // From here on only the nodes' own path reaches the files.
      fs.unlinkSync(engineView);

      for (const [i, id] of ids.entries()) {
        const done = await finished(id);
        expectSucceeded(done);
        expect(done.worker?.id).toBe(mapping.id);
        // Reported as the engine names it; written where the node's path leads.
        expect(done.result?.path).toBe(path.join(engineView, `shot-edit-${i}.mp4`));
        expect(
          fs
            .readFileSync(path.join(shared, `shot-edit-${i}.mp4`))
            .equals(fs.readFileSync(path.join(localDir, `edit-${i}.mp4`))),
        ).toBe(true);
      }
      // The idle node took some first, and handed them on rather than fail them.
      const refused = ids.filter((id) => refusing.stderr.join('').includes(`job ${id}: render node ${refusing.id}`));
      expect(refused.length).toBeGreaterThan(0);

      // Not tried again: one try, on the node that could reach its paths.
      const failedGone = await finished(gone);
      expect(failedGone.state).toBe('failed');
      expect(failedGone.error?.detail).toContain(`${path.join(shared, 'gone')} does not exist`);
      expect(mapping.stderr.join('').split(`job ${gone} (attempt`)).toHaveLength(2);

      // Each live node refuses once, and the job fails with both reasons.
      const elsewhere = path.join(root, 'unmapped-out.mp4');
      const bad = ((await api('POST', '/v1/jobs', request(elsewhere, 22))).json as Job).id;
      const failed = await finished(bad);
      expect(failed.state).toBe('failed');
      for (const node of [mapping, refusing]) {
        expect(failed.error?.detail).toContain(
          `${node.id}: render node ${node.id} cannot reach the job's source ${clip}: no --map covers it`,
        );
        expect(node.stderr.join('').split(`job ${bad}: render node`)).toHaveLength(2);
      }
      expect(failed.error?.detail).toContain('/Volumes/Projects');
      expect(fs.existsSync(elsewhere)).toBe(false);
    } finally {
      await Promise.all([mapping, refusing].map((n) => stopNode(n)));
    }
  },
  LONG_TEST_MS,
);

it('writes a job without an output folder into --renders on shared storage, and refuses it without', async () => {
  const noOutput: Record<string, unknown> = request('', 100);
  delete noOutput.output;
  // The suite's engine has no --renders: a node cannot write into the engine's private renders folder.
  const refused = await api('POST', '/v1/jobs', noOutput);
  expect(refused.status).toBe(422);
  expect(refused.json).toMatchObject({ field: 'output.folder' });
  expect((refused.json as { detail: string }).detail).toContain(
    'Choose an output folder on shared storage that the render nodes reach, or start the engine with reshoot serve --queue … --renders DIR',
  );

  const shared = path.join(root, 'shared-renders');
  fs.mkdirSync(shared);
  const withRenders = await startServe({
    home: path.join(root, 'renders-engine'),
    args: ['--queue', redis.url, '--renders', shared],
  });
  logs.push(withRenders.stderr);
  const node = await startNode();
  try {
    const r = await api('POST', '/v1/jobs', noOutput, withRenders);
    expect(r.status).toBe(202);
    const id = (r.json as Job).id;
    const done = await waitFor(async () => {
      const j = (await api('GET', `/v1/jobs/${id}`, undefined, withRenders)).json as Job;
      return j.state === 'queued' || j.state === 'running' ? undefined : j;
    }, 'the job without an output folder');
    expectSucceeded(done);
    expect(path.dirname(done.result!.path)).toBe(shared);
    expect(fs.readdirSync(shared)).toEqual([path.basename(done.result!.path)]);
    const file = await fetch(`${withRenders.origin}/v1/jobs/${id}/result`, {
      headers: { authorization: `Bearer ${withRenders.token}` },
    });
    expect(file.status).toBe(200);
    expect(Buffer.from(await file.arrayBuffer()).equals(fs.readFileSync(path.join(localDir, 'edit-0.mp4')))).toBe(true);
  } finally {
    await stopNode(node);
    withRenders.proc.kill('SIGTERM');
  }
});

it(
  'attaches again after an engine restart to the jobs its render nodes run meanwhile',
  async () => {
    const node = await startNode();
    try {
      const outDir = path.join(root, 'engine-restart-out');
      fs.mkdirSync(outDir);
      const output = path.join(outDir, 'long.mp4');
      const id = ((await api('POST', '/v1/jobs', longRequest(output))).json as Job).id;
      await waitFor(async () => ((await job(id)).progress.stage === 'inverting' ? true : undefined), 'computing');
      engine.proc.kill('SIGKILL');
      await new Promise((r) => engine.proc.once('exit', r));
      // The node goes on without the engine; the partial file it writes is not the engine's to sweep.
      engine = await startServe({ home: engineHome, args: ['--queue', redis.url] });
      logs.push(engine.stderr);
      const done = await finished(id, 240_000);
      expectSucceeded(done);
      expect(done.restarts).toBe(0);
      expect(done.worker?.id).toBe(node.id);
      expect(fs.readdirSync(outDir)).toEqual(['long.mp4']);
      expect((await probeMedia(output)).video.frameCount).toBe(24);
    } finally {
      await stopNode(node);
    }
  },
  LONG_TEST_MS,
);

it(
  'routes each job to a node that has its model; a model a node cannot load goes to the nodes that have it',
  async () => {
    // Two more models, copies of the oracle under other names (the folder's name is the model's id): one that
    // loads, and one whose UNet is damaged.
    const oracle = path.join(engineHome, 'data', 'models', 'oracle');
    const good = path.join(root, 'good-models', 'studio-xl');
    const bad = path.join(root, 'bad-models', 'studio-xl');
    fs.cpSync(oracle, good, { recursive: true });
    fs.cpSync(oracle, bad, { recursive: true });
    fs.writeFileSync(path.join(bad, 'unet', 'model.onnx'), 'not an onnx graph');

    const outDir = path.join(root, 'models-out');
    fs.mkdirSync(outDir);
    const a = await startNode(['--model', 'oracle', '--model', bad]);
    const b = await startNode(['--model', good]);
    try {
      expect(a.stderr.join('')).toMatch(
        /cannot load model studio-xl \(.*bad-models.*\): .*; its jobs go to other render nodes/,
      );
      const workers = await waitFor(async () => {
        const ws = await workersNow();
        return ws.length === 2 ? ws : undefined;
      }, 'two render nodes');
      expect(Object.fromEntries(workers.map((w) => [w.id, w.models]))).toEqual({
        [a.id]: ['oracle'],
        [b.id]: ['studio-xl'],
      });

      // A model no node has is refused at once, saying which ones the nodes have.
      const none = await api('POST', '/v1/jobs', request(path.join(outDir, 'none.mp4'), 5, { model: 'sd15-base' }));
      expect(none.status).toBe(422);
      expect(JSON.stringify(none.json)).toContain(
        'no render node has model sd15-base now (they have oracle, studio-xl); start one with reshoot worker --model sd15-base',
      );
      expect(fs.existsSync(path.join(outDir, 'none.mp4'))).toBe(false);

      // Four jobs each way: every one lands on the node with its model, none on the other.
      const ids: { id: string; model: string }[] = [];
      for (let i = 0; i < 4; i++) {
        const xl = await api(
          'POST',
          '/v1/jobs',
          request(path.join(outDir, `xl-${i}.mp4`), 100 + i, { model: 'studio-xl' }),
        );
        expect(xl.status).toBe(202);
        ids.push({ id: (xl.json as Job).id, model: 'studio-xl' });
        const own = await api('POST', '/v1/jobs', request(path.join(outDir, `own-${i}.mp4`), 100 + i));
        expect(own.status).toBe(202);
        // The engine names its own model on the jobs it queues without one.
        expect((own.json as Job).request.model).toBe('oracle');
        ids.push({ id: (own.json as Job).id, model: 'oracle' });
      }
      for (const { id, model } of ids) {
        const done = await finished(id);
        expectSucceeded(done);
        expect(done.worker?.id).toBe(model === 'oracle' ? a.id : b.id);
      }
      // The copy has the oracle's weights: its results are the local engine's bit for bit.
      for (let i = 0; i < 4; i++) {
        const expected = fs.readFileSync(path.join(localDir, `edit-${i}.mp4`));
        expect(fs.readFileSync(path.join(outDir, `xl-${i}.mp4`)).equals(expected)).toBe(true);
        expect(fs.readFileSync(path.join(outDir, `own-${i}.mp4`)).equals(expected)).toBe(true);
      }
    } finally {
      await Promise.all([a, b].map((n) => stopNode(n)));
    }

    // An engine without a queue runs its own model only, and says so.
    const local = await startServe({ home: path.join(root, 'local-models'), args: [] });
    try {
      const r = await fetch(`${local.origin}/v1/jobs`, {
        method: 'POST',
        headers: { authorization: `Bearer ${local.token}`, 'content-type': 'application/json' },
        body: JSON.stringify(request(path.join(outDir, 'local.mp4'), 1, { model: 'studio-xl' })),
      });
      expect(r.status).toBe(422);
      const body = (await r.json()) as { detail: string; field?: string };
      expect(body.detail).toContain('this engine runs model oracle, not studio-xl; start it with --model studio-xl');
    } finally {
      local.proc.kill('SIGTERM');
    }
  },
  LONG_TEST_MS,
);

it(
  'runs two jobs at once on a node with --concurrency 2, each bit for bit as the local engine',
  async () => {
    const outDir = path.join(root, 'concurrency-out');
    fs.mkdirSync(outDir);
    // Both wait before the node starts, so it takes them together.
    const ids: string[] = [];
    for (let i = 0; i < 2; i++)
      ids.push(((await api('POST', '/v1/jobs', request(path.join(outDir, `edit-${i}.mp4`), 100 + i))).json as Job).id);
    const node = await startNode(['--concurrency', '2']);
    try {
      const seen = await waitFor(async () => {
        const w = (await workersNow()).find((x) => x.id === node.id);
        return w && w.currentJobs.length === 2 ? w : undefined;
      }, 'the node to run both jobs');
      expect(seen.concurrency).toBe(2);
      expect([...seen.currentJobs].sort()).toEqual([...ids].sort());
      const done = await Promise.all(ids.map((id) => finished(id)));
      for (const j of done) expectSucceeded(j);
      // They overlapped: each started before the other finished.
      expect(Date.parse(done[0].startedAt!)).toBeLessThan(Date.parse(done[1].finishedAt!));
      expect(Date.parse(done[1].startedAt!)).toBeLessThan(Date.parse(done[0].finishedAt!));
      for (let i = 0; i < 2; i++)
        expect(
          fs
            .readFileSync(path.join(outDir, `edit-${i}.mp4`))
            .equals(fs.readFileSync(path.join(localDir, `edit-${i}.mp4`))),
        ).toBe(true);
    } finally {
      await stopNode(node);
    }
  },
  LONG_TEST_MS,
);

it(
  'skips the inversion of a re-edit on another node when the nodes share an inversion cache (--cache)',
  async () => {
    const shared = path.join(root, 'shared-cache');
    const outDir = path.join(root, 'cache-out');
    fs.mkdirSync(outDir);
    const first = await startNode(['--cache', shared]);
    let inverted: Job;
    try {
      inverted = await finished(
        ((await api('POST', '/v1/jobs', request(path.join(outDir, 'first.mp4'), 31))).json as Job).id,
      );
    } finally {
      await stopNode(first);
    }
    expectSucceeded(inverted);
    expect(inverted.result?.inversionCacheHit).toBe(false);
    expect(fs.readdirSync(shared).filter((f) => f.endsWith('.traj'))).toHaveLength(1);

    // The same range with another prompt, on a node that never saw it: the shared entry is a hit there.
    // The node has its model at another path and names the source through a link: the entry is found by the names
    // the farm knows them by, not by this node's paths.
    const second = await startNode(['--cache', shared]);
    try {
      const reEdit = (extra: Record<string, unknown>, out: string) =>
        api(
          'POST',
          '/v1/jobs',
          request(path.join(outDir, out), 32, { prompt: 'a green car on a gray road', ...extra }),
        );
      const hit = await finished(((await reEdit({}, 'second.mp4')).json as Job).id);
      expectSucceeded(hit);
      expect(hit.worker?.id).toBe(second.id);
      expect(hit.result?.inversionCacheHit).toBe(true);
      expect(hit.result!.unetEvaluations).toBeLessThan(inverted.result!.unetEvaluations);
    } finally {
      await stopNode(second);
    }
    const alone = await startNode();
    try {
      const miss = await finished(
        (
          (
            await api(
              'POST',
              '/v1/jobs',
              request(path.join(outDir, 'third.mp4'), 33, { prompt: 'a green car on a gray road' }),
            )
          ).json as Job
        ).id,
      );
      expectSucceeded(miss);
      expect(miss.worker?.id).toBe(alone.id);
      expect(miss.result?.inversionCacheHit).toBe(false);
    } finally {
      await stopNode(alone);
    }
  },
  LONG_TEST_MS,
);

it(
  'works over TLS (rediss://) when the machines trust the certificate, and refuses one they do not',
  async () => {
    const tlsDir = path.join(__dirname, '..', 'fixtures', 'tls');
    const cert = path.join(tlsDir, 'redis-cert.pem');
    const secure = await startRedis({ password: PASSWORD, tls: { cert, key: path.join(tlsDir, 'redis-key.pem') } });
    try {
      expect(secure.url).toMatch(/^rediss:\/\/127\.0\.0\.1:\d+$/);
      const untrusted = spawnSync(process.execPath, [CLI, 'workers', '--queue', secure.url], {
        encoding: 'utf8',
        env: { ...process.env, REDIS_PASSWORD: PASSWORD },
        timeout: 60_000,
      });
      expect(untrusted.status).toBe(1);
      expect(untrusted.stderr).toMatch(/render queue at rediss:\/\/127\.0\.0\.1:\d+: .*self[- ]signed certificate/);

      // Trusted the way a studio trusts its own CA: NODE_EXTRA_CA_CERTS.
      process.env.NODE_EXTRA_CA_CERTS = cert;
      const tlsEngine = await startServe({ home: path.join(root, 'tls-engine'), args: ['--queue', secure.url] });
      logs.push(tlsEngine.stderr);
      const node = await startNode([], { url: secure.url, env: { NODE_EXTRA_CA_CERTS: cert } });
      try {
        const out = path.join(root, 'tls-out.mp4');
        const r = await fetch(`${tlsEngine.origin}/v1/jobs`, {
          method: 'POST',
          headers: { authorization: `Bearer ${tlsEngine.token}`, 'content-type': 'application/json' },
          body: JSON.stringify(request(out, 100)),
        });
        expect(r.status).toBe(202);
        const id = ((await r.json()) as Job).id;
        const done = await waitFor(async () => {
          const j = (await (
            await fetch(`${tlsEngine.origin}/v1/jobs/${id}`, {
              headers: { authorization: `Bearer ${tlsEngine.token}` },
            })
          ).json()) as Job;
          return j.state === 'queued' || j.state === 'running' ? undefined : j;
        }, 'the job over TLS');
        expectSucceeded(done);
        expect(done.worker?.id).toBe(node.id);
        expect(fs.readFileSync(out).equals(fs.readFileSync(path.join(localDir, 'edit-0.mp4')))).toBe(true);
      } finally {
        await stopNode(node);
        tlsEngine.proc.kill('SIGTERM');
      }
    } finally {
      delete process.env.NODE_EXTRA_CA_CERTS;
      await secure.stop();
    }
  },
  LONG_TEST_MS,
);

it('never shows the Redis password: not in logs, health, workers or errors', async () => {
  const health = await api('GET', '/v1/health');
  const workers = await api('GET', '/v1/workers');
  const missing = await api('GET', '/v1/jobs/nope');
  const jobs = await api('GET', '/v1/jobs');
  for (const body of [health, workers, missing, jobs]) expect(JSON.stringify(body.json)).not.toContain(PASSWORD);
  // A wrong password is refused with a sentence that names the queue, not the password tried.
  const wrong = spawnSync(process.execPath, [CLI, 'workers', '--queue', redis.url], {
    encoding: 'utf8',
    env: { ...process.env, REDIS_PASSWORD: 'not-the-password' },
    timeout: 60_000,
  });
  expect(wrong.status).toBe(1);
  expect(wrong.stderr).toContain(`cannot read the render queue at redis://127.0.0.1:${redis.port}: WRONGPASS`);
  expect(wrong.stderr + wrong.stdout).not.toContain('not-the-password');
  // An engine and a render node given the wrong password stop at start with the reason, and leak neither password.
  process.env.REDIS_PASSWORD = 'not-the-password';
  try {
    const refused = startServe({ home: path.join(root, 'wrong-pw'), args: ['--queue', redis.url] });
    await expect(refused).rejects.toThrow(/cannot use the render queue at redis:\/\/127\.0\.0\.1:\d+: WRONGPASS/);
    await expect(refused).rejects.not.toThrow(/not-the-password|farm-secret/);
    const node = spawnSync(process.execPath, [CLI, 'worker', '--queue', redis.url], {
      encoding: 'utf8',
      env: { ...process.env, RESHOOT_HOME: path.join(root, 'wrong-pw-node') },
      timeout: 60_000,
    });
    expect(node.status).toBe(1);
    expect(node.stderr).toMatch(/cannot use the render queue at redis:\/\/127\.0\.0\.1:\d+: WRONGPASS/);
    expect(node.stderr + node.stdout).not.toContain('not-the-password');
  } finally {
    process.env.REDIS_PASSWORD = PASSWORD;
  }
  for (const lines of logs) expect(lines.join('')).not.toContain(PASSWORD);
  expect(engine.stderr.join('')).toContain(`render queue at redis://127.0.0.1:${redis.port}`);
});
