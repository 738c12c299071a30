// Per-user folders. RESHOOT_HOME overrides everything (tests, portable installs); otherwise each OS's convention.
import * as os from 'node:os';
import * as path from 'node:path';

/** An environment folder as the XDG spec reads it: set, not empty, and absolute, else ignored. */
function absoluteEnv(name: string): string | undefined {
  const v = process.env[name];
  return v && path.isAbsolute(v) ? v : undefined;
}

function platformBase(kind: 'data' | 'config'): string {
  const home = os.homedir();
  switch (process.platform) {
    case 'win32':
      return kind === 'data'
        ? (absoluteEnv('LOCALAPPDATA') ?? path.join(home, 'AppData', 'Local'))
        : (absoluteEnv('APPDATA') ?? path.join(home, 'AppData', 'Roaming'));
    case 'darwin':
      return path.join(home, 'Library', 'Application Support');
    default:
      return kind === 'data'
        ? (absoluteEnv('XDG_DATA_HOME') ?? path.join(home, '.local', 'share'))
        : (absoluteEnv('XDG_CONFIG_HOME') ?? path.join(home, '.config'));
  }
}

/** Jobs, results cache, models. */
export function dataDir(): string {
  return process.env.RESHOOT_HOME
    ? path.join(process.env.RESHOOT_HOME, 'data')
    : path.join(platformBase('data'), 'reshoot');
}

/** The API token and settings. */
export function configDir(): string {
  return process.env.RESHOOT_HOME
    ? path.join(process.env.RESHOOT_HOME, 'config')
    : path.join(platformBase('config'), 'reshoot');
}

export function modelsDir(): string {
  return process.env.RESHOOT_MODELS ?? path.join(dataDir(), 'models');
}
