// Progress as the panel, the web UI and the CLI read it: one fraction for the whole job that never goes back while
// chunks of a long clip start their step count over, the frames each chunk works on, the ETA, and a waiting job's
// place in the queue. Real compute worker, real ffmpeg, the oracle model.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  JobRequest,
  type Job,
  type JobEvent,
  type JobProgress,
  type JobRequestInput,
} from '../../engine/src/api/schemas';
import { JobManager } from '../../engine/src/jobs/manager';
import { JobProgressMapper } from '../../engine/src/jobs/runner';
import { makeTestClip } from '../../engine/src/media';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import { PipelineWorker } from '../../engine/src/worker/pipeline-worker';

let root: string;
let clip: string;
let worker: PipelineWorker;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'job-progress-'));
  generateOracle(path.join(root, 'oracle'));
  clip = path.join(root, 'clip.mp4');
  await makeTestClip({
    file: clip,
    width: 64,
    height: 36,
    fps: { num: 24, den: 1 },
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
    source: { path: clip, in: 0, out: 30 / 24 },
    prompt: 'a blue car on a gray road',
    sourcePrompt: 'a red car on a gray road',
    steps: 4,
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

function progressOf(events: JobEvent[]): JobProgress[] {
  return events.flatMap((e) => (e.type === 'progress' ? [e.job.progress] : []));
}

it('reports one fraction over a two-chunk job that never goes back, with the frames of each chunk', async () => {
  const m = await JobManager.open({ worker, dataDir: path.join(root, 'd1'), version: 'test' });
  const job = await m.submit(request());
  const events: JobEvent[] = [];
  m.subscribe(job.id, (e) => events.push(e));
  const done = await settle(m, job.id);
  expect(done.state).toBe('succeeded');
  const seen = progressOf(events);
  const fractions = seen.map((p) => p.fraction);
  for (let i = 1; i < fractions.length; i++) expect(fractions[i]).toBeGreaterThanOrEqual(fractions[i - 1]);
  expect(fractions.at(-1)).toBeGreaterThan(0.95);

  // 30 frames in chunks of 16 with the default overlap of 4: frames 1–16, then 13–30.
  const ranges = [
    ...new Set(seen.flatMap((p) => (p.frameRange ? [`${p.frameRange.first}-${p.frameRange.last}`] : []))),
  ];
  expect(ranges).toEqual(['1-16', '13-30']);
  // The step count starts over in the second chunk: exactly what the fraction must not do.
  const second = seen.findIndex((p) => p.frameRange?.first === 13);
  expect(second).toBeGreaterThan(0);
  const lastStepOfFirst = seen
    .slice(0, second)
    .filter((p) => p.stage === 'inverting')
    .at(-1)!.step!;
  const firstStepOfSecond = seen.slice(second).find((p) => p.stage === 'inverting')!.step!;
  expect(firstStepOfSecond).toBeLessThan(lastStepOfFirst);
  expect(seen[second].fraction).toBeGreaterThanOrEqual(seen[second - 1].fraction);
  // The second chunk starts where the first one's share ends: chunk 1 is 16 of the 34 frames edited.
  expect(seen[second].fraction).toBeGreaterThan(0.02 + 0.96 * (16 / 34) - 1e-9);
  // An ETA once the job has a rate, never negative.
  const etas = seen.flatMap((p) => (p.etaSec === undefined ? [] : [p.etaSec]));
  expect(etas.length).toBeGreaterThan(0);
  for (const e of etas) expect(e).toBeGreaterThanOrEqual(0);
  await m.close();
});

it('numbers waiting jobs and moves each up as the ones ahead start', async () => {
  const m = await JobManager.open({ worker, dataDir: path.join(root, 'd2'), version: 'test' });
  const short = { source: { path: clip, in: 0, out: 4 / 24 } };
  const a = await m.submit(request(short));
  const b = await m.submit(request(short));
  const c = await m.submit(request(short));
  // The first started at once; the other two wait behind it, in submission order.
  expect(a.progress.queuePosition).toBe(1);
  expect([b, c].map((j) => j.progress.queuePosition)).toEqual([1, 2]);
  const positions: (number | undefined)[] = [];
  m.subscribe(c.id, (e) => {
    if (e.type === 'progress' && e.job.state === 'queued') positions.push(e.job.progress.queuePosition);
  });
  const last = await settle(m, c.id);
  await settle(m, b.id);
  expect(last.state).toBe('succeeded');
  // Moved up once, when b started.
  expect(positions).toEqual([1]);
  // A running or finished job has no place in the queue.
  expect(last.progress.queuePosition).toBeUndefined();
  expect(m.health().queue.queued).toBe(0);
  await m.close();
});

describe('JobProgressMapper', () => {
  it('holds the fraction when a chunk counts its units from zero again', () => {
    let t = 0;
    const out: JobProgress[] = [];
    const mapper = new JobProgressMapper(
      24,
      4,
      16,
      (p) => out.push(p),
      () => t,
    );
    mapper.stage('decoding', 0.01);
    mapper.startChunk(0, 16);
    for (let done = 1; done <= 10; done++) {
      t += 1000;
      mapper.chunk(0, { stage: 'inverting', done, total: 10, step: done, steps: 10, frame: 0, frames: 16 });
    }
    mapper.startChunk(12, 12);
    // A stage that reports its own total from zero (a cache hit edits without inverting, say).
    for (const [done, total] of [
      [1, 10],
      [5, 10],
      [1, 4],
      [4, 4],
    ]) {
      t += 1000;
      mapper.chunk(12, { stage: 'editing', done, total, step: done, steps: total, frame: 0, frames: 12 });
    }
    mapper.stage('writing', 0.99);
    const f = out.map((p) => p.fraction);
    for (let i = 1; i < f.length; i++) expect(f[i]).toBeGreaterThanOrEqual(f[i - 1]);
    // Chunk 1 is 16 of the 28 frames edited.
    expect(out[10].fraction).toBeCloseTo(0.02 + 0.96 * (16 / 28), 6);
    expect(out[11].frameRange).toEqual({ first: 13, last: 24 });
    // The whole job's rate: 10 s for the first 16/28 of the chunks' share, so about 7.5 s for the other 12/28.
    expect(out[10].etaSec).toBeGreaterThan(6);
    expect(out[10].etaSec).toBeLessThan(10);
  });
});
