// The engine's data folder is private to its user (issue "Hardening", finding 6): job records carry prompts and media
// paths, renders and inversion caches carry the footage. Created 0700/0600, and tightened at start when found looser.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Job, JobEvent } from '../../engine/src/api/schemas';
import { JobRequest } from '../../engine/src/api/schemas';
import { JobManager } from '../../engine/src/jobs/manager';
import { makeTestClip } from '../../engine/src/media';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import { PipelineWorker } from '../../engine/src/worker/pipeline-worker';

let root: string;
let worker: PipelineWorker;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'private-data-'));
  generateOracle(path.join(root, 'oracle'));
  worker = await PipelineWorker.start(path.join(root, 'oracle'), { threads: 1 });
});

afterAll(async () => {
  await worker?.terminate();
  fs.rmSync(root, { recursive: true, force: true });
});

const mode = (p: string) => fs.statSync(p).mode & 0o777;

function tree(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const p = path.join(dir, d.name);
    return d.isDirectory() ? [p, ...tree(p)] : [p];
  });
}

it('creates everything private and tightens what it finds looser at start', async () => {
  const data = path.join(root, 'data');
  // A data folder left by an older version: world-readable folders and files.
  fs.mkdirSync(path.join(data, 'jobs'), { recursive: true, mode: 0o777 });
  fs.chmodSync(data, 0o755);
  fs.chmodSync(path.join(data, 'jobs'), 0o777);
  fs.writeFileSync(path.join(data, 'jobs', 'old.txt'), 'a prompt and a path', { mode: 0o644 });
  fs.chmodSync(path.join(data, 'jobs', 'old.txt'), 0o644);

  const m = await JobManager.open({ worker, dataDir: data, version: 'test' });
  try {
    expect(mode(data)).toBe(0o700);
    expect(mode(path.join(data, 'jobs'))).toBe(0o700);
    expect(mode(path.join(data, 'jobs', 'old.txt'))).toBe(0o600);

    const clip = path.join(root, 'clip.mp4');
    await makeTestClip({
      file: clip,
      width: 128,
      height: 96,
      fps: { num: 24, den: 1 },
      frames: 3,
      codec: 'h264',
      content: 'moving-square',
    });
    const job = await m.submit(
      JobRequest.parse({
        source: { path: clip, in: 0, out: 0.125 },
        prompt: 'a blue car on a gray road',
        sourcePrompt: 'a red car on a gray road',
        steps: 2,
        guidance: 1,
        mask: { type: 'none' },
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
    expect(done.state).toBe('succeeded');
    const written = tree(data).filter((p) => !p.endsWith('old.txt'));
    // Job records and the inversion cache at least; every one of them private.
    expect(written.some((p) => p.includes(`${path.sep}jobs${path.sep}`) && p.endsWith('.json'))).toBe(true);
    expect(written.some((p) => p.includes(`${path.sep}cache${path.sep}`) && fs.statSync(p).isFile())).toBe(true);
    for (const p of written) {
      const st = fs.statSync(p);
      if (st.isDirectory()) expect({ p, mode: mode(p) }).toEqual({ p, mode: 0o700 });
      else if (p.includes(`${path.sep}jobs${path.sep}`) || p.includes(`${path.sep}cache${path.sep}`))
        expect({ p, mode: mode(p) }).toEqual({ p, mode: 0o600 });
    }
  } finally {
    await m.close();
  }
}, 120000);
