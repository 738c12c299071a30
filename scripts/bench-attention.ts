// What the attention-level methods cost on sd-bench (a 512-px SD-shaped UNet, random weights): per frame, the edit's
// wall time, UNet time, UNet evaluations, the share of wall time inside ONNX Runtime, and the process's peak RSS, for
// each setting against the methods off. Each setting runs in a process of its own, so peak RSS is its own.
// `node dist/scripts/bench-attention.js [--model DIR] [--frames N] [--steps N] [--only NAME,NAME…]` (generates
// sd-bench into a temporary folder when no model is given; --only runs the settings whose names start so).
import { fork } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { imageBatch } from '../engine/src/diffusion/images';
import { editFromInversion, invertFrames } from '../engine/src/editing/pipelines/inversion-edit';
import type { EditParams } from '../engine/src/editing/types';
import { generateSdBench } from '../engine/src/models/generate/tiny-sd';
import { loadDiffusionModel } from '../engine/src/models/sd-model';

const SETTINGS: Record<string, Partial<EditParams>> = {
  off: {},
  'cross-frame first, extend, all layers': { crossFrame: { anchors: 'first', mode: 'extend', layers: 'all' } },
  'cross-frame first, replace, all layers': { crossFrame: { anchors: 'first', mode: 'replace', layers: 'all' } },
  'cross-frame first+previous, replace, all layers': {
    crossFrame: { anchors: 'first+previous', mode: 'replace', layers: 'all' },
  },
  'cross-frame first, extend, decoder only': { crossFrame: { anchors: 'first', mode: 'extend', layers: 'decoder' } },
  'off (3 frames a call)': { batchSize: 3 },
  'cross-frame all in a call (3 frames a call)': {
    crossFrame: { anchors: 'all', mode: 'extend', layers: 'all' },
    batchSize: 3,
  },
  'structure lock balanced (0.8)': { structure: 0.8 },
  'structure lock keep structure (1)': { structure: 1 },
  'word swap 0.8': { wordSwap: { steps: 0.8 } },
  'reweight blue × 2': { reweight: [{ word: 'blue', scale: 2 }] },
  'structure lock 0.8 + word swap 0.8': { structure: 0.8, wordSwap: { steps: 0.8 } },
  'tokenflow 1 in 8': { tokenFlow: { keyframeEvery: 8 } },
  'tokenflow 1 in 2': { tokenFlow: { keyframeEvery: 2 } },
};

interface Figures {
  setting: string;
  frames: number;
  steps: number;
  editMsPerFrame: number;
  unetMsPerFrame: number;
  unetEvalsPerFrame: number;
  ortShare: number;
  peakRssMiB: number;
}

async function one(modelDir: string, setting: string, n: number, steps: number): Promise<Figures> {
  const model = await loadDiffusionModel(modelDir, { threads: os.availableParallelism() });
  try {
    const size = model.info.nativeSize;
    const per = 3 * size * size;
    const clip = imageBatch(
      n,
      size,
      size,
      Float32Array.from({ length: n * per }, (_, i) => Math.sin((i % per) * 0.013 + Math.floor(i / per) * 0.4)),
    );
    const traj = await invertFrames(model, clip, { sourcePrompt: 'a red car', steps, strength: 1, batchSize: 1 });
    const p: EditParams = {
      prompt: 'a blue car',
      sourcePrompt: 'a red car',
      guidance: 7.5,
      directInversion: true,
      batchSize: 1,
      ...SETTINGS[setting],
    };
    // Warm: the first edit with the setting rewrites and opens its UNet variant.
    await editFromInversion(model, traj, p);
    const s0 = { ...model.stats };
    const t0 = performance.now();
    await editFromInversion(model, traj, p);
    const wall = performance.now() - t0;
    const ort = model.stats.unetMs - s0.unetMs + model.stats.vaeMs - s0.vaeMs + model.stats.textMs - s0.textMs;
    return {
      setting,
      frames: n,
      steps,
      editMsPerFrame: Math.round(wall / n),
      unetMsPerFrame: Math.round((model.stats.unetMs - s0.unetMs) / n),
      unetEvalsPerFrame: (model.stats.unetEvals - s0.unetEvals) / n,
      ortShare: +(ort / wall).toFixed(3),
      peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
    };
  } finally {
    await model.release();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      frames: { type: 'string' },
      steps: { type: 'string' },
      one: { type: 'string' },
      only: { type: 'string' },
    },
  });
  const frames = Number(values.frames ?? 3);
  const steps = Number(values.steps ?? 4);
  if (values.one !== undefined) {
    const r = await one(values.model!, values.one, frames, steps);
    process.send!(r);
    return;
  }
  let modelDir = values.model;
  if (!modelDir) {
    modelDir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'bench-attention-')), 'sd-bench');
    generateSdBench(modelDir);
  }
  const rows: Figures[] = [];
  const only = values.only?.split(',').map((t) => t.trim());
  for (const setting of Object.keys(SETTINGS).filter((k) => !only || only.some((o) => k.startsWith(o)))) {
    const args = ['--model', modelDir, '--frames', String(frames), '--steps', String(steps), '--one', setting];
    const r = await new Promise<Figures>((resolve, reject) => {
      const child = fork(__filename, args, { stdio: 'inherit' });
      child.once('message', (m) => resolve(m as Figures));
      child.once('exit', (code) => code !== 0 && reject(new Error(`${setting}: exit ${code}`)));
    });
    rows.push(r);
    console.error(JSON.stringify(r));
  }
  console.log(JSON.stringify({ date: new Date().toISOString(), cpu: os.cpus()[0]?.model, rows }, null, 2));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
