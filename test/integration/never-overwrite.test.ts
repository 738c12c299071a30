// A result never replaces what the job reads (the source clip, a matte file, any image of a matte sequence) nor lands
// in the engine's own state folder, with or without overwrite, however the output path reaches the file: the same
// path, a hard link, a symbolic link, a linked folder. Checked through the real job code (planJob, which the CLI and
// the engine share; the engine's submission; the CLI's runEdit in-process), with every input byte-identical after.
// Also: a matte exported at the clip's own size is accepted although the working size's aspect differs.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { JobRequest, type Job, type JobEvent, type JobRequestInput } from '../../engine/src/api/schemas';
import { CliError } from '../../engine/src/cli/args';
import { runEdit } from '../../engine/src/cli/edit';
import { JobManager } from '../../engine/src/jobs/manager';
import { planJob } from '../../engine/src/jobs/runner';
import { ProblemError } from '../../engine/src/jobs/service';
import { encodePng } from '../../engine/src/media/png';
import { makeTestClip, probeMedia } from '../../engine/src/media';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import { PipelineWorker } from '../../engine/src/worker/pipeline-worker';

let root: string;
let media: string;
let home: string;
let clip: string;
let wide: string;
let matte: string;
let matteClip: string;
let seqPattern: string;
let worker: PipelineWorker;
const savedHome = process.env.RESHOOT_HOME;
const hashes = new Map<string, string>();

const sha256 = (f: string) => createHash('sha256').update(fs.readFileSync(f)).digest('hex');
const inputs = () => [
  clip,
  wide,
  matte,
  matteClip,
  ...fs.readdirSync(path.dirname(seqPattern)).map((n) => path.join(path.dirname(seqPattern), n)),
];

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'never-overwrite-'));
  home = path.join(root, 'home');
  process.env.RESHOOT_HOME = home;
  media = path.join(root, 'media');
  fs.mkdirSync(media);
  generateOracle(path.join(root, 'oracle'));
  clip = path.join(media, 'clip.mp4');
  await makeTestClip({
    file: clip,
    width: 64,
    height: 36,
    fps: { num: 24, den: 1 },
    frames: 12,
    content: 'moving-square',
    audio: true,
  });
  // 640x360 is edited at 224x128 by the oracle (aspect 1.750, not 1.778).
  wide = path.join(media, 'wide.mp4');
  await makeTestClip({
    file: wide,
    width: 640,
    height: 360,
    fps: { num: 24, den: 1 },
    frames: 4,
    content: 'moving-square',
  });
  matte = path.join(media, 'matte.png');
  fs.writeFileSync(matte, encodePng(new Uint8Array(640 * 360 * 3).fill(255), 640, 360, 3));
  matteClip = path.join(media, 'matte.mp4');
  await makeTestClip({
    file: matteClip,
    width: 64,
    height: 36,
    fps: { num: 24, den: 1 },
    frames: 12,
    content: 'index-ramp',
  });
  const seq = path.join(media, 'seq');
  fs.mkdirSync(seq);
  for (let i = 1; i <= 12; i++)
    fs.writeFileSync(
      path.join(seq, `m_${String(i).padStart(4, '0')}.png`),
      encodePng(new Uint8Array(64 * 36 * 3).fill(200), 64, 36, 3),
    );
  seqPattern = path.join(seq, 'm_%04d.png');
  for (const f of inputs()) hashes.set(f, sha256(f));
  worker = await PipelineWorker.start(path.join(root, 'oracle'), { threads: 1 });
});

afterAll(async () => {
  await worker?.terminate();
  if (savedHome === undefined) delete process.env.RESHOOT_HOME;
  else process.env.RESHOOT_HOME = savedHome;
  fs.rmSync(root, { recursive: true, force: true });
});

function request(over: Partial<JobRequestInput> & { output?: JobRequestInput['output'] } = {}): JobRequest {
  return JobRequest.parse({
    source: { path: clip, in: 0, out: 0.25 },
    prompt: 'a blue car on a gray road',
    sourcePrompt: 'a red car on a gray road',
    steps: 2,
    guidance: 1,
    ...over,
  });
}

async function refusedByPlan(req: JobRequest, output: string, field = 'output.path'): Promise<string> {
  const err = await planJob(req, worker.info, output).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ProblemError);
  const problem = (err as ProblemError).problem;
  expect(problem.status).toBe(422);
  expect(problem.field).toBe(field);
  return problem.detail;
}

describe('planJob never lets a result replace an input', () => {
  it('refuses the source clip itself, with overwrite', async () => {
    const detail = await refusedByPlan(request({ output: { path: clip, overwrite: true } }), clip);
    expect(detail).toMatch(/source clip/);
    expect(detail).toMatch(/even with overwrite/);
  });

  it('refuses a hard link to the source', async () => {
    const link = path.join(root, 'hardlink.mp4');
    fs.linkSync(clip, link);
    const detail = await refusedByPlan(request({ output: { path: link, overwrite: true } }), link);
    expect(detail).toMatch(/source clip.*hard link/);
  });

  it('refuses a symbolic link to the source, and the source reached through a linked folder', async () => {
    const link = path.join(root, 'symlink.mp4');
    fs.symlinkSync(clip, link);
    expect(await refusedByPlan(request({ output: { path: link, overwrite: true } }), link)).toMatch(
      /source clip.*symbolic link/,
    );
    const dirLink = path.join(root, 'media-link');
    fs.symlinkSync(media, dirLink);
    const viaFolder = path.join(dirLink, 'clip.mp4');
    expect(await refusedByPlan(request({ output: { path: viaFolder, overwrite: true } }), viaFolder)).toMatch(
      /source clip/,
    );
  });

  it('refuses a matte still and a matte clip', async () => {
    const box = { type: 'file' as const };
    expect(
      await refusedByPlan(request({ mask: { ...box, path: matte }, output: { path: matte, overwrite: true } }), matte),
    ).toMatch(/matte file/);
    expect(
      await refusedByPlan(
        request({ mask: { ...box, path: matteClip }, output: { path: matteClip, overwrite: true } }),
        matteClip,
      ),
    ).toMatch(/matte file/);
  });

  it("refuses the engine's own state folder but not its renders folder", async () => {
    const data = path.join(home, 'data');
    const jobs = path.join(data, 'jobs', 'x.mp4');
    fs.mkdirSync(path.dirname(jobs), { recursive: true });
    expect(await refusedByPlan(request({ output: { path: jobs, overwrite: true } }), jobs)).toMatch(
      /engine's own data folder/,
    );
    const cacheFolder = path.join(data, 'cache');
    expect(
      await refusedByPlan(
        request({ output: { folder: cacheFolder } }),
        path.join(cacheFolder, 'clip.reshoot-1.mp4'),
        'output.folder',
      ),
    ).toMatch(/data folder/);
    const plan = await planJob(request(), worker.info, path.join(data, 'renders', 'clip.reshoot-abc.mp4'));
    expect(plan.frameCount).toBe(6);
  });

  it('accepts an ordinary output next to the source', async () => {
    const plan = await planJob(
      request({ output: { path: path.join(media, 'clip.edit.mp4') } }),
      worker.info,
      path.join(media, 'clip.edit.mp4'),
    );
    expect(plan.frameCount).toBe(6);
  });
});

describe('the engine refuses at submission', () => {
  let m: JobManager;
  beforeAll(async () => {
    m = await JobManager.open({ worker, dataDir: path.join(home, 'data'), version: 'test' });
  });
  afterAll(async () => {
    await m?.close();
  });

  const refused = async (over: Partial<JobRequestInput>, field = 'output.path') => {
    const err = await m.submit(request(over)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ProblemError);
    expect((err as ProblemError).problem).toMatchObject({ status: 422, field });
    return (err as ProblemError).problem.detail;
  };

  it('the source, a symbolic link to it, a matte clip, the data folder: 422 naming the field', async () => {
    expect(await refused({ output: { path: clip, overwrite: true } })).toMatch(/source clip/);
    expect(await refused({ output: { path: path.join(root, 'symlink.mp4'), overwrite: true } })).toMatch(
      /source clip.*symbolic link/,
    );
    expect(await refused({ output: { path: path.join(root, 'hardlink.mp4'), overwrite: true } })).toMatch(
      /source clip/,
    );
    expect(
      await refused({ mask: { type: 'file', path: matteClip }, output: { path: matteClip, overwrite: true } }),
    ).toMatch(/matte file/);
    expect(await refused({ output: { folder: path.join(home, 'data', 'jobs') } }, 'output.folder')).toMatch(
      /data folder/,
    );
    expect(m.list()).toEqual([]);
  });

  it("accepts a matte at the clip's own size although the working size's aspect differs, and runs it", async () => {
    const job = await m.submit(
      request({
        source: { path: wide, in: 0, out: 4 / 24 },
        method: 'sdedit',
        mask: { type: 'file', path: matte },
        output: { path: path.join(root, 'wide.out.mp4') },
      }),
    );
    const done = await new Promise<Job>((resolve) => {
      const off = m.subscribe(job.id, (e: JobEvent) => {
        if (e.type === 'done') {
          off();
          resolve(e.job);
        }
      });
    });
    expect(done.error).toBeUndefined();
    expect(done.state).toBe('succeeded');
    expect(done.result!.workingSize).toEqual({ width: 224, height: 128 });
    expect((await probeMedia(path.join(root, 'wide.out.mp4'))).video.frameCount).toBe(4);
  });
});

describe('reshoot edit', () => {
  it('refuses -o INPUT --overwrite with a sentence naming -o and --overwrite', async () => {
    const err = await runEdit([clip, '--prompt', 'a blue car', '-o', clip, '--overwrite']).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CliError);
    const msg = (err as CliError).message;
    expect(msg).toMatch(/source clip/);
    expect(msg).toMatch(/even with --overwrite/);
    expect(msg).toMatch(/-o/);
    expect(msg).not.toMatch(/output\.(overwrite|path)/);
  });

  it('refuses -o naming a symbolic link to the input, and the matte', async () => {
    await expect(
      runEdit([clip, '--prompt', 'a blue car', '-o', path.join(root, 'symlink.mp4'), '--overwrite']),
    ).rejects.toThrow(/source clip/);
    await expect(
      runEdit([clip, '--prompt', 'a blue car', '--mask', matteClip, '-o', matteClip, '--overwrite']),
    ).rejects.toThrow(/matte file/);
  });

  // (planJob itself does not get this far with a sequence pattern: its mask check looks for the pattern as a file.)
  it('refuses an image of a matte sequence, and a hard link to one', async () => {
    const image = path.join(path.dirname(seqPattern), 'm_0003.png');
    await expect(
      runEdit([clip, '--prompt', 'a blue car', '--mask', seqPattern, '-o', image, '--overwrite']),
    ).rejects.toThrow(/image of the matte sequence/);
    const linked = path.join(root, 'seq-link.mp4');
    fs.linkSync(path.join(path.dirname(seqPattern), 'm_0007.png'), linked);
    await expect(
      runEdit([clip, '--prompt', 'a blue car', '--mask', seqPattern, '-o', linked, '--overwrite']),
    ).rejects.toThrow(/matte sequence.*m_0007\.png/);
  });
});

it('leaves every input byte-identical', () => {
  // Runs last: the links the tests above made are there.
  expect(fs.existsSync(path.join(root, 'seq-link.mp4'))).toBe(true);
  expect(inputs().length).toBe(16);
  for (const f of inputs()) expect([f, sha256(f)]).toEqual([f, hashes.get(f)]);
});
