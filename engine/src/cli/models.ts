// `reshoot models check DIR`: what loads, which exporter variant, which provider.
import { probeKey } from '../jobs/memory-plan';
import { memoryCost } from '../models/memory-probe';
import { parseProviders } from '../models/providers';
import { loadDiffusionModel, type ModelInfo } from '../models/sd-model';
import { resolveModel } from '../models/default-model';
import * as path from 'node:path';
import { modelsDir } from '../config/paths';
import { HubPullError, pullModel } from '../models/hub-pull';
import { CliError, parse } from './args';
import { ffmpegLine } from './doctor';

const USAGE =
  'usage: reshoot models check DIR [--provider LIST] [--json]\n       reshoot models pull REPO_ID [--revision REV] [--dest DIR]';

export async function runModels(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'pull') return runPull(rest);
  if (sub !== 'check') throw new CliError(USAGE);
  const { values, positionals } = parse(rest, { provider: { type: 'string' }, json: { type: 'boolean' } }, true);
  if (positionals.length !== 1) throw new CliError('usage: reshoot models check DIR [--provider LIST] [--json]');
  const dir = resolveModel(positionals[0]);
  const model = await loadDiffusionModel(dir, { providers: values.provider ? parseProviders(values.provider) : [] });
  const { info, scheduler } = model;
  await model.release();
  // Measured after the model is released, so the probe's own load is not counted on top of this one.
  const memory = await nativeMemory(info);
  if (values.json) {
    const sched = {
      className: scheduler.className,
      predictionType: scheduler.predictionType,
      timestepSpacing: scheduler.timestepSpacing,
    };
    console.log(JSON.stringify({ ok: true, info, scheduler: sched, memory }, null, 2));
    return 0;
  }
  const lines = [
    `model      ${info.dir}`,
    `provider   ${info.provider}${info.providerFallbacks.length ? ` (fell back: ${info.providerFallbacks.join('; ')})` : ''}`,
    `latents    ${info.latentChannels} channels, VAE factor ${info.vaeScale}, scaling ${info.scalingFactor}, native ${info.nativeSize}px`,
    `text       ${info.variant.inputIds}, width ${info.hiddenSize}, ${info.sequenceLength} tokens`,
    `unet       timestep ${info.variant.timestep}, output ${info.variant.unetOutput}${info.timestepCondDim ? `, timestep_cond ${info.timestepCondDim}` : ''}${info.fp16 ? ', fp16 I/O' : ''}`,
    `vae        encoder → ${info.variant.vaeEncoderOutput}; decoder ${info.variant.vaeDecoderInput} → ${info.variant.vaeDecoderOutput}`,
    `features   ${info.decoderFeatures ? `decoder features ${info.decoderFeatures} (frame correspondences)` : `latents for frame correspondences: ${info.decoderFeaturesNote}`}`,
    `attention  ${attentionLine(info.attention)}`,
    `memory     ${memoryLine(memory)}`,
    `scheduler  ${scheduler.className}, ${scheduler.predictionType}, ${scheduler.timestepSpacing} spacing`,
    `ffmpeg     ${ffmpegLine()}`,
  ];
  if (info.vaeEncoderNote) lines.push(`vae note   ${info.vaeEncoderNote}`);
  const ext = Object.entries(info.variant.externalData).map(([c, f]) => `${c}/${f}`);
  if (ext.length) lines.push(`data       ${ext.join(', ')}`);
  console.log(lines.join('\n'));
  return 0;
}

type NativeMemory =
  | { measured: true; latent: number; baseBytes: number; unetItemBytes: number; measureMs: number }
  | { measured: false; reason: string };

/** Peak memory at the native size (models/memory-probe.ts): what the model needs, and each UNet batch item more. */
async function nativeMemory(info: ModelInfo): Promise<NativeMemory> {
  if (info.provider !== 'cpu')
    return {
      measured: false,
      reason: `not measured on ${info.provider}: the probe sees system memory, not the device's`,
    };
  const latent = Math.round(info.nativeSize / info.vaeScale);
  try {
    const cost = await memoryCost(probeKey(info, { height: latent, width: latent }, 1));
    return {
      measured: true,
      latent,
      baseBytes: cost.baseBytes,
      unetItemBytes: cost.unetItemBytes,
      measureMs: cost.measureMs,
    };
  } catch (err) {
    // The rest of the check stands: the model loaded.
    return { measured: false, reason: `not measured: ${(err as Error).message}` };
  }
}

function memoryLine(m: NativeMemory): string {
  if (!m.measured) return m.reason;
  const mib = (b: number) => `${Math.round(b / 2 ** 20)} MiB`;
  return `${mib(m.baseBytes)} plus ${mib(m.unetItemBytes)} per UNet batch item at ${m.latent}×${m.latent} latents (peak resident memory, measured once and cached)`;
}

/** `reshoot models pull REPO_ID`: a diffusers-ONNX repository from the Hugging Face Hub into the models folder. */
async function runPull(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    { revision: { type: 'string' }, dest: { type: 'string' }, json: { type: 'boolean' } },
    true,
  );
  if (positionals.length !== 1) throw new CliError(USAGE);
  const repoId = positionals[0];
  const destDir = path.resolve(values.dest ?? path.join(modelsDir(), repoId.replace('/', '--')));
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once('SIGINT', stop);
  let lastPrint = 0;
  try {
    const result = await pullModel({
      repoId,
      revision: values.revision,
      destDir,
      signal: controller.signal,
      onProgress: (p) => {
        if (values.json) return console.log(JSON.stringify({ event: 'progress', ...p }));
        if (Date.now() - lastPrint < 500 && p.bytes < p.total) return;
        lastPrint = Date.now();
        process.stderr.write(
          `${((100 * p.bytes) / Math.max(1, p.total)).toFixed(1).padStart(5)}%  ${(p.bytes / 2 ** 20).toFixed(1)} / ${(p.total / 2 ** 20).toFixed(1)} MiB  ${p.file}\n`,
        );
      },
    });
    if (values.json) console.log(JSON.stringify({ event: 'done', ...result }));
    else
      console.log(
        `pulled ${repoId} at ${result.commit} into ${result.dir} (${result.files.length} files, ${(result.downloadedBytes / 2 ** 20).toFixed(1)} MiB downloaded, ${(result.resumedBytes / 2 ** 20).toFixed(1)} MiB resumed)\ncheck it with: reshoot models check ${result.dir}`,
      );
    return 0;
  } catch (err) {
    if (err instanceof HubPullError) throw new CliError(err.message, 1);
    throw err;
  } finally {
    process.off('SIGINT', stop);
  }
}

/** "12 sites (6 self, 6 cross), torch1-baddbmm; self-attention at 1/1, 1/2 latent resolution, 8 heads", or why none. */
function attentionLine(a: ModelInfo['attention']): string {
  if (!a.sites.length) return `no usable sites (${a.pattern})${a.note ? `: ${a.note}` : ''}`;
  const self = a.sites.filter((s) => s.kind === 'self');
  const resolutions = [...new Set(a.sites.map((s) => `1/${s.resolution}`))].join(', ');
  const heads = [...new Set(a.sites.map((s) => s.heads))].join('/');
  return `${a.sites.length} sites (${self.length} self, ${a.sites.length - self.length} cross), ${a.pattern}; at ${resolutions} latent resolution, ${heads} heads`;
}
