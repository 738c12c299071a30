// The output rules hold when the result is written, not only when the job is submitted (issue "Hardening", finding
// 4): the output's folder swapped for a link into a forbidden place while the job waits, or while it writes, and the
// result is refused; nothing lands there and no partial file is left behind. The forbidden place here is the engine's
// own data folder (a system folder would be written to for real, as root, if the check failed).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { JobRequest, type JobProgress } from '../../engine/src/api/schemas';
import { planJob, runJob } from '../../engine/src/jobs/runner';
import { makeTestClip } from '../../engine/src/media';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import { PipelineWorker } from '../../engine/src/worker/pipeline-worker';

let root: string;
let worker: PipelineWorker;
let clip: string;
const saved = { home: process.env.RESHOOT_HOME, fault: process.env.RESHOOT_FAULT };

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'write-target-'));
  process.env.RESHOOT_HOME = path.join(root, 'home');
  fs.mkdirSync(path.join(root, 'home', 'data', 'jobs'), { recursive: true });
  generateOracle(path.join(root, 'oracle'));
  worker = await PipelineWorker.start(path.join(root, 'oracle'), { threads: 1 });
  clip = path.join(root, 'clip.mp4');
  await makeTestClip({
    file: clip,
    width: 128,
    height: 96,
    fps: { num: 24, den: 1 },
    frames: 6,
    codec: 'h264',
    content: 'moving-square',
  });
});

afterAll(async () => {
  await worker?.terminate();
  for (const [k, v] of [
    ['RESHOOT_HOME', saved.home],
    ['RESHOOT_FAULT', saved.fault],
  ] as const) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  fs.rmSync(root, { recursive: true, force: true });
});

function setUp(name: string) {
  const folder = path.join(root, name);
  fs.mkdirSync(folder);
  const out = path.join(folder, 'out.mp4');
  const req = JobRequest.parse({
    source: { path: clip, in: 0, out: 0.25 },
    prompt: 'a blue car on a gray road',
    sourcePrompt: 'a red car on a gray road',
    steps: 2,
    guidance: 1,
    mask: { type: 'none' },
    output: { path: out },
  });
  const swap = () => {
    fs.renameSync(folder, `${folder}.orig`);
    fs.symlinkSync(path.join(root, 'home', 'data', 'jobs'), folder);
  };
  const left = () => [...fs.readdirSync(path.join(root, 'home', 'data', 'jobs')), ...fs.readdirSync(`${folder}.orig`)];
  return { out, req, swap, left };
}

it('refuses at the start of the run a folder swapped for a link while the job waited', async () => {
  const t = setUp('queued');
  const plan = await planJob(t.req, worker.info, t.out);
  t.swap();
  const err = await runJob(t.req, plan, { worker, seed: 1, onProgress: () => undefined }).then(
    () => undefined,
    (e: Error) => e,
  );
  expect(err?.message).toMatch(/lies in the engine's own data folder/);
  expect(t.left()).toEqual([]);
});

it('refuses just before the rename a folder swapped while the result was being written', async () => {
  const t = setUp('writing');
  const plan = await planJob(t.req, worker.info, t.out);
  process.env.RESHOOT_FAULT = 'slow-encode:1500';
  let swapped = false;
  const onProgress = (p: JobProgress) => {
    if (p.stage === 'writing' && !swapped) {
      swapped = true;
      t.swap();
    }
  };
  const err = await runJob(t.req, plan, { worker, seed: 1, onProgress }).then(
    () => undefined,
    (e: Error) => e,
  );
  delete process.env.RESHOOT_FAULT;
  expect(swapped).toBe(true);
  expect(err?.message).toMatch(/lies in the engine's own data folder/);
  // Nothing behind the link, and no result in the original folder. The encoder's hidden partial file stays in the
  // folder that was moved away: removing it would mean following the path that now leads behind the link.
  expect(fs.readdirSync(path.join(root, 'home', 'data', 'jobs'))).toEqual([]);
  expect(t.left().filter((n) => !/^\.out\.partial-\d+-[0-9a-f]+\.mp4$/.test(n))).toEqual([]);
}, 60000);
