// Per-UNet-call time of the generated models through the engine's own loader: the compute floor every job figure is
// read against. (Was scripts/bench-unet.ts; `reshoot bench --unet-only` and `node dist/scripts/bench-unet.js` run it.)
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { generateOracle } from '../models/generate/oracle';
import { generateSdBench, generateTinySd } from '../models/generate/tiny-sd';
import { loadDiffusionModel } from '../models/sd-model';

export interface UnetCallCase {
  model: string;
  latent: number;
  batch: number;
  threads: number;
  medianMs: number;
  minMs: number;
}

export async function benchUnetCalls(runs: number, dir?: string): Promise<UnetCallCase[]> {
  const root = dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'bench-unet-'));
  const models: { name: string; gen(dir: string): void; latent: number }[] = [
    { name: 'tiny-sd', gen: (d) => generateTinySd(d, 'optimum'), latent: 16 },
    { name: 'oracle', gen: generateOracle, latent: 128 },
    { name: 'oracle', gen: generateOracle, latent: 512 },
    { name: 'sd-bench', gen: (d) => generateSdBench(d), latent: 64 },
  ];
  const cases: UnetCallCase[] = [];
  try {
    for (const m of models) {
      const modelDir = path.join(root, `unet-${m.name}`);
      if (!fs.existsSync(modelDir)) m.gen(modelDir);
      for (const threads of [1, os.availableParallelism()]) {
        const model = await loadDiffusionModel(modelDir, { threads });
        try {
          const emb = await model.encodePrompts(['a red car on a gray road']);
          for (const batch of [1, 2]) {
            const C = model.info.latentChannels;
            const sample = Float32Array.from({ length: batch * C * m.latent * m.latent }, (_, i) => Math.sin(i));
            const e = new Float32Array(batch * emb.data.length);
            for (let b = 0; b < batch; b++) e.set(emb.data, b * emb.data.length);
            await model.predict(sample, batch, m.latent, m.latent, 500, e); // warm-up
            const times: number[] = [];
            for (let r = 0; r < runs; r++) {
              const t0 = performance.now();
              await model.predict(sample, batch, m.latent, m.latent, 500, e);
              times.push(performance.now() - t0);
            }
            times.sort((a, b) => a - b);
            cases.push({
              model: m.name,
              latent: m.latent,
              batch,
              threads,
              medianMs: +times[Math.floor(runs / 2)].toFixed(2),
              minMs: +times[0].toFixed(2),
            });
          }
        } finally {
          await model.release();
        }
      }
    }
  } finally {
    if (!dir) fs.rmSync(root, { recursive: true, force: true });
  }
  return cases;
}

export function formatUnetCalls(cases: UnetCallCase[], runs: number): string {
  const lines = [
    `UNet call time, CPU provider, ${runs} runs after one warm-up`,
    'model     latent   batch  threads   median ms   min ms',
  ];
  for (const c of cases) {
    lines.push(
      `${c.model.padEnd(9)} ${`${c.latent}x${c.latent}`.padStart(7)} ${String(c.batch).padStart(6)} ${String(c.threads).padStart(8)} ${c.medianMs.toFixed(2).padStart(11)} ${c.minMs.toFixed(2).padStart(8)}`,
    );
  }
  return lines.join('\n');
}
