// Suite 2: the engine killed with SIGKILL while a job decodes, computes and writes; its compute thread crashing; the
// output drive filling up; cancels at every stage and in storms. Media slowdowns come from RESHOOT_FAULT (media/faults.ts)
// so each kill and cancel lands in the stage it is meant for.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { InversionCache } from '../../engine/src/store/inversion-cache';
import { probeMedia } from '../../engine/src/media';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import { Engine, partialFiles, type Job } from './support/engine';
import { makeFixtures, smallJob, type Fixtures } from './support/fixtures';

jest.setTimeout(120_000);

let root: string;
let fx: Fixtures;
let model: string;
const mounts: string[] = [];

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'rel-faults-'));
  model = path.join(root, 'oracle');
  generateOracle(model);
  fx = await makeFixtures(path.join(root, 'media'));
});

afterAll(() => {
  for (const m of mounts.reverse()) execFileSync('umount', ['-l', m]);
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

const SLOW = 'slow-decode:700,slow-encode:700';
const start = (home: string, fault?: string) =>
  Engine.start({ home, args: ['--model', model], env: { RESHOOT_FAULT: fault } });

/** A job long enough to be caught computing (12 frames, 24 steps), short enough for CI. */
const longJob = (outDir: string, over: Record<string, unknown> = {}) =>
  smallJob(fx.clip, outDir, { source: { path: fx.clip, in: 0, out: 0.5 }, steps: 24, ...over });

async function submit(e: Engine, body: Record<string, unknown>): Promise<Job> {
  const r = await e.api('POST', '/v1/jobs', body);
  if (r.status !== 202) throw new Error(`submission refused: ${r.status} ${r.text}`);
  return r.json as Job;
}

/** The drive is mountable only as root (containers, this machine); elsewhere the simulated fault stands in. */
function tryMountTmpfs(dir: string, size: string): boolean {
  fs.mkdirSync(dir, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'ignore' });
    mounts.push(dir);
    return true;
  } catch {
    return false;
  }
}

/** Writes until the drive says ENOSPC. */
function fillUp(file: string): void {
  const fd = fs.openSync(file, 'w');
  const block = Buffer.alloc(4096, 1);
  try {
    for (;;) fs.writeSync(fd, block);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    fs.closeSync(fd);
  }
}

it('kill -9 while decoding, computing and writing: after each restart every job is accounted for, no partial file is left, the cache stays readable', async () => {
  const home = path.join(root, 'home-kill');
  const out = path.join(root, 'out-kill');
  fs.mkdirSync(out);
  const cacheDir = path.join(home, 'data', 'cache', 'inversions');
  const killedIn: string[] = [];

  // Engine 1: A runs (slowly decoding), B and C wait behind it.
  let e = await start(home, SLOW);
  const a = await submit(e, longJob(out));
  const b = await submit(e, smallJob(fx.clip, out));
  const c = await submit(e, smallJob(fx.clip, out, { prompt: 'a green car on a gray road' }));

  const killDuring = async (stages: string[]) => {
    const seen = await e.waitForStage(a.id, stages);
    const pid = e.proc.pid!;
    await e.kill9();
    killedIn.push(seen.progress.stage);
    expect(fs.existsSync(a.outputPath)).toBe(false);
    return pid;
  };
  const restartAndCheck = async (deadPid: number, fault: string | undefined, restarts: number) => {
    e = await start(home, fault);
    const jobs = await e.jobs();
    expect(jobs.map((j) => j.id).sort()).toEqual([a.id, b.id, c.id].sort());
    const ja = jobs.find((j) => j.id === a.id)!;
    expect(ja.restarts).toBe(restarts);
    expect(ja.warnings.join(' ')).toMatch(/restarted while this job was running/);
    // Whatever the dead engine was writing is gone; the result path never held a partial file.
    expect(partialFiles(out).filter((p) => p.includes(`.partial-${deadPid}-`))).toEqual([]);
    expect(fs.existsSync(a.outputPath)).toBe(false);
    for (const id of [b.id, c.id]) expect(jobs.find((j) => j.id === id)!.state).toBe('queued');
  };

  let pid = await killDuring(['decoding']);
  await restartAndCheck(pid, SLOW, 1);
  pid = await killDuring(['inverting', 'editing']);
  await restartAndCheck(pid, SLOW, 2);
  pid = await killDuring(['writing']);

  // A cache entry half-written when the engine died, and one damaged on disk.
  fs.mkdirSync(cacheDir, { recursive: true });
  fs.writeFileSync(path.join(cacheDir, `${'d'.repeat(40)}.traj.partial-${pid}`), Buffer.alloc(4096, 7));
  fs.writeFileSync(
    path.join(cacheDir, `${'e'.repeat(40)}.traj`),
    Buffer.concat([Buffer.from('RSHTRAJ1'), Buffer.alloc(64, 1)]),
  );

  e = await start(home);
  try {
    expect(partialFiles(cacheDir)).toEqual([]);
    const failed = await e.settle(a.id);
    expect(failed.state).toBe('failed');
    expect(failed.error?.detail).toMatch(
      /the engine stopped while this job was running, 3 times; it was not tried again\. Submit it again/,
    );
    const [jb, jc] = [await e.settle(b.id), await e.settle(c.id)];
    expect([jb.state, jc.state]).toEqual(['succeeded', 'succeeded']);
    for (const j of [jb, jc]) expect((await probeMedia(j.result!.path)).video.frameCount).toBe(3);
    expect(partialFiles(out)).toEqual([]);
    expect(partialFiles(path.join(home, 'data'))).toEqual([]);

    const cache = new InversionCache(cacheDir, 2 ** 30);
    const names = fs.readdirSync(cacheDir).filter((n) => n.endsWith('.traj'));
    const readable = names.filter((n) => cache.get(n.replace(/\.traj$/, '')) !== undefined);
    expect(readable.length).toBeGreaterThanOrEqual(1);
    expect(readable.length).toBe(names.length - 1);
    expect(fs.existsSync(path.join(cacheDir, `${'e'.repeat(40)}.traj`))).toBe(false);
    const after = await submit(e, smallJob(fx.clip, out));
    expect((await e.settle(after.id)).state).toBe('succeeded');
    console.log(
      `kill -9: killed in ${killedIn.join(', ')}; 3 jobs accounted for (1 re-queued twice then failed with its reason, 2 queued throughout then succeeded), ` +
        `0 partial files, cache ${readable.length} entries readable, 1 damaged entry dropped, 1 stale temp file swept at start`,
    );
    e.expectNoTokenLeak();
  } finally {
    await e.stop();
  }
});

it('a compute thread that dies mid-job fails that job only; the next jobs get a fresh thread', async () => {
  const out = path.join(root, 'out-crash');
  fs.mkdirSync(out);
  // The 20th progress event ends the thread: the long job gets there, the small ones (about 6 events) never do.
  const e = await start(path.join(root, 'home-crash'), 'worker-exit-at-progress:20');
  try {
    const doomed = await submit(e, longJob(out));
    const failed = await e.settle(doomed.id);
    expect(failed.state).toBe('failed');
    expect(failed.error?.detail).toMatch(/compute worker stopped.*submit the job again/i);
    expect(fs.existsSync(failed.outputPath)).toBe(false);
    // With nothing queued, no task has reloaded the model yet: the engine must still describe itself.
    const health = await e.api('GET', '/v1/health');
    expect(health.status).toBe(200);
    expect(health.json?.model).toBe('oracle');
    const next = [
      await submit(e, smallJob(fx.clip, out)),
      await submit(e, smallJob(fx.clip, out, { method: 'sdedit' })),
    ];
    for (const j of next) expect((await e.settle(j.id)).state).toBe('succeeded');
    expect(e.alive).toBe(true);
    expect(partialFiles(out)).toEqual([]);
    console.log(
      `worker crash: 1 job failed ("${failed.error!.detail.slice(0, 70)}…"), ${next.length} following jobs succeeded, engine up`,
    );
    e.expectNoTokenLeak();
  } finally {
    await e.stop();
  }
});

it('a full output drive fails the job cleanly, with a message that says what to do, and the engine carries on', async () => {
  const out = path.join(root, 'out-full');
  fs.mkdirSync(out);
  const covered: string[] = [];
  const expectDiskFull = (j: Job) => {
    expect(j.state).toBe('failed');
    expect(j.error?.detail).toMatch(/is full.*Free space on that drive or choose an output folder on another one/);
    expect(fs.existsSync(j.outputPath)).toBe(false);
  };

  // The real thing where a small tmpfs can be mounted: a drive with a few kB left.
  const full = path.join(root, 'full-drive');
  if (tryMountTmpfs(full, '256k')) {
    const e = await start(path.join(root, 'home-full'));
    try {
      fillUp(path.join(full, 'filler.bin'));
      const j = await e.settle(
        (await submit(e, smallJob(fx.clip, full, { source: { path: fx.clip, in: 0, out: 0.5 } }))).id,
      );
      expectDiskFull(j);
      expect(fs.readdirSync(full)).toEqual(['filler.bin']);
      expect((await e.settle((await submit(e, smallJob(fx.clip, out))).id)).state).toBe('succeeded');
      covered.push('tmpfs output drive');
      e.expectNoTokenLeak();
    } finally {
      await e.stop();
    }

    // The engine's own data drive full: submissions are refused with 507 and the engine stays up.
    const home = path.join(root, 'home-datafull');
    const jobsDir = path.join(home, 'data', 'jobs');
    if (tryMountTmpfs(jobsDir, '64k')) {
      const d = await start(home);
      try {
        fillUp(path.join(jobsDir, 'filler.bin'));
        const r = await d.api('POST', '/v1/jobs', smallJob(fx.clip, out));
        expect(r.status).toBe(507);
        expect(r.json?.detail).toMatch(/free space on that drive/);
        expect(await d.jobs()).toEqual([]);
        fs.rmSync(path.join(jobsDir, 'filler.bin'));
        expect((await d.settle((await submit(d, smallJob(fx.clip, out))).id)).state).toBe('succeeded');
        covered.push('tmpfs data drive (507)');
      } finally {
        await d.stop();
      }
    }
  }

  // Everywhere: the same ENOSPC from the kernel, by pointing ffmpeg at /dev/full.
  const e = await start(path.join(root, 'home-devfull'), 'encode-disk-full');
  try {
    const j = await e.settle((await submit(e, smallJob(fx.clip, out))).id);
    expectDiskFull(j);
    expect(partialFiles(out)).toEqual([]);
    expect(e.alive).toBe(true);
    covered.push('simulated ENOSPC (/dev/full)');
    e.expectNoTokenLeak();
  } finally {
    await e.stop();
  }
  console.log(
    `disk full: ${covered.join(', ')}: job failed with "free space or choose another drive", no file left, engine up`,
  );
});

it('cancels while decoding, computing and encoding, and a storm of cancels, leave no files and no 5xx', async () => {
  const out = path.join(root, 'out-cancel');
  fs.mkdirSync(out);
  const e = await start(path.join(root, 'home-cancel'), SLOW);
  try {
    const stages: string[] = [];
    // Only the compute needs a long job; the media slowdowns hold the decoding and writing windows open.
    for (const want of [['decoding'], ['inverting', 'editing'], ['writing']]) {
      const j = await submit(e, want[0] === 'inverting' ? longJob(out) : smallJob(fx.clip, out));
      await e.waitForStage(j.id, want);
      const r = await e.api('POST', `/v1/jobs/${j.id}/cancel`);
      expect(r.status).toBe(200);
      const done = await e.settle(j.id);
      expect(done.state).toBe('canceled');
      expect(fs.existsSync(j.outputPath)).toBe(false);
      stages.push(want[0]);
    }

    // The storm: 24 jobs, each canceled three times at once, while the first of them runs.
    const jobs: Job[] = [];
    for (let i = 0; i < 24; i++) jobs.push(await submit(e, i === 0 ? longJob(out) : smallJob(fx.clip, out)));
    await e.waitForStage(jobs[0].id, ['decoding', 'encoding latents', 'inverting']);
    const replies = await Promise.all(
      jobs.flatMap((j) => [0, 1, 2].map(() => e.api('POST', `/v1/jobs/${j.id}/cancel`))),
    );
    const statuses = new Map<number, number>();
    for (const r of replies) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    expect([...statuses.keys()].every((s) => s === 200 || s === 409)).toBe(true);
    const ended = await Promise.all(jobs.map((j) => e.settle(j.id)));
    expect(ended.map((j) => j.state)).toEqual(jobs.map(() => 'canceled'));
    expect(jobs.filter((j) => fs.existsSync(j.outputPath))).toEqual([]);
    expect(partialFiles(out)).toEqual([]);
    expect(e.alive).toBe(true);
    const normal = await submit(e, smallJob(fx.clip, out));
    expect((await e.settle(normal.id)).state).toBe('succeeded');
    console.log(
      `cancel storm: canceled while ${stages.join(', ')}; ${jobs.length} jobs × 3 concurrent cancels → ${[...statuses].map(([s, n]) => `${n}×${s}`).join(', ')}; ` +
        `all canceled, 0 files left, a normal job after succeeded`,
    );
    e.expectNoTokenLeak();
  } finally {
    await e.stop();
  }
});
