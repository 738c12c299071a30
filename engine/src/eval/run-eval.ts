// `reshoot eval` without the command line: builds the clips (the synthetic suite, or a real clip with estimated
// flow), runs the method table on each, measures peak memory and CLIP scores when asked, and writes the report.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ImageBatch } from '../diffusion/images';
import { decodeFrames } from '../media/decode';
import { probeMedia } from '../media/probe';
import { workingSize } from '../media/working-size';
import { resolveModel } from '../models/default-model';
import { generateOracleAttn } from '../models/generate/oracle-attn';
import { loadDiffusionModel, type DiffusionModel } from '../models/sd-model';
import { VERSION } from '../version';
import { ClipScorer, NO_CLIP_MODEL } from './clip-score';
import {
  aggregate,
  db,
  evaluateMethod,
  methodTable,
  SDEDIT_STRENGTH,
  type EvalClip,
  type MethodResult,
  type RunSettings,
} from './harness';
import { psnr } from './metrics';
import { estimateFlow } from '../flow/optical-flow';
import { lineChartPng } from './pictures';
import { markdownReport, serialisable, writeClipPictures, type EvalReport } from './report';
import { measurePeakRss, type RssMeasurement } from './rss';
import { makeSuite, type SuiteName } from './suite';
import { evaluateUserDefaults, type UserDefaultsReport } from './user-defaults';

export interface EvalOptions {
  /** The synthetic suite to run; ignored when `clipFile` is given. */
  suite?: SuiteName;
  /** A real clip: flow is estimated (pyramidal Lucas–Kanade), there is no ground-truth mask. */
  clipFile?: string;
  prompt?: string;
  sourcePrompt?: string;
  /** Real clip: first second and number of frames to read. */
  startSec?: number;
  frames?: number;
  outDir: string;
  modelDir?: string;
  /** Peak-memory probe: false to skip; numbers override the 5 s / 60 s defaults. */
  rss?: false | { shortSec?: number; longSec?: number; fps?: number; steps?: number };
  clipModel?: string;
  /**
   * The job defaults on a user-sized clip (user-defaults.ts): on by default with a synthetic suite (its figures assume
   * the oracle's prompt grammar); false to skip, a number for that many frames (default 4, 2 for the tiny suite).
   */
  userDefaults?: boolean | number;
  /** Only these method ids (the job default is always run). */
  methods?: string[];
  steps?: number;
  batchSize?: number;
  threads?: number;
  command: string;
  date?: string;
  log?: (line: string) => void;
}

async function realClip(model: DiffusionModel, o: EvalOptions): Promise<EvalClip> {
  const file = path.resolve(o.clipFile!);
  const info = await probeMedia(file);
  const fps = info.video.fps;
  const startFrame = Math.round(((o.startSec ?? 0) * fps.num) / fps.den);
  const count = Math.min(o.frames ?? 16, info.video.frameCount - startFrame);
  if (count < 2) throw new Error(`${file}: needs at least 2 frames after ${o.startSec ?? 0} s`);
  const multiple = model.info.vaeScale === 1 ? 8 : model.info.vaeScale * 8;
  const size = workingSize(info.video.displayWidth, info.video.displayHeight, model.info.nativeSize, multiple);
  const parts: ImageBatch[] = [];
  for await (const b of decodeFrames(file, {
    startFrame,
    frameCount: count,
    fps,
    width: size.width,
    height: size.height,
    chunkFrames: count,
    colorMatrix: info.video.colorMatrix,
  }))
    parts.push(b);
  const per = 3 * size.width * size.height;
  const data = new Float32Array(count * per);
  parts.reduce((at, b) => (data.set(b.data, at), at + b.data.length), 0);
  const frames: ImageBatch = { n: count, height: size.height, width: size.width, data };
  const { flow, occlusion } = estimateFlow(frames);
  return {
    name:
      path
        .basename(file)
        .replace(/\.[^.]+$/, '')
        .replace(/[^A-Za-z0-9_-]+/g, '-') || 'clip',
    description: `${path.basename(file)}, frames ${startFrame}..${startFrame + count - 1}`,
    frames,
    sourcePrompt: o.sourcePrompt ?? '',
    prompt: o.prompt!,
    flow,
    occlusion,
    flowSource: 'lucas-kanade',
  };
}

function machine(): EvalReport['machine'] {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model?.trim() ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    platform: `${os.platform()} ${os.release()}`,
    node: process.versions.node,
  };
}

export async function runEvaluation(o: EvalOptions): Promise<EvalReport> {
  const log = o.log ?? (() => undefined);
  const modelDir = o.modelDir ?? resolveModel();
  const model = await loadDiffusionModel(modelDir, { threads: o.threads });
  const models = new Map<string | undefined, DiffusionModel>();
  const cleanups: (() => unknown)[] = [];
  const notes: string[] = [];
  try {
    const suite = o.clipFile ? undefined : makeSuite(o.suite ?? 'synthetic');
    const settings: RunSettings = {
      steps: o.steps ?? suite?.steps ?? 50,
      chunk: suite?.chunk ?? 16,
      batchSize: o.batchSize ?? 8,
    };
    const clips: EvalClip[] = suite
      ? suite.clips.map((c) => ({
          name: c.name,
          description: c.description,
          frames: c.scene.frames,
          sourcePrompt: c.sourcePrompt,
          prompt: c.prompt,
          objectMask: c.scene.objectMask,
          target: c.target,
          sourceColour: c.sourceColour,
          flow: c.scene.flow,
          occlusion: c.scene.occlusion,
          flowSource: 'exact',
        }))
      : [await realClip(model, o)];
    const table = methodTable();
    const methods = table.methods
      .filter((m) => !o.methods || o.methods.includes(m.id) || m.id === table.defaultId)
      // oracle-attn reads the oracle's prompt grammar: its rows mean something on the synthetic suites only.
      .filter((m) => !m.model || suite);
    if (methods.some((m) => m.model === 'oracle-attn')) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reshoot-eval-oracle-attn-'));
      cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
      generateOracleAttn(dir);
      const attn = await loadDiffusionModel(dir, { threads: o.threads });
      cleanups.push(() => attn.release());
      models.set('oracle-attn', attn);
    }
    const perClip = new Map<string, Map<string, MethodResult>>();
    const inversionRoundTrip: number[] = [];
    const pictures: string[] = [];
    fs.mkdirSync(o.outDir, { recursive: true });
    for (const clip of clips) {
      const results = new Map<string, MethodResult>();
      for (const m of methods) {
        if (m.chunkOverlap !== undefined && clip.frames.n <= settings.chunk) continue;
        if (m.trueMask && !clip.objectMask) continue;
        const r = await evaluateMethod(models.get(m.model) ?? model, m, clip, settings, {
          roundTrip: m.id === table.defaultId,
        });
        results.set(m.id, r);
        log(
          `${clip.name} ${m.id}: warp error ratio ${r.warpErrorRatio.toFixed(3)}${r.autoMaskIoU !== undefined ? `, IoU ${r.autoMaskIoU.toFixed(3)}` : ''}${r.backgroundPsnr !== undefined ? `, background ${r.backgroundPsnr.toFixed(1)} dB` : ''}, ${r.seconds.toFixed(1)} s`,
        );
      }
      // The inversion's own accuracy: plain DDIM there and back, no direct inversion, no mask.
      const plain = await evaluateMethod(
        model,
        { id: 'plain-ddim', label: '', description: '', kind: 'inversion', autoMask: false, plainDdim: true },
        { ...clip, prompt: clip.sourcePrompt },
        settings,
      );
      inversionRoundTrip.push(db(psnr(plain.output!, clip.frames)));
      perClip.set(clip.name, results);
      pictures.push(
        ...writeClipPictures(
          o.outDir,
          clip,
          methods,
          results,
          ['inversion', 'inversion+mask', '+latent-correction', 'default'].filter((id) => results.has(id)),
        ),
      );
    }

    // The method table runs at guidance 1; this is the edit a user gets with nothing changed.
    let userDefaults: UserDefaultsReport | null = null;
    if (suite && o.userDefaults !== false) {
      const frames = typeof o.userDefaults === 'number' ? o.userDefaults : suite.name === 'tiny' ? 2 : 4;
      log(`job defaults on a user-sized clip (${frames} frames)`);
      userDefaults = await evaluateUserDefaults(model, { frames, batchSize: settings.batchSize, steps: o.steps });
      const u = userDefaults;
      log(
        `job defaults: object edited ${u.autoMask.objectEdited.toFixed(3)} (no mask ${u.noMask.objectEdited.toFixed(3)}), background ${u.autoMask.backgroundPsnr.toFixed(1)} dB (no mask ${u.noMask.backgroundPsnr.toFixed(1)} dB)`,
      );
    }

    let clipMetrics: unknown = NO_CLIP_MODEL;
    if (o.clipModel) {
      const scorer = await ClipScorer.open(o.clipModel);
      const scores: Record<string, Record<string, unknown>> = {};
      try {
        for (const clip of clips) {
          scores[clip.name] = { source: await scorer.score(clip.frames, clip.prompt) };
          for (const [id, r] of perClip.get(clip.name)!)
            scores[clip.name][id] = await scorer.score(r.output!, clip.prompt);
        }
      } finally {
        await scorer.release();
      }
      clipMetrics = {
        model: o.clipModel,
        note: 'plain cosine similarities: frameConsistency over consecutive frames, textAlignment to the target prompt',
        scores,
      };
    }

    let rss: RssMeasurement | undefined;
    if (o.rss !== false) {
      log('peak memory: short and long clip through the job runner, each in its own process');
      rss = await measurePeakRss({
        modelDir,
        workDir: path.join(o.outDir, 'rss-work'),
        ...(o.rss ?? {}),
        threads: o.threads,
      });
      fs.rmSync(path.join(o.outDir, 'rss-work'), { recursive: true, force: true });
      const chart = lineChartPng(
        [
          { label: `${rss.long.durationSec} s clip`, values: rss.long.rssPerChunkMiB.map((v) => v ?? NaN) },
          { label: `${rss.short.durationSec} s clip`, values: rss.short.rssPerChunkMiB.map((v) => v ?? NaN) },
        ],
        {
          title: 'RESIDENT MEMORY (MIB) WHILE EDITING EACH 16-FRAME STRETCH, JOB RUNNER IN ITS OWN PROCESS',
          xLabel: 'STRETCH',
        },
      );
      fs.mkdirSync(path.join(o.outDir, 'pictures'), { recursive: true });
      fs.writeFileSync(path.join(o.outDir, 'pictures', 'peak-rss.png'), chart);
      pictures.push(path.join('pictures', 'peak-rss.png'));
    } else notes.push('peak memory not measured (--no-rss)');

    const all = (id: string) => clips.map((c) => perClip.get(c.name)!.get(id)).filter((r): r is MethodResult => !!r);
    const methodRows = methods
      .map((m) => ({ id: m.id, label: m.label, description: m.description, metrics: roundAll(aggregate(all(m.id))) }))
      .filter((m) => m.metrics.clips > 0);
    const def = aggregate(all(table.defaultId));
    const plainInv = aggregate(all('inversion'));
    const value = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? null : +v.toPrecision(5));
    const summary = {
      method: table.defaultId,
      roundTripPsnr: value(def.roundTripPsnr),
      inversionRoundTripPsnr: value(inversionRoundTrip.reduce((a, b) => a + b, 0) / inversionRoundTrip.length),
      autoMaskIoU: value(def.autoMaskIoU),
      backgroundPsnr: value(def.backgroundPsnr),
      backgroundPsnrNoMask: suite ? value(plainInv.backgroundPsnr) : null,
      warpErrorRatio: value(def.warpErrorRatio),
      peakRssRatio: rss ? value(rss.ratio) : null,
      defaultsObjectEdited: userDefaults ? value(userDefaults.autoMask.objectEdited) : null,
      defaultsObjectEditedNoMask: userDefaults ? value(userDefaults.noMask.objectEdited) : null,
      defaultsBackgroundPsnr: userDefaults ? value(userDefaults.autoMask.backgroundPsnr) : null,
      defaultsBackgroundPsnrNoMask: userDefaults ? value(userDefaults.noMask.backgroundPsnr) : null,
      defaultUnetEvalsPerFrame: userDefaults ? value(userDefaults.noMask.unetEvalsPerFrame) : null,
      defaultReEditUnetEvalsPerFrame: userDefaults ? value(userDefaults.reEditUnetEvalsPerFrame) : null,
      // Word swap on oracle-attn against the exact edit of the object (harness.ts, exactEditError).
      wordSwapColourError: value(aggregate(all('word-swap')).exactEditError),
    };
    if (!suite)
      notes.push(
        "real clip: no ground truth, so no mask IoU or edit accuracy; background PSNR is outside each method's own mask; warp error uses Lucas–Kanade flow of the source",
      );
    notes.push('PSNR of identical images is infinite; report.json stores it as 100 dB');
    const report: EvalReport = {
      tool: 'reshoot eval',
      version: VERSION,
      suite: suite ? suite.name : `clip ${path.basename(o.clipFile!)}`,
      date: o.date ?? new Date().toISOString().slice(0, 10),
      command: o.command,
      machine: machine(),
      model: { name: model.info.name, dir: modelDir },
      settings: {
        steps: settings.steps,
        guidance: 1,
        strength: 1,
        sdeditStrength: SDEDIT_STRENGTH,
        chunk: settings.chunk,
        batchSize: settings.batchSize,
        size: `${clips[0].frames.width}x${clips[0].frames.height}`,
      },
      summary,
      methods: methodRows,
      clips: clips.map((c) => {
        const results = perClip.get(c.name)!;
        return {
          name: c.name,
          description: c.description,
          frames: c.frames.n,
          width: c.frames.width,
          height: c.frames.height,
          flow: c.flowSource,
          results: Object.fromEntries([...results].map(([id, r]) => [id, serialisable(r)])),
          perPairWarpError: {
            source: results
              .values()
              .next()
              .value!.perPairWarpErrorSource.map((v) => +v.toPrecision(4)),
            ...Object.fromEntries(
              [...results].map(([id, r]) => [id, r.perPairWarpError.map((v) => +v.toPrecision(4))]),
            ),
          },
        };
      }),
      userDefaults,
      peakRss: rss ?? null,
      clipMetrics,
      notes,
      pictures,
    };
    fs.writeFileSync(path.join(o.outDir, 'report.json'), JSON.stringify(report, null, 2) + '\n');
    fs.writeFileSync(path.join(o.outDir, 'report.md'), markdownReport(report, methods));
    return report;
  } finally {
    for (const c of cleanups.reverse()) await c();
    await model.release();
  }
}

function roundAll(m: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(m).map(([k, v]) => [k, Number.isFinite(v) ? +v.toPrecision(5) : v]));
}
