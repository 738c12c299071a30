// `reshoot bench` / `npm run bench`: where a job's time and memory go, and the headline ratios of issue 6. Every job
// runs through planJob/runJob and the compute worker exactly as the server runs it, each case in a child process of
// its own so its peak RSS is its own. Ratios are taken between runs of the same invocation, so machine noise mostly
// cancels; absolute times are for orientation only.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { JobRequest, type JobRequestInput } from '../api/schemas';
import type { ProviderName } from '../models/providers';
import { VERSION } from '../version';
import type { ChildJob, ChildResult, ChildSpec } from './child';
import type { ProviderProbe } from '../models/provider-probe';
import { measureHealth, type HealthResult } from './health';
import { measureBurst, type BurstResult } from './burst';
import { benchUnetCalls, type UnetCallCase } from './unet-calls';
import { ensureClip, ensureLoopedClip, generateBenchModel, type BenchModel, type ClipSpec } from './workspace';

const DEFAULT_STEPS = JobRequest.shape.steps.parse(undefined);

export const SECTIONS = ['table', 'reedit', 'evals', 'memory', 'health', 'burst'] as const;
export type Section = (typeof SECTIONS)[number];

export interface BenchOptions {
  /** Clips are kept here between runs; each run works in a fresh subfolder that is removed afterwards. */
  dir: string;
  sections: Section[];
  /** Also time single UNet calls (the table of the former bench-unet script). */
  unetCalls?: boolean;
  unetRuns?: number;
  threads?: number;
  log?: (line: string) => void;
}

export const STAGES = ['probe', 'decode', 'vaeEncode', 'inversion', 'edit', 'vaeDecode', 'encode', 'other'] as const;
export type StageName = (typeof STAGES)[number];

export interface CaseReport {
  name: string;
  model: string;
  provider: string;
  method: string;
  frames: number;
  batchSize: number;
  steps: number;
  workingSize: string;
  totalMs: number;
  stagesMs: Record<StageName, number>;
  shares: Record<StageName, number>;
  unetCalls: number;
  unetMs: number;
  unetEvalsPerFrame: number;
  /** Time inside session.run (UNet, VAE, text encoder) ÷ wall time. */
  ortShare: number;
  /** Inversion and edit stages outside session.run: scheduler math, consistency stages, automatic mask, progress. */
  loopJsMs: number;
  framesPerSec: number;
  peakRssMb: number;
  /** Parts of "other": text encoder, thread transfer, inversion cache, finishing the file. */
  textMs: number;
  transferMs: number;
  cacheMs: number;
  finishMs: number;
}

export interface BenchSummary {
  ortShare: number | null;
  memoryFlatness: number | null;
  reEditRatio: number | null;
  unetEvalsPerFrame: {
    inversion: number | null;
    inversionNoCfg?: number | null;
    sdedit: number | null;
    fast: number | null;
  };
  healthP99Ms: number | null;
  /** Health p99 while another process submits a burst of jobs at once. */
  burstHealthP99Ms: number | null;
  /** p99 of the 429 answers in that burst. */
  burstRefusedP99Ms: number | null;
}

export interface BenchReport {
  date: string;
  version: string;
  commit?: string;
  machine: { cpu: string; cores: number; memoryGiB: number; os: string; node: string; onnxruntime: string };
  providers: ProviderProbe;
  summary: BenchSummary;
  targets: {
    ortShare: string;
    memoryFlatness: string;
    reEditRatio: string;
    healthP99Ms: string;
    burstHealthP99Ms: string;
    burstRefusedP99Ms: string;
  };
  cases: CaseReport[];
  gpuCases: CaseReport[];
  details: {
    ortShare?: { case: string; ortMs: number; totalMs: number; unetOnlyShare: number };
    memory?: { model: string; clip5s: string; clip60s: string; short: CaseReport; long: CaseReport };
    reEdit?: {
      first: CaseReport;
      second: CaseReport;
      secondCacheHit: boolean;
      /** Per round: re-edit ÷ first edit. */
      rounds: number[];
      ortShareRounds: number[];
    };
    unetEvals?: Record<string, { evalsPerFrame: number; settings: string }>;
    health?: (HealthResult & { name: string; settings: string })[];
    burst?: BurstResult & { settings: string };
  };
  unetCalls?: UnetCallCase[];
  unetCallRuns?: number;
  wallSeconds: number;
}

const TARGETS = {
  ortShare: '≥ 0.90',
  memoryFlatness: '≤ 1.2',
  reEditRatio: '≤ 0.55',
  healthP99Ms: '< 50',
  burstHealthP99Ms: '< 100',
  burstRefusedP99Ms: '< 1000',
};
const SOURCE_PROMPT = 'a red car on a gray road';
const TARGET_PROMPT = 'a blue car on a gray road';
const OTHER_PROMPT = 'a green car on a gray road';

function distFile(rel: string): string {
  // From the sources (ts-node, jest) use the compiled tree: the worker and the children need JavaScript.
  const here = __filename.endsWith('.ts') ? path.resolve(__dirname, '../../../dist/engine/src/bench') : __dirname;
  return path.resolve(here, rel);
}

function probeProviders(modelDir: string): Promise<ProviderProbe> {
  return runChild({ probeProviders: true, modelDir, settings: {}, jobs: [] }) as unknown as Promise<ProviderProbe>;
}

function runChild(spec: ChildSpec, timeoutMs = 15 * 60_000): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [distFile('child.js'), JSON.stringify(spec)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-8000)));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      const last = out.trim().split('\n').pop() ?? '';
      if (code === 0 && last.startsWith('{')) return resolve(JSON.parse(last) as ChildResult);
      reject(new Error(`benchmark case failed (${signal ?? `exit ${code}`}): ${err.trim() || out.trim()}`));
    });
  });
}

const r1 = (v: number) => Math.round(v * 10) / 10;
const r3 = (v: number) => Math.round(v * 1000) / 1000;

function caseReport(
  name: string,
  model: string,
  provider: string,
  req: JobRequestInput,
  job: ChildJob,
  peakRssMb: number,
): CaseReport {
  const t = job.timings;
  const stagesMs: Record<StageName, number> = {
    probe: t.probeMs,
    decode: t.decodeWaitMs,
    vaeEncode: t.vaeEncodeMs,
    inversion: t.inversionMs,
    edit: t.editMs,
    vaeDecode: t.vaeDecodeMs,
    encode: t.encodeWaitMs,
    other: t.otherMs,
  };
  const shares = Object.fromEntries(STAGES.map((s) => [s, r3(stagesMs[s] / t.totalMs)])) as Record<StageName, number>;
  return {
    name,
    model,
    provider,
    method: req.method ?? 'inversion',
    frames: job.frames,
    batchSize: req.batchSize ?? 4,
    steps: req.steps ?? DEFAULT_STEPS,
    workingSize: `${job.workingSize.width}x${job.workingSize.height}`,
    totalMs: r1(t.totalMs),
    stagesMs: Object.fromEntries(STAGES.map((s) => [s, r1(stagesMs[s])])) as Record<StageName, number>,
    shares,
    unetCalls: t.unetRuns,
    unetMs: r1(t.unetMs),
    unetEvalsPerFrame: r1(job.unetEvaluations / job.frames),
    ortShare: r3((t.unetMs + t.vaeMs + t.textMs) / t.totalMs),
    loopJsMs: r1(Math.max(0, t.inversionMs + t.editMs - t.unetMs)),
    framesPerSec: r3(job.frames / (t.totalMs / 1000)),
    peakRssMb: r1(peakRssMb),
    textMs: r1(t.textMs),
    transferMs: r1(t.transferMs),
    cacheMs: r1(t.cacheMs),
    finishMs: r1(t.finishMs),
  };
}

function medianIndex(values: number[]): number {
  const order = values.map((v, i) => [v, i] as const).sort((a, b) => a[0] - b[0]);
  return order[Math.floor((order.length - 1) / 2)][1];
}

function setOrtShare(report: BenchReport, c: CaseReport): void {
  report.summary.ortShare = c.ortShare;
  report.details.ortShare = {
    case: c.name,
    ortMs: r1(c.ortShare * c.totalMs),
    totalMs: c.totalMs,
    unetOnlyShare: r3(c.unetMs / c.totalMs),
  };
}

function request(
  clip: string,
  frames: number,
  fps: { num: number; den: number },
  out: string,
  over: Partial<JobRequestInput>,
): JobRequestInput {
  return {
    source: { path: clip, in: 0, out: (frames * fps.den) / fps.num },
    prompt: TARGET_PROMPT,
    sourcePrompt: SOURCE_PROMPT,
    seed: 1,
    output: { path: out, overwrite: true },
    ...over,
  };
}

function machine(): BenchReport['machine'] {
  let onnxruntime = 'unknown';
  try {
    onnxruntime = (
      JSON.parse(fs.readFileSync(require.resolve('onnxruntime-node/package.json'), 'utf8')) as { version: string }
    ).version;
  } catch {
    // reported as unknown
  }
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    onnxruntime,
  };
}

function gitCommit(): string | undefined {
  try {
    const root = path.resolve(__dirname, __filename.endsWith('.ts') ? '../../..' : '../../../..');
    const head = fs.readFileSync(path.join(root, '.git', 'HEAD'), 'utf8').trim();
    if (!head.startsWith('ref: ')) return head.slice(0, 12);
    const ref = path.join(root, '.git', head.slice(5));
    return fs.existsSync(ref) ? fs.readFileSync(ref, 'utf8').trim().slice(0, 12) : undefined;
  } catch {
    return undefined;
  }
}

export async function runBench(o: BenchOptions): Promise<BenchReport> {
  const started = performance.now();
  const log = o.log ?? (() => undefined);
  fs.mkdirSync(o.dir, { recursive: true });
  const work = fs.mkdtempSync(path.join(o.dir, 'run-'));
  const clips = path.join(o.dir, 'clips');
  const settings = { threads: o.threads };
  const models = {} as Record<BenchModel, string>;
  const model = (name: BenchModel) => (models[name] ??= generateBenchModel(path.join(work, 'models'), name));
  let outN = 0;
  const out = () => path.join(work, 'out', `job-${++outN}.mp4`);
  fs.mkdirSync(path.join(work, 'out'), { recursive: true });
  const report: BenchReport = {
    date: new Date().toISOString(),
    version: VERSION,
    commit: gitCommit(),
    machine: machine(),
    providers: { backends: [], gpu: [] },
    summary: {
      ortShare: null,
      memoryFlatness: null,
      reEditRatio: null,
      unetEvalsPerFrame: { inversion: null, inversionNoCfg: null, sdedit: null, fast: null },
      healthP99Ms: null,
      burstHealthP99Ms: null,
      burstRefusedP99Ms: null,
    },
    targets: TARGETS,
    cases: [],
    gpuCases: [],
    details: {},
    wallSeconds: 0,
  };

  try {
    report.providers = await probeProviders(model('tiny-sd'));
    const fps = { num: 24, den: 1 };
    const square: ClipSpec = { width: 512, height: 512, fps, frames: 48 };
    const one = async (
      name: string,
      m: BenchModel,
      req: JobRequestInput,
      providers?: ProviderName[],
    ): Promise<CaseReport> => {
      log(`  ${name}`);
      const r = await runChild({ modelDir: model(m), settings: { ...settings, providers }, jobs: [req] });
      return caseReport(name, m, r.provider, req, r.jobs[0], r.maxRssMb);
    };

    if (o.sections.includes('table')) {
      log('per-stage table');
      const clip = await ensureClip(clips, square);
      // sd-bench costs ~0.15–0.3 s per UNet item and ~1.5 s of VAE per 512² frame on 2 cores, and a UNet batch of 16
      // (4 frames × 4 branches) needs ~9 GiB for its 4096-token attentions, so it gets fewer frames, steps and a smaller
      // batch. 8 frames are half a chunk, 24 frames two chunks (CHUNK_FRAMES = 16, the second overlapping the first).
      const plan: { m: BenchModel; lengths: number[]; steps: number; batches: number[] }[] = [
        { m: 'tiny-sd', lengths: [8, 24], steps: 10, batches: [1, 4] },
        { m: 'oracle', lengths: [8, 24], steps: 10, batches: [1, 4] },
        { m: 'sd-bench', lengths: [2, 3], steps: 2, batches: [1, 2] },
      ];
      for (const p of plan) {
        for (const frames of p.lengths) {
          for (const batchSize of p.batches) {
            const req = request(clip, frames, fps, out(), { steps: p.steps, batchSize });
            report.cases.push(await one(`${p.m} ${frames}f b${batchSize}`, p.m, req));
          }
        }
      }
      const usable = report.providers.gpu.filter((g) => g.usable);
      for (const g of usable) {
        for (const frames of [2, 3]) {
          for (const batchSize of [1, 2]) {
            const req = request(clip, frames, fps, out(), { steps: 2, batchSize });
            report.gpuCases.push(
              await one(`sd-bench ${frames}f b${batchSize} ${g.name}`, 'sd-bench', req, [g.name as ProviderName]),
            );
          }
        }
      }
      // Cold engine (each case is a fresh process); the warm figure of the re-edit section replaces this one.
      const sd = report.cases
        .filter((c) => c.model === 'sd-bench')
        .sort((a, b) => b.frames * 10 + b.batchSize - (a.frames * 10 + a.batchSize))[0];
      if (sd) setOrtShare(report, sd);
    }

    if (o.sections.includes('reedit')) {
      log('re-edit (inversion cached) and ORT share, sd-bench, warm engine');
      const clip = await ensureClip(clips, square);
      // Other load on the machine comes and goes within seconds and only ever adds time, so each kind of job runs once
      // per round over several rounds on different ranges, and the ratio is taken between the fastest of each kind.
      const rounds = 3;
      const at = (startFrame: number, over: Partial<JobRequestInput>) => {
        const r = request(clip, 1, fps, out(), { steps: 4, batchSize: 1, ...over });
        return { ...r, source: { ...r.source, in: startFrame / fps.num, out: (startFrame + 1) / fps.num } };
      };
      // ORT's first run at each input shape plans memory and is slower; a 1-step job at the same shapes (another cache
      // key) warms every session first, as in a server that has run jobs before.
      const jobs: JobRequestInput[] = [at(40, { steps: 1 }), at(40, { steps: 1, directInversion: false })];
      const skip = jobs.length;
      for (let i = 0; i < rounds; i++) {
        // The re-edit finds the inversion and the direct-inversion source steps in the cache: only the target branches run.
        jobs.push(at(i * 8, {}), at(i * 8, { prompt: OTHER_PROMPT }));
      }
      const r = await runChild({ modelDir: model('sd-bench'), settings, jobs, cacheDir: path.join(work, 'cache') });
      const rows = Array.from({ length: rounds }, (_, i) => {
        const k = skip + 2 * i;
        const [f, s2] = [r.jobs[k], r.jobs[k + 1]];
        const name = (what: string) => `sd-bench 1f ${what}, round ${i + 1}`;
        return {
          first: caseReport(name('first edit'), 'sd-bench', r.provider, jobs[k], f, r.maxRssMb),
          second: caseReport(name('re-edit'), 'sd-bench', r.provider, jobs[k + 1], s2, r.maxRssMb),
          hit: s2.inversionCacheHit,
        };
      });
      const fastest = (pick: (x: (typeof rows)[number]) => CaseReport) =>
        rows.map(pick).sort((a, b) => a.totalMs - b.totalMs)[0];
      const [first, second] = [fastest((x) => x.first), fastest((x) => x.second)];
      report.details.reEdit = {
        first,
        second,
        secondCacheHit: rows.every((x) => x.hit),
        rounds: rows.map((x) => r3(x.second.totalMs / x.first.totalMs)),
        ortShareRounds: rows.map((x) => x.first.ortShare),
      };
      report.summary.reEditRatio = r3(second.totalMs / first.totalMs);
      setOrtShare(report, rows[medianIndex(rows.map((x) => x.first.ortShare))].first);
    }

    if (o.sections.includes('evals')) {
      log('UNet evaluations per frame at default settings');
      const clip = await ensureClip(clips, square);
      const counts: Record<string, { evalsPerFrame: number; settings: string }> = {};
      const measure = async (
        key: string,
        m: BenchModel,
        over: Partial<JobRequestInput>,
        settingsText: string,
        cacheRuns = 1,
      ) => {
        const jobs = Array.from({ length: cacheRuns }, (_, i) => ({
          ...request(clip, 1, fps, out(), over),
          ...(i ? { prompt: OTHER_PROMPT } : {}),
        }));
        const r = await runChild({
          modelDir: model(m),
          settings,
          jobs,
          cacheDir: cacheRuns > 1 ? path.join(work, `cache-${key}`) : undefined,
        });
        const job = r.jobs[cacheRuns - 1];
        counts[key] = { evalsPerFrame: job.unetEvaluations / job.frames, settings: settingsText };
      };
      await measure(
        'inversion',
        'oracle',
        {},
        `method inversion, ${DEFAULT_STEPS} steps, strength 1, guidance 7.5, direct inversion, with a source prompt`,
      );
      await measure(
        'inversionEmptySource',
        'oracle',
        { sourcePrompt: '' },
        'as inversion, source prompt left empty (the request default)',
      );
      await measure('inversionNoCfg', 'oracle', { guidance: 1 }, 'as inversion, guidance 1');
      await measure('reEdit', 'oracle', {}, 'as inversion, second edit of the same range (inversion cached)', 2);
      await measure(
        'sdedit',
        'oracle',
        { method: 'sdedit' },
        `method sdedit, ${DEFAULT_STEPS} steps, strength 0.6, guidance 7.5`,
      );
      await measure(
        'fast',
        'sd-turbo',
        { method: 'fast' },
        'method fast (2 steps, strength 0.5), no guidance batch; tiny sd-turbo variant',
      );
      await measure(
        'fastLcm',
        'lcm',
        { method: 'fast' },
        'method fast on the tiny lcm variant (guidance as its embedding input)',
      );
      report.details.unetEvals = counts;
      report.summary.unetEvalsPerFrame = {
        inversion: counts.inversion?.evalsPerFrame ?? null,
        inversionNoCfg: counts.inversionNoCfg?.evalsPerFrame ?? null,
        sdedit: counts.sdedit?.evalsPerFrame ?? null,
        fast: counts.fast?.evalsPerFrame ?? null,
      };
    }

    if (o.sections.includes('memory')) {
      log('memory flatness (5 s and 60 s of 1080p24, each in its own process)');
      const hd: ClipSpec = { width: 1920, height: 1080, fps, frames: 120 };
      const short = await ensureClip(clips, hd);
      const long = await ensureLoopedClip(clips, hd, 12);
      // The latent correction stage (consistency.latentCorrection, on by default) costs ~0.5 s per 224x128 frame in
      // JavaScript, which would make the 60 s run ~12 minutes; it works within a chunk, so it is off for both runs.
      const over: Partial<JobRequestInput> = { steps: 2, consistency: { latentCorrection: null } };
      const a = await one('oracle 1080p 5 s', 'oracle', request(short, 120, fps, out(), over));
      const b = await one('oracle 1080p 60 s', 'oracle', request(long, 1440, fps, out(), over));
      report.details.memory = {
        model:
          'oracle (128 px native: 1080p is edited at 224x128), inversion, 2 steps, guidance 7.5, latent correction off',
        clip5s: short,
        clip60s: long,
        short: a,
        long: b,
      };
      report.summary.memoryFlatness = r3(b.peakRssMb / a.peakRssMb);
    }

    if (o.sections.includes('health')) {
      log('server responsiveness (reshoot serve child, GET /v1/health while a job runs)');
      const runs: NonNullable<BenchReport['details']['health']> = [];
      const cli = distFile('../cli/main.js');
      const hd: ClipSpec = { width: 1920, height: 1080, fps, frames: 120 };
      const hdClip = await ensureClip(clips, hd);
      const sqClip = await ensureClip(clips, square);
      const cases: { name: string; m: BenchModel; req: JobRequestInput; settings: string }[] = [
        // Eight chunks, so per-chunk main-thread work (decode, encode, cache writes) recurs often enough to reach p99;
        // latent correction only lengthens the worker's part, so it is off here as in the memory runs.
        {
          name: 'oracle, 1080p 5 s',
          m: 'oracle',
          req: request(hdClip, 120, fps, out(), { steps: 4, consistency: { latentCorrection: null } }),
          settings: 'inversion, 4 steps, 120 frames of 1080p at 224x128 (8 chunks), latent correction off',
        },
        {
          name: 'sd-bench, 512² 8 frames',
          m: 'sd-bench',
          req: request(sqClip, 8, fps, out(), { method: 'fast', batchSize: 1 }),
          settings: 'fast, 2 steps, batch 1, 8 frames at 512x512',
        },
      ];
      for (const c of cases) {
        log(`  ${c.name}`);
        const h = await measureHealth({
          cli,
          modelDir: model(c.m),
          home: path.join(work, `serve-${runs.length}`),
          request: c.req,
          threads: o.threads,
        });
        runs.push({ ...h, name: c.name, settings: c.settings });
      }
      report.details.health = runs;
      report.summary.healthP99Ms = Math.max(...runs.map((r) => r.p99Ms));
    }

    if (o.sections.includes('burst')) {
      const count = 200;
      log(`submission burst (${count} jobs at once from one process, GET /v1/health every 10 ms from another)`);
      const small: ClipSpec = { width: 64, height: 48, fps, frames: 12 };
      const clip = await ensureClip(clips, small);
      const b = await measureBurst({
        cli: distFile('../cli/main.js'),
        client: distFile('burst-client.js'),
        modelDir: model('oracle'),
        home: path.join(work, 'serve-burst'),
        job: request(clip, 12, fps, out(), { steps: 4 }),
        outputPrefix: path.join(work, 'out', 'burst'),
        count,
        threads: o.threads,
      });
      report.details.burst = {
        ...b,
        settings: `${count} submissions of a 12-frame 64x48 oracle edit, queue bound 100`,
      };
      report.summary.burstHealthP99Ms = b.health.p99Ms;
      report.summary.burstRefusedP99Ms = b.refused.p99Ms;
    }

    if (o.unetCalls) {
      log('UNet call times');
      report.unetCallRuns = o.unetRuns ?? 10;
      report.unetCalls = await benchUnetCalls(report.unetCallRuns, path.join(work, 'models'));
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  report.wallSeconds = r1((performance.now() - started) / 1000);
  return report;
}
