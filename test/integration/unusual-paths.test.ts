// Folders whose names have spaces and non-ASCII letters (accents, CJK, a symbol) and whose full paths are longer than
// Windows' MAX_PATH (260), every component under 255 bytes: real jobs through the job store, the inversion cache and
// the output writer (and the automatic mask's matte sequence), in the engine's queue and in `reshoot edit`, with the
// clip, the engine's data folder and the results all in such folders. The results are probed, the job records read
// back by a fresh store and a restarted engine, and a second edit of the same range reuses the cached inversion.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { JobRequest, type Job, type JobEvent, type JobRequestInput } from '../../engine/src/api/schemas';
import { runEdit } from '../../engine/src/cli/edit';
import { JobManager } from '../../engine/src/jobs/manager';
import { JobStore } from '../../engine/src/jobs/store';
import { makeTestClip, probeMedia } from '../../engine/src/media';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import { PipelineWorker } from '../../engine/src/worker/pipeline-worker';

const UNICODE = 'Projekt Ünïcødé 編集 ✂';
/** One folder level: spaces, accents, CJK and a symbol; about 150 bytes, well under the 255 a name may have. */
const level = (i: number) =>
  `${UNICODE} Ebene ${i} mit Leerzeichen und Umlauten äöü 長いフォルダー名 ${'ß'.repeat(20)}`;

let root: string;
let deep: string;
let clip: string;
let oracle: string;
let worker: PipelineWorker;
const savedHome = process.env.RESHOOT_HOME;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'unusual-paths-'));
  deep = path.join(root, level(1), level(2), level(3));
  fs.mkdirSync(deep, { recursive: true });
  generateOracle(path.join(root, 'oracle'));
  oracle = path.join(root, 'oracle');
  clip = path.join(deep, `Szene 1 – Aufnahme ✂ 編集.mp4`);
  await makeTestClip({
    file: clip,
    width: 96,
    height: 54,
    fps: { num: 25, den: 1 },
    frames: 20,
    content: 'moving-square',
  });
  worker = await PipelineWorker.start(oracle, { threads: 1 });
});

afterAll(async () => {
  await worker?.terminate();
  if (savedHome === undefined) delete process.env.RESHOOT_HOME;
  else process.env.RESHOOT_HOME = savedHome;
  fs.rmSync(root, { recursive: true, force: true });
});

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

function request(over: Partial<JobRequestInput> = {}): JobRequest {
  return JobRequest.parse({
    source: { path: clip, in: 0.2, out: 0.6 },
    prompt: 'a blue car on a gray road',
    sourcePrompt: 'a red car on a gray road',
    steps: 4,
    guidance: 1,
    ...over,
  });
}

describe('paths with spaces, non-ASCII and over 260 characters', () => {
  it('the test folders are what they claim', () => {
    expect(clip.length).toBeGreaterThan(300);
    for (const part of path.relative(root, clip).split(path.sep)) {
      expect(Buffer.byteLength(part)).toBeLessThan(255);
    }
    expect(clip).toContain(UNICODE);
  });

  it('the job queue: store, inversion cache, results and mattes; records read back after a restart', async () => {
    const dataDir = path.join(deep, 'Reshoot Daten ✂');
    const out1 = path.join(deep, 'Ergebnis eins – blau 編集.mp4');
    const out2 = path.join(deep, 'Ergebnis zwei – grün 編集.mp4');
    const m = await JobManager.open({ worker, dataDir, version: 'test' });
    const first = await settle(m, (await m.submit(request({ output: { path: out1 }, mask: { type: 'auto' } }))).id);
    expect(first.error).toBeUndefined();
    expect(first.state).toBe('succeeded');
    const second = await settle(
      m,
      (await m.submit(request({ prompt: 'a green car on a gray road', output: { path: out2 } }))).id,
    );
    expect(second.error).toBeUndefined();
    expect(second.state).toBe('succeeded');
    // A third job with no output named: the default renders folder inside the deep data folder.
    const third = await settle(m, (await m.submit(request({ prompt: 'a yellow car on a gray road' }))).id);
    expect(third.state).toBe('succeeded');
    expect(path.dirname(third.result!.path)).toBe(path.join(dataDir, 'renders'));

    for (const [job, file] of [
      [first, out1],
      [second, out2],
      [third, third.result!.path],
    ] as const) {
      expect(job.result!.path).toBe(file);
      const info = await probeMedia(file);
      expect(info.video.frameCount).toBe(10); // frames 5..14 at 25 fps
      expect([info.video.width, info.video.height]).toEqual([96, 54]);
    }
    // The inversion of the range was computed once and reused.
    expect(first.result!.inversionCacheHit).toBe(false);
    expect(second.result!.inversionCacheHit).toBe(true);
    expect(third.result!.inversionCacheHit).toBe(true);
    const cacheDir = path.join(dataDir, 'cache', 'inversions');
    expect(fs.readdirSync(cacheDir).filter((n) => n.endsWith('.traj')).length).toBeGreaterThan(0);
    expect(fs.readdirSync(cacheDir).filter((n) => n.includes('.partial-'))).toEqual([]);
    // The automatic mask's matte sequence, renamed into place beside the result.
    expect(first.result!.mattePath).toBe(path.join(`${out1}.matte`, 'matte_%06d.png'));
    expect(fs.readdirSync(`${out1}.matte`).filter((n) => n.endsWith('.png'))).toHaveLength(10);
    // No temporary files left beside the results.
    expect(fs.readdirSync(deep).filter((n) => n.includes('.partial-'))).toEqual([]);

    // The job records, read by a fresh store and by a restarted engine.
    const records = new JobStore(path.join(dataDir, 'jobs')).loadAll();
    expect(records.map((j) => [j.id, j.state, j.outputPath])).toEqual(
      expect.arrayContaining([
        [first.id, 'succeeded', out1],
        [second.id, 'succeeded', out2],
        [third.id, 'succeeded', third.result!.path],
      ]),
    );
    expect(records.find((j) => j.id === first.id)!.request.source.path).toBe(clip);
    const again = await JobManager.open({ worker, dataDir, version: 'test' });
    expect(again.get(second.id)?.state).toBe('succeeded');
    expect(again.resultFile(second.id)).toBe(out2);
    // And the cache survives the restart: a fourth edit of the range still skips the inversion.
    const fourth = await settle(
      again,
      (
        await again.submit(
          request({ prompt: 'a white car on a gray road', output: { path: path.join(deep, 'vier.mp4') } }),
        )
      ).id,
    );
    expect(fourth.state).toBe('succeeded');
    expect(fourth.result!.inversionCacheHit).toBe(true);
  });

  it('a default result name cut from a long clip name keeps whole characters (no half of an emoji)', async () => {
    // 5 + 40 × 4 bytes: the default name is cut to 120 bytes, which falls in the middle of an emoji's surrogate pair.
    const emoji = path.join(deep, `Szene${'🎬'.repeat(40)}.mp4`);
    fs.copyFileSync(clip, emoji);
    const dataDir = path.join(deep, 'Reshoot Daten 2');
    const m = await JobManager.open({ worker, dataDir, version: 'test' });
    const job = await settle(
      m,
      (await m.submit(request({ source: { path: emoji, in: 0.2, out: 0.6 }, output: { folder: deep } }))).id,
    );
    expect(job.error).toBeUndefined();
    expect(job.state).toBe('succeeded');
    const name = path.basename(job.result!.path);
    expect(name).toMatch(/^Szene(🎬)+\.reshoot-[0-9a-f]+\.mp4$/);
    // Well-formed: it survives a round trip through UTF-8 (a lone surrogate would come back as U+FFFD).
    expect(Buffer.from(name, 'utf8').toString('utf8')).toBe(name);
    // The name the job reports is the name on disk.
    expect(fs.readdirSync(deep)).toContain(name);
    expect((await probeMedia(job.result!.path)).video.frameCount).toBe(10);
  });

  it('`reshoot edit` with RESHOOT_HOME (models, cache) and -o in such folders', async () => {
    process.env.RESHOOT_HOME = path.join(deep, 'Reshoot Home ✂');
    const out = path.join(deep, 'Kommandozeile – Ergebnis 編集.mp4');
    const args = (o: string, prompt: string) => [
      clip,
      '--prompt',
      prompt,
      '--source-prompt',
      'a red car on a gray road',
      '--in',
      '0.2',
      '--out',
      '0.6',
      '--steps',
      '4',
      '--guidance',
      '1',
      '--json',
      '-o',
      o,
    ];
    const lines: string[] = [];
    const log = jest.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void lines.push(a.join(' ')));
    const err = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      // The default model: the embedded oracle, generated into the deep models folder and renamed into place.
      expect(await runEdit(args(out, 'a blue car on a gray road'))).toBe(0);
      expect(await runEdit(args(`${out}.zwei.mp4`, 'a green car on a gray road'))).toBe(0);
    } finally {
      log.mockRestore();
      err.mockRestore();
    }
    expect(fs.existsSync(path.join(deep, 'Reshoot Home ✂', 'data', 'models', 'oracle', '.reshoot-generated'))).toBe(
      true,
    );
    for (const f of [out, `${out}.zwei.mp4`]) {
      const info = await probeMedia(f);
      expect(info.video.frameCount).toBe(10);
      expect([info.video.width, info.video.height]).toEqual([96, 54]);
    }
    const results = lines
      .map((l) => JSON.parse(l) as { event?: string; result?: { inversionCacheHit?: boolean } })
      .filter((e) => e.event === 'done' || e.result);
    expect(results.map((r) => r.result?.inversionCacheHit)).toEqual([false, true]);
  });
});
