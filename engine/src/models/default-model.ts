// The embedded default model is the generated oracle: it needs no download, so the demo and the tests run on a
// fresh machine. It is written once into the models folder and rewritten when its generator version changes.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { renameIntoPlaceSync } from '../config/atomic-rename';
import { modelsDir } from '../config/paths';
import { generateOracle } from './generate/oracle';

export const DEFAULT_MODEL = 'oracle';
const ORACLE_VERSION = '1';

export function ensureOracleModel(dir = path.join(modelsDir(), DEFAULT_MODEL)): string {
  const stamp = path.join(dir, '.reshoot-generated');
  if (fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === ORACLE_VERSION) return dir;
  // Generate beside the target and rename, so a crash never leaves a half-written model where one is expected.
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  generateOracle(tmp);
  fs.writeFileSync(path.join(tmp, '.reshoot-generated'), ORACLE_VERSION);
  // Windows renames no folder over another, so the old one goes first (Node retries while a scanner holds a file).
  fs.rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  renameIntoPlaceSync(tmp, dir);
  return dir;
}

/** A model argument: the name of the embedded default, a name under the models folder, or a path. */
export function resolveModel(arg?: string): string {
  if (!arg || arg === DEFAULT_MODEL) return ensureOracleModel();
  if (fs.existsSync(arg)) return path.resolve(arg);
  const named = path.join(modelsDir(), arg);
  if (fs.existsSync(named)) return named;
  return path.resolve(arg); // the loader reports it missing, with the path
}
