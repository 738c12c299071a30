// The automatic mask's matte sequence (JobResult.mattePath, a %06d pattern) can be passed back as a file mask, as
// docs/API.md says: planJob used to look for a file literally named after the pattern and refused it.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { JobRequest } from '../../engine/src/api/schemas';
import { planJob, runJob } from '../../engine/src/jobs/runner';
import { makeTestClip } from '../../engine/src/media';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import { PipelineWorker } from '../../engine/src/worker/pipeline-worker';

let root: string;
let worker: PipelineWorker;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'matte-seq-'));
  generateOracle(path.join(root, 'oracle'));
  worker = await PipelineWorker.start(path.join(root, 'oracle'), { threads: 1 });
});

afterAll(async () => {
  await worker?.terminate();
  fs.rmSync(root, { recursive: true, force: true });
});

it('takes the matte sequence an automatic-mask job wrote as the mask of the next job', async () => {
  const clip = path.join(root, 'clip.mp4');
  await makeTestClip({ file: clip, width: 256, height: 192, fps: { num: 24, den: 1 }, frames: 6, codec: 'h264', content: 'moving-square' });
  const edit = (out: string, mask: unknown) =>
    JobRequest.parse({ source: { path: clip, in: 0, out: 0.25 }, prompt: 'a blue car on a gray road', sourcePrompt: 'a red car on a gray road', steps: 3, guidance: 1, mask, output: { path: out } });
  const first = edit(path.join(root, 'first.mp4'), { type: 'auto' });
  const r1 = await runJob(first, await planJob(first, worker.info, first.output!.path!), { worker, seed: 1, onProgress: () => undefined });
  expect(r1.mattePath).toMatch(/%06d\.png$/);
  expect(fs.readdirSync(path.dirname(r1.mattePath!)).filter((f) => f.endsWith('.png'))).toHaveLength(6);

  const second = edit(path.join(root, 'second.mp4'), { type: 'file', path: r1.mattePath });
  const plan = await planJob(second, worker.info, second.output!.path!);
  expect(plan.frameCount).toBe(6);
  const r2 = await runJob(second, plan, { worker, seed: 1, onProgress: () => undefined });
  expect(r2.frames).toBe(6);
  expect(fs.statSync(r2.path).size).toBeGreaterThan(0);

  const missing = edit(path.join(root, 'third.mp4'), { type: 'file', path: path.join(root, 'nowhere', 'matte_%06d.png') });
  const p3 = await planJob(missing, worker.info, missing.output!.path!);
  await expect(runJob(missing, p3, { worker, seed: 1, onProgress: () => undefined })).rejects.toThrow(/nowhere.*does not exist/);
  expect(fs.existsSync(missing.output!.path!)).toBe(false);
});
