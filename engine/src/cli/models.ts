// `reshoot models check DIR`: what loads, which exporter variant, which provider.
import { parseProviders } from '../models/providers';
import { loadDiffusionModel } from '../models/sd-model';
import { resolveModel } from '../models/default-model';
import { CliError, parse } from './args';

export async function runModels(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'check') throw new CliError('usage: reshoot models check DIR [--provider LIST] [--json]');
  const { values, positionals } = parse(rest, { provider: { type: 'string' }, json: { type: 'boolean' } }, true);
  if (positionals.length !== 1) throw new CliError('usage: reshoot models check DIR [--provider LIST] [--json]');
  const dir = resolveModel(positionals[0]);
  const model = await loadDiffusionModel(dir, { providers: values.provider ? parseProviders(values.provider) : [] });
  try {
    const { info, scheduler } = model;
    if (values.json) {
      console.log(JSON.stringify({ ok: true, info, scheduler: { className: scheduler.className, predictionType: scheduler.predictionType, timestepSpacing: scheduler.timestepSpacing } }, null, 2));
      return 0;
    }
    const lines = [
      `model      ${info.dir}`,
      `provider   ${info.provider}${info.providerFallbacks.length ? ` (fell back: ${info.providerFallbacks.join('; ')})` : ''}`,
      `latents    ${info.latentChannels} channels, VAE factor ${info.vaeScale}, scaling ${info.scalingFactor}, native ${info.nativeSize}px`,
      `text       ${info.variant.inputIds}, width ${info.hiddenSize}, ${info.sequenceLength} tokens`,
      `unet       timestep ${info.variant.timestep}, output ${info.variant.unetOutput}${info.timestepCondDim ? `, timestep_cond ${info.timestepCondDim}` : ''}${info.fp16 ? ', fp16 I/O' : ''}`,
      `vae        encoder → ${info.variant.vaeEncoderOutput}; decoder ${info.variant.vaeDecoderInput} → ${info.variant.vaeDecoderOutput}`,
      `scheduler  ${scheduler.className}, ${scheduler.predictionType}, ${scheduler.timestepSpacing} spacing`,
    ];
    const ext = Object.entries(info.variant.externalData).map(([c, f]) => `${c}/${f}`);
    if (ext.length) lines.push(`data       ${ext.join(', ')}`);
    console.log(lines.join('\n'));
    return 0;
  } finally {
    await model.release();
  }
}
