// Writes the project's generated models (never committed, always reproducible from a seed) into a models folder:
//   node dist/scripts/generate-models.js [--out DIR] [--seed N] [names...]
// names: tiny-sd (= tiny-sd:optimum), tiny-sd:<variant>, tiny-sd:all, sd-bench, oracle, oracle-attn, sd15-shape. No
// names: all of them but sd15-shape (SD 1.5's sizes with random weights: 3.7 GB, about 2 minutes to write).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { generateOracle } from '../engine/src/models/generate/oracle';
import { generateOracleAttn } from '../engine/src/models/generate/oracle-attn';
import {
  SD15_SHAPE_VARIANT,
  SD_VARIANTS,
  generateSdBench,
  generateSdModel,
  generateTinySd,
} from '../engine/src/models/generate/tiny-sd';

interface Job {
  /** Folder name under --out. */
  name: string;
  run: (dir: string) => void;
}

const USAGE = `usage: generate-models [--out DIR] [--seed N] [names...]
names: oracle, oracle-attn, sd-bench, sd15-shape, tiny-sd, tiny-sd:all, tiny-sd:<variant> with variant one of ${Object.keys(SD_VARIANTS).join(', ')}
default: oracle oracle-attn sd-bench tiny-sd:all, into models/ (sd15-shape, SD 1.5's sizes with random weights, ~3.7 GB, only by name)`;

function jobsFor(name: string, seed: number): Job[] {
  if (name === 'oracle') return [{ name, run: (dir) => generateOracle(dir) }];
  if (name === 'oracle-attn') return [{ name, run: (dir) => generateOracleAttn(dir) }];
  if (name === 'sd-bench') return [{ name, run: (dir) => generateSdBench(dir, seed) }];
  if (name === 'sd15-shape') return [{ name, run: (dir) => generateSdModel(dir, SD15_SHAPE_VARIANT, seed) }];
  if (name === 'tiny-sd' || name === 'tiny-sd:optimum')
    return [{ name: 'tiny-sd', run: (dir) => generateTinySd(dir, 'optimum', seed) }];
  if (name === 'tiny-sd:all') return Object.keys(SD_VARIANTS).flatMap((v) => jobsFor(`tiny-sd:${v}`, seed));
  const m = /^tiny-sd:(.+)$/.exec(name);
  if (m && SD_VARIANTS[m[1]]) return [{ name: `tiny-sd-${m[1]}`, run: (dir) => generateTinySd(dir, m[1], seed) }];
  throw new Error(`unknown model "${name}"\n${USAGE}`);
}

function parse(argv: string[]): { out: string; seed: number; names: string[] } {
  let out = 'models';
  let seed = 1;
  const names: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') {
      console.log(USAGE);
      process.exit(0);
    } else if (a === '--out' || a === '--seed') {
      const value = argv[++i];
      if (value === undefined) throw new Error(`${a} needs a value\n${USAGE}`);
      if (a === '--out') out = value;
      else {
        seed = Number(value);
        if (!Number.isInteger(seed) || seed < 0) throw new Error(`--seed ${value}: expected a non-negative integer`);
      }
    } else if (a.startsWith('--')) {
      throw new Error(`unknown option ${a}\n${USAGE}`);
    } else {
      names.push(a);
    }
  }
  return { out, seed, names: names.length ? names : ['oracle', 'oracle-attn', 'sd-bench', 'tiny-sd:all'] };
}

function folderSize(dir: string): number {
  let total = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    total += e.isDirectory() ? folderSize(p) : fs.statSync(p).size;
  }
  return total;
}

/** Elements of a model file's initializers, external ones included (read from their dims, not their data). */
function initializerElements(file: string): number {
  const model = onnx.ModelProto.decode(fs.readFileSync(file));
  let total = 0;
  for (const t of model.graph?.initializer ?? []) total += (t.dims ?? []).reduce<number>((a, d) => a * Number(d), 1);
  return total;
}

function main(): void {
  const { out, seed, names } = parse(process.argv.slice(2));
  const jobs = names.flatMap((n) => jobsFor(n, seed));
  for (const job of jobs) {
    const dir = path.resolve(out, job.name);
    // A stale file from an older generator version (e.g. model.onnx_data next to a now-inline model) would be
    // picked up by the loader, so each model folder is replaced whole, but only if it is a model folder.
    if (fs.existsSync(dir)) {
      if (!fs.existsSync(path.join(dir, 'model_index.json'))) {
        throw new Error(
          `${dir} exists and is not a model folder (no model_index.json); move it away or choose another --out`,
        );
      }
      fs.rmSync(dir, { recursive: true, force: true });
    }
    const t0 = Date.now();
    job.run(dir);
    const ms = Date.now() - t0;
    const unet = path.join(dir, 'unet', 'model.onnx');
    const params = fs.existsSync(unet)
      ? `, UNet ${initializerElements(unet).toLocaleString('en-US')} initializer elements`
      : '';
    console.log(`${job.name}: ${dir} (${(folderSize(dir) / 1e6).toFixed(1)} MB, ${ms} ms${params})`);
  }
}

try {
  main();
} catch (e) {
  console.error(e instanceof Error ? e.message : String(e));
  process.exit(1);
}
