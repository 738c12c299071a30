// The automatic mask's matte sequence (JobResult.mattePath, a %06d pattern) can be passed back as a file mask, as
// docs/API.md says: planJob used to look for a file literally named after the pattern and refused it. And the matte
// folder obeys the output's overwrite rule: a job used to delete whatever sat at `<output>.matte` (a folder of the
// user's files included), and a .mp4 and a .mov output of one name shared it.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { JobRequest } from '../../engine/src/api/schemas';
import { removePartialOutputs } from '../../engine/src/jobs/manager';
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
  await makeTestClip({
    file: clip,
    width: 256,
    height: 192,
    fps: { num: 24, den: 1 },
    frames: 6,
    codec: 'h264',
    content: 'moving-square',
  });
  const edit = (out: string, mask: unknown) =>
    JobRequest.parse({
      source: { path: clip, in: 0, out: 0.25 },
      prompt: 'a blue car on a gray road',
      sourcePrompt: 'a red car on a gray road',
      steps: 3,
      guidance: 1,
      mask,
      output: { path: out },
    });
  const first = edit(path.join(root, 'first.mp4'), { type: 'auto' });
  const r1 = await runJob(first, await planJob(first, worker.info, first.output!.path!), {
    worker,
    seed: 1,
    onProgress: () => undefined,
  });
  expect(r1.mattePath).toMatch(/%06d\.png$/);
  expect(fs.readdirSync(path.dirname(r1.mattePath!)).filter((f) => f.endsWith('.png'))).toHaveLength(6);

  const second = edit(path.join(root, 'second.mp4'), { type: 'file', path: r1.mattePath });
  const plan = await planJob(second, worker.info, second.output!.path!);
  expect(plan.frameCount).toBe(6);
  const r2 = await runJob(second, plan, { worker, seed: 1, onProgress: () => undefined });
  expect(r2.frames).toBe(6);
  expect(fs.statSync(r2.path).size).toBeGreaterThan(0);

  const missing = edit(path.join(root, 'third.mp4'), {
    type: 'file',
    path: path.join(root, 'nowhere', 'matte_%06d.png'),
  });
  const p3 = await planJob(missing, worker.info, missing.output!.path!);
  await expect(runJob(missing, p3, { worker, seed: 1, onProgress: () => undefined })).rejects.toThrow(
    /nowhere.*does not exist/,
  );
  expect(fs.existsSync(missing.output!.path!)).toBe(false);
});

describe('the matte folder', () => {
  let clip: string;
  const req = (out: string, overwrite = false, codec: 'h264' | 'prores' = 'h264') =>
    JobRequest.parse({
      source: { path: clip, in: 0, out: 0.125 },
      prompt: 'a blue car on a gray road',
      sourcePrompt: 'a red car on a gray road',
      steps: 2,
      guidance: 1,
      mask: { type: 'auto' },
      output: { path: out, overwrite, codec },
    });
  const refusal = (out: string, overwrite = false) =>
    planJob(req(out, overwrite), worker.info, out).then(
      () => undefined,
      (e: { problem?: { status?: number; detail?: string } }) => e.problem,
    );

  beforeAll(async () => {
    clip = path.join(root, 'matte-clip.mp4');
    await makeTestClip({
      file: clip,
      width: 256,
      height: 192,
      fps: { num: 24, den: 1 },
      frames: 3,
      codec: 'h264',
      content: 'moving-square',
    });
  });

  it('is refused when something is already there, and nothing of it is touched', async () => {
    const out = path.join(root, 'taken.mp4');
    fs.mkdirSync(`${out}.matte`);
    fs.writeFileSync(`${out}.matte/notes.txt`, 'mine');
    for (const overwrite of [false, true]) {
      const err = await refusal(out, overwrite);
      expect(err?.status).toBe(409);
      expect(err?.detail).toMatch(overwrite ? /not a matte sequence Reshoot wrote/ : /already exists \(a folder\)/);
    }
    expect(fs.readFileSync(`${out}.matte/notes.txt`, 'utf8')).toBe('mine');

    const asFile = path.join(root, 'file.mp4');
    fs.writeFileSync(`${asFile}.matte`, 'a file');
    expect((await refusal(asFile, true))?.detail).toMatch(/is a file that is not a matte sequence/);
    const asLink = path.join(root, 'link.mp4');
    fs.mkdirSync(path.join(root, 'elsewhere'));
    fs.symlinkSync(path.join(root, 'elsewhere'), `${asLink}.matte`);
    expect((await refusal(asLink, true))?.detail).toMatch(/is a symbolic link/);
    expect(fs.readFileSync(`${asFile}.matte`, 'utf8')).toBe('a file');
    expect(fs.existsSync(path.join(root, 'elsewhere'))).toBe(true);
  });

  it('belongs to one output: a .mp4 and a .mov of the same name keep their own; overwrite replaces an earlier matte', async () => {
    const mp4 = path.join(root, 'pair.mp4');
    const mov = path.join(root, 'pair.mov');
    const a = await runJob(req(mp4), await planJob(req(mp4), worker.info, mp4), {
      worker,
      seed: 1,
      onProgress: () => undefined,
    });
    const b = await runJob(req(mov, false, 'prores'), await planJob(req(mov, false, 'prores'), worker.info, mov), {
      worker,
      seed: 1,
      onProgress: () => undefined,
    });
    expect(a.mattePath).toBe(path.join(`${mp4}.matte`, 'matte_%06d.png'));
    expect(b.mattePath).toBe(path.join(`${mov}.matte`, 'matte_%06d.png'));
    expect(fs.readdirSync(`${mp4}.matte`)).toHaveLength(3);
    expect(fs.readdirSync(`${mov}.matte`)).toHaveLength(3);
    const again = await runJob(req(mp4, true), await planJob(req(mp4, true), worker.info, mp4), {
      worker,
      seed: 1,
      onProgress: () => undefined,
    });
    expect(again.mattePath).toBe(a.mattePath);
    expect(fs.readdirSync(`${mp4}.matte`)).toHaveLength(3);
  });

  it("is a hidden temp folder until the job finishes, swept after a crash like the video's", () => {
    const out = path.join(root, 'crashed.mp4');
    const left = path.join(root, `.crashed.mp4.matte.partial-12345-abcd1234`);
    fs.mkdirSync(left);
    fs.writeFileSync(path.join(left, 'matte_000000.png'), 'x');
    const unrelated = path.join(root, '.crashed.notes');
    fs.writeFileSync(unrelated, 'keep');
    removePartialOutputs(out);
    expect(fs.existsSync(left)).toBe(false);
    expect(fs.existsSync(unrelated)).toBe(true);
  });
});
