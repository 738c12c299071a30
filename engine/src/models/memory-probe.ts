// What a model costs in memory at one latent size, measured rather than guessed: a child process loads the model as
// the engine does (same provider, same attention slicing), runs the UNet at one and two batch items and the VAE both
// ways, and reports its peak resident memory after each step. ONNX Runtime's arenas keep what they grew to, so the
// peaks add up the way they do in a job. The figures are cached per model files, provider, slicing and size; a second
// job at the same size measures nothing.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { renameIntoPlaceSync } from '../config/atomic-rename';
import { dataDir } from '../config/paths';
import { graphIdentity } from '../onnx/graph-file';
import type { ProviderName } from './providers';

/** The size a cost was measured at, and the session settings that change it. */
export interface MemoryProbeKey {
  modelDir: string;
  provider: ProviderName;
  /** Self-attention slices (ModelInfo.attention.slices). */
  slices: number;
  /** Latent size. */
  height: number;
  width: number;
  /** Frames per VAE call at this size (sd-model.ts slices the VAE by pixels). */
  vaeFrames: number;
}

/** Peak resident memory, in bytes: the process with the model loaded and nothing run, and per UNet batch item. */
export interface MemoryCost {
  /** Everything but the UNet's batch items: weights, sessions, the VAE's working memory at this size. */
  baseBytes: number;
  /** What one more item in a UNet batch adds at this size. */
  unetItemBytes: number;
  /** When it was measured (ISO time) and how long the measurement took. */
  measuredAt: string;
  measureMs: number;
}

/** What the child reports: maxRSS (bytes) after each step. */
export interface ProbeReadings {
  loaded: number;
  unet1: number;
  unet2: number;
  vae: number;
}

/** The cost model from the readings: peak(items) = baseBytes + items × unetItemBytes. */
export function costOf(r: ProbeReadings, measureMs: number): MemoryCost {
  const unetItemBytes = Math.max(0, r.unet2 - r.unet1);
  return {
    baseBytes: Math.max(r.loaded, r.vae - 2 * unetItemBytes),
    unetItemBytes,
    measuredAt: new Date().toISOString(),
    measureMs: Math.round(measureMs),
  };
}

const COMPONENT_GRAPHS = ['unet', 'vae_encoder', 'vae_decoder'].map((c) => path.join(c, 'model.onnx'));

function cacheKey(k: MemoryProbeKey): string {
  const files = COMPONENT_GRAPHS.map((rel) => graphIdentity(path.join(k.modelDir, rel))).join(',');
  return `${files}|${k.provider}|s${k.slices}|${k.height}x${k.width}|v${k.vaeFrames}`;
}

function cacheFile(): string {
  return path.join(dataDir(), 'memory-costs.json');
}

function readCache(): Record<string, MemoryCost> {
  try {
    const v: unknown = JSON.parse(fs.readFileSync(cacheFile(), 'utf8'));
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, MemoryCost>) : {};
  } catch {
    // Missing or unreadable: measured again, then rewritten whole.
    return {};
  }
}

/** The cost measured before for this model, provider, slicing and size, if any (no child is started). */
export function cachedMemoryCost(k: MemoryProbeKey): MemoryCost | undefined {
  return readCache()[cacheKey(k)];
}

/** Entries beyond this many are dropped, oldest measurement first. */
const CACHE_ENTRIES = 64;

function storeCost(k: MemoryProbeKey, cost: MemoryCost): void {
  const all = { ...readCache(), [cacheKey(k)]: cost };
  const kept = Object.entries(all)
    .sort(([, a], [, b]) => b.measuredAt.localeCompare(a.measuredAt))
    .slice(0, CACHE_ENTRIES);
  const file = cacheFile();
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(Object.fromEntries(kept), null, 1));
  renameIntoPlaceSync(tmp, file);
}

function probeScript(): string {
  // Under ts-jest this module runs from TypeScript source; the child needs compiled JavaScript (npm run build).
  const own = __filename.endsWith('.ts')
    ? path.resolve(__dirname, '../../../dist/engine/src/models/memory-probe-child.js')
    : path.join(__dirname, 'memory-probe-child.js');
  if (!fs.existsSync(own)) throw new Error(`memory probe script ${own} is missing; run \`npm run build\` first`);
  return own;
}

/**
 * The cost at this key: from the cache, else measured in a child process (seconds on small models, about a minute for
 * a Stable Diffusion 1.5 UNet on a laptop CPU) and cached.
 */
export async function memoryCost(k: MemoryProbeKey, signal?: AbortSignal): Promise<MemoryCost> {
  const cached = cachedMemoryCost(k);
  if (cached) return cached;
  const start = performance.now();
  const readings = await runProbe(k, signal);
  const cost = costOf(readings, performance.now() - start);
  storeCost(k, cost);
  return cost;
}

function runProbe(k: MemoryProbeKey, signal?: AbortSignal): Promise<ProbeReadings> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [probeScript(), JSON.stringify(k)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: process.env,
      ...(signal ? { signal } : {}),
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code, sig) => {
      if (code === 0) {
        try {
          resolve(JSON.parse(out) as ProbeReadings);
          return;
        } catch {
          // Falls through to the error below, with what the child printed.
        }
      }
      const why = sig ? `was stopped by ${sig}` : `exited with code ${code}`;
      const detail = (err.trim().split('\n').pop() ?? '').slice(0, 300);
      reject(
        new Error(
          `measuring the model's memory use failed: the probe ${why}${detail ? ` (${detail})` : ''}` +
            (sig === 'SIGKILL' ? '; the machine may be out of memory already' : ''),
        ),
      );
    });
  });
}
