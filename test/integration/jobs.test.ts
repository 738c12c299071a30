// The job queue with the real compute worker, real ffmpeg and the oracle model.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { JobRequest, type Job, type JobEvent, type JobRequestInput } from '../../engine/src/api/schemas';
import { JobManager } from '../../engine/src/jobs/manager';
import { JobStore } from '../../engine/src/jobs/store';
import { ProblemError } from '../../engine/src/jobs/service';
import { makeTestClip, probeMedia } from '../../engine/src/media';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import { PipelineWorker } from '../../engine/src/worker/pipeline-worker';

let root: string;
let clip: string;
let worker: PipelineWorker;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'jobs-'));
  generateOracle(path.join(root, 'oracle'));
  clip = path.join(root, 'clip.mp4');
  await makeTestClip({
    file: clip,
    width: 96,
    height: 54,
    fps: { num: 25, den: 1 },
    frames: 30,
    content: 'moving-square',
  });
  worker = await PipelineWorker.start(path.join(root, 'oracle'), { threads: 1 });
});

afterAll(async () => {
  await worker?.terminate();
  fs.rmSync(root, { recursive: true, force: true });
});

let n = 0;
function request(over: Partial<JobRequestInput> = {}): JobRequest {
  return JobRequest.parse({
    source: { path: clip, in: 0.2, out: 0.8 },
    prompt: 'a blue car on a gray road',
    sourcePrompt: 'a red car on a gray road',
    steps: 8,
    guidance: 1,
    output: { path: path.join(root, `out-${++n}.mp4`) },
    ...over,
  });
}

function settle(m: JobManager, id: string): Promise<Job> {
  return new Promise((resolve) => {
    const job = m.get(id)!;
    if (['succeeded', 'failed', 'canceled'].includes(job.state)) return resolve(job);
    const off = m.subscribe(id, (e: JobEvent) => {
      if (e.type === 'done') {
        off();
        resolve(e.job);
      }
    });
  });
}

async function open(dataDir: string, extra: Partial<Parameters<typeof JobManager.open>[0]> = {}): Promise<JobManager> {
  return JobManager.open({ worker, dataDir, version: 'test', ...extra });
}

describe('jobs', () => {
  it("edits a range into a file with the range's frame count, fps, size and duration, reporting progress", async () => {
    const m = await open(path.join(root, 'd1'));
    const events: JobEvent[] = [];
    const job = await m.submit(request());
    expect(job.state).toBe('queued');
    expect(job.progress.frames).toBe(15); // frames 5..19 at 25 fps
    m.subscribe(job.id, (e) => events.push(e));
    const done = await settle(m, job.id);
    expect(done.state).toBe('succeeded');
    const info = await probeMedia(done.result!.path);
    expect(info.video.frameCount).toBe(15);
    expect(info.video.fps).toEqual({ num: 25, den: 1 });
    expect([info.video.width, info.video.height]).toEqual([96, 54]);
    expect(info.durationSec).toBeCloseTo(0.6, 2);
    expect(done.result!.unetEvaluations).toBe(15 * 8 * 3); // inversion + edit with target and source branches
    const stages = new Set(
      events.filter((e) => e.type === 'progress').map((e) => (e as { job: Job }).job.progress.stage),
    );
    for (const s of ['probing', 'decoding', 'encoding latents', 'inverting', 'editing', 'decoding latents', 'writing'])
      expect(stages).toContain(s);
    const fractions = events.filter((e) => e.type === 'progress').map((e) => (e as { job: Job }).job.progress.fraction);
    expect(fractions).toEqual([...fractions].sort((a, b) => a - b));
    expect(events[events.length - 1].type).toBe('done');
    expect(m.resultFile(job.id)).toBe(done.result!.path);
    // Persisted.
    expect(new JobStore(path.join(root, 'd1', 'jobs')).loadAll().find((j) => j.id === job.id)?.state).toBe('succeeded');
  });

  it('re-editing the same range with another prompt reuses the inversion', async () => {
    const m = await open(path.join(root, 'd2'));
    const first = await settle(m, (await m.submit(request())).id);
    const second = await settle(m, (await m.submit(request({ prompt: 'a green car on a gray road' }))).id);
    expect(first.result!.inversionCacheHit).toBe(false);
    expect(second.result!.inversionCacheHit).toBe(true);
    // Inversion and the direct-inversion source steps come from the cache: only the target branch runs.
    expect(second.result!.unetEvaluations).toBe(15 * 8);
  });

  it('runs queued jobs one at a time in submission order, and cancels queued and running jobs without leaving files', async () => {
    const m = await open(path.join(root, 'd3'));
    const a = await m.submit(request());
    const b = await m.submit(request());
    const c = await m.submit(request({ steps: 60 }));
    const d = await m.submit(request());
    expect(m.cancel(d.id).state).toBe('canceled');
    const [ja, jb] = await Promise.all([settle(m, a.id), settle(m, b.id)]);
    expect(ja.state).toBe('succeeded');
    expect(jb.state).toBe('succeeded');
    expect(Date.parse(jb.startedAt!)).toBeGreaterThanOrEqual(Date.parse(ja.finishedAt!));
    await new Promise<void>((resolve) => {
      const off = m.subscribe(c.id, (e) => {
        if (e.type === 'progress' && e.job.progress.stage === 'editing') {
          off();
          resolve();
        }
      });
    });
    m.cancel(c.id);
    const jc = await settle(m, c.id);
    expect(jc.state).toBe('canceled');
    expect(fs.existsSync(jc.outputPath)).toBe(false);
    expect(fs.readdirSync(root).filter((f) => f.includes('.partial-'))).toEqual([]);
    expect(fs.existsSync(m.get(d.id)!.outputPath)).toBe(false);
    expect(() => m.cancel(a.id)).toThrow(ProblemError);
  });

  it('refuses bad submissions with the field and a sentence that says what to do', async () => {
    const m = await open(path.join(root, 'd4'), { maxQueued: 1 });
    const problem = async (req: JobRequest) => {
      try {
        await m.submit(req);
      } catch (err) {
        expect(err).toBeInstanceOf(ProblemError);
        return (err as ProblemError).problem;
      }
      throw new Error('submission was accepted');
    };
    let p = await problem(request({ source: { path: path.join(root, 'nope.mp4'), in: 0, out: 1 } }));
    expect([p.status, p.field]).toEqual([422, 'source.path']);
    expect(p.detail).toMatch(/nope\.mp4/);
    p = await problem(request({ source: { path: root, in: 0, out: 1 } }));
    expect([p.status, p.field]).toEqual([422, 'source.path']);
    p = await problem(request({ source: { path: clip, in: 0.5, out: 9 } }));
    expect([p.status, p.field]).toEqual([422, 'source.out']);
    // The clip's end as timecode (30 frames at 25 fps), in the editor's words rather than the field's path.
    expect(p.detail).toMatch(/^Out is past the end of clip\.mp4 \(00:00:01:05, 30 frames\)/);
    const existing = path.join(root, 'exists.mp4');
    fs.writeFileSync(existing, 'x');
    p = await problem(request({ output: { path: existing } }));
    expect([p.status, p.field]).toEqual([409, 'output.path']);
    p = await problem(request({ mask: { type: 'file', path: path.join(root, 'nomask.png') } }));
    expect([p.status, p.field]).toEqual([422, 'mask.path']);
    // Queue bound: one queued job at most (the first starts running at once, so fill with two).
    const first = await m.submit(request({ steps: 50 }));
    await m.submit(request()).catch(() => undefined);
    p = await problem(request());
    expect(p.status).toBe(429);
    m.cancel(first.id);
    for (const j of m.list()) if (j.state === 'queued') m.cancel(j.id);
    await settle(m, first.id);
  });

  it('after a crash, re-queues the job that was running, removes its partial output, and finishes it', async () => {
    const dataDir = path.join(root, 'd5');
    const store = new JobStore(path.join(dataDir, 'jobs'));
    const req = request();
    const outputPath = req.output!.path!;
    const partial = path.join(path.dirname(outputPath), `.${path.basename(outputPath, '.mp4')}.partial-999-abcd.mp4`);
    fs.writeFileSync(partial, 'half a file');
    const base = { request: req, seed: 1, outputPath, warnings: [], createdAt: new Date().toISOString() };
    store.save({
      ...base,
      id: 'crashed1',
      state: 'running',
      restarts: 0,
      progress: { stage: 'editing', fraction: 0.4 },
    });
    store.save({
      ...base,
      id: 'crashed2',
      state: 'running',
      restarts: 2,
      outputPath: path.join(root, 'never.mp4'),
      progress: { stage: 'editing', fraction: 0.4 },
    });
    const m = await open(dataDir);
    expect(fs.existsSync(partial)).toBe(false);
    const failed = m.get('crashed2')!;
    expect(failed.state).toBe('failed');
    expect(failed.error?.detail).toMatch(/stopped while this job was running, 3 times/);
    const done = await settle(m, 'crashed1');
    expect(done.state).toBe('succeeded');
    expect(done.restarts).toBe(1);
    expect(done.warnings.join(' ')).toMatch(/restarted/);
    expect((await probeMedia(outputPath)).video.frameCount).toBe(15);
  });

  it('forgets the oldest finished jobs beyond the history bound, keeping their result files', async () => {
    const dataDir = path.join(root, 'd6');
    const m = await open(dataDir, { maxHistory: 2 });
    const first = await m.submit(request({ steps: 2 }));
    const rest = [await m.submit(request()), await m.submit(request()), await m.submit(request())];
    for (const j of rest) expect(m.cancel(j.id).state).toBe('canceled');
    const done = await settle(m, first.id);
    expect(done.state).toBe('succeeded');
    // Newest finished first: the succeeded job, then the last canceled one.
    expect(m.list().map((j) => j.id)).toEqual(expect.arrayContaining([first.id, rest[2].id]));
    expect(m.list()).toHaveLength(2);
    expect(m.get(rest[0].id)).toBeUndefined();
    const files = () =>
      fs
        .readdirSync(path.join(dataDir, 'jobs'))
        .filter((f) => f.endsWith('.json'))
        .sort();
    expect(files()).toEqual([`${first.id}.json`, `${rest[2].id}.json`].sort());
    const reopened = await open(dataDir, { maxHistory: 0 });
    expect(reopened.list()).toEqual([]);
    expect(files()).toEqual([]);
    expect((await probeMedia(done.result!.path)).video.frameCount).toBe(15);
  });
});
