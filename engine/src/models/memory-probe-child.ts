// The child of memory-probe.ts: loads the model with the engine's settings, runs the UNet at one and two batch items
// and the VAE at the job's size, and prints the process's peak resident memory after each step as JSON.
import type { MemoryProbeKey, ProbeReadings } from './memory-probe';
import { loadDiffusionModel } from './sd-model';

const peak = () => process.resourceUsage().maxRSS * 1024;

async function main(): Promise<void> {
  const k = JSON.parse(process.argv[2]) as MemoryProbeKey;
  const model = await loadDiffusionModel(k.modelDir, { providers: [k.provider], attentionSlices: k.slices });
  const { height: h, width: w } = k;
  const C = model.info.latentChannels;
  const s = model.info.vaeScale;
  const emb = await model.encodePrompts(['']);
  const loaded = peak();
  const unet = async (items: number) => {
    const e = new Float32Array(items * emb.data.length);
    for (let i = 0; i < items; i++) e.set(emb.data, i * emb.data.length);
    const sample = Float32Array.from({ length: items * C * h * w }, (_, i) => Math.sin(i));
    await model.predict(sample, items, h, w, 500, e);
    return peak();
  };
  const unet1 = await unet(1);
  const unet2 = await unet(2);
  const n = k.vaeFrames;
  const pixels = Float32Array.from({ length: n * 3 * h * s * w * s }, (_, i) => Math.sin(i * 0.01));
  const latents = await model.encodeImages({ n, height: h * s, width: w * s, data: pixels });
  await model.decodeLatents(latents, n, h, w);
  const readings: ProbeReadings = { loaded, unet1, unet2, vae: peak() };
  await model.release();
  process.stdout.write(JSON.stringify(readings));
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
