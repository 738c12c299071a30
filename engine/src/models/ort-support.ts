// Whether ONNX Runtime loads on this machine, and if not, one sentence that says why and what to do. onnxruntime-node
// ships native builds for some platforms only (1.30: Linux x64/arm64, Windows x64/arm64, macOS arm64 — none for Intel
// Macs since 1.24); on any other, importing it throws MODULE_NOT_FOUND from deep inside the package.
import * as fs from 'node:fs';
import * as path from 'node:path';

export type OnnxRuntimeStatus =
  | { ok: true; version: string; backends: { name: string; bundled: boolean }[] }
  | { ok: false; version?: string; problem: string };

const PLATFORM_NAMES: Record<string, string> = { darwin: 'macOS', win32: 'Windows', linux: 'Linux' };

function describePlatform(platform: string, arch: string): string {
  if (platform === 'darwin' && arch === 'x64') return 'macOS on an Intel processor (darwin-x64)';
  return `${PLATFORM_NAMES[platform] ?? platform} on ${arch} (${platform}-${arch})`;
}

/** The package's folder and version, without loading its native part. */
function packageInfo(): { dir: string; version: string } | undefined {
  try {
    const main = require.resolve('onnxruntime-node');
    const dir = path.resolve(path.dirname(main), '..');
    const version = (JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { version: string }).version;
    return { dir, version };
  } catch {
    return undefined;
  }
}

/** The platforms this onnxruntime-node ships a native build for, as `platform-arch`. */
export function bundledPlatforms(dir: string): string[] {
  const root = path.join(dir, 'bin', 'napi-v6');
  const list = (p: string) => (fs.existsSync(p) ? fs.readdirSync(p) : []);
  return list(root).flatMap((platform) => list(path.join(root, platform)).map((arch) => `${platform}-${arch}`));
}

export async function onnxRuntimeStatus(platform: string = process.platform, arch: string = process.arch): Promise<OnnxRuntimeStatus> {
  const info = packageInfo();
  if (!info) {
    return { ok: false, problem: 'onnxruntime-node is not installed next to Reshoot; reinstall Reshoot (`npm ci` in a checkout).' };
  }
  const builds = bundledPlatforms(info.dir);
  if (!builds.includes(`${platform}-${arch}`)) {
    return {
      ok: false,
      version: info.version,
      problem:
        `ONNX Runtime ${info.version} has no build for ${describePlatform(platform, arch)} (it ships ${builds.join(', ') || 'none'}), ` +
        'so the engine cannot run on this machine: run `reshoot serve` on a Mac with Apple silicon or on a Windows or ' +
        'Linux PC instead.',
    };
  }
  try {
    const ort = await import('./ort');
    return { ok: true, version: ort.env.versions.node ?? info.version, backends: ort.listSupportedBackends() };
  } catch (err) {
    const first = (err instanceof Error ? err.message : String(err)).split('\n')[0].trim();
    return {
      ok: false,
      version: info.version,
      problem: `ONNX Runtime ${info.version} did not load on this machine (${first}); reinstall Reshoot (or its dependencies with \`npm ci\`); if it persists, this system is older than ONNX Runtime ${info.version} supports.`,
    };
  }
}
