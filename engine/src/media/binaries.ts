// Where ffmpeg and ffprobe live. The npm installer packages ship static binaries so a fresh `npm ci` works
// offline without root; FFMPEG_PATH / FFPROBE_PATH let a studio point at its own (newer, GPU-enabled) build.
// Both are resolved on every call rather than cached, so a changed environment takes effect without restart.

import { accessSync, constants, statSync } from 'node:fs';
import { MediaError } from './errors';

export { MediaError } from './errors';
export type { MediaErrorCode } from './errors';

type Tool = 'ffmpeg' | 'ffprobe';

const ENV: Record<Tool, string> = { ffmpeg: 'FFMPEG_PATH', ffprobe: 'FFPROBE_PATH' };
const PACKAGE: Record<Tool, string> = { ffmpeg: '@ffmpeg-installer/ffmpeg', ffprobe: '@ffprobe-installer/ffprobe' };

function bundledPath(tool: Tool): string | { error: string } {
  try {
    // The installer packages throw (a bare string, for @ffmpeg-installer) when the platform binary is absent;
    // requiring lazily keeps that from breaking every import of the media module.
    const mod = require(PACKAGE[tool]) as { path?: unknown };
    if (typeof mod.path === 'string') return mod.path;
    return { error: `${PACKAGE[tool]} did not report a binary path` };
  } catch (e) {
    return { error: e instanceof Error ? e.message : String(e) };
  }
}

function executableProblem(path: string): string | null {
  try {
    if (!statSync(path).isFile()) return 'is not a file';
  } catch {
    return 'does not exist';
  }
  try {
    accessSync(path, constants.X_OK);
  } catch {
    return 'is not executable';
  }
  return null;
}

function resolveTool(tool: Tool): string {
  const env = ENV[tool];
  const override = process.env[env];
  if (override !== undefined && override !== '') {
    const problem = executableProblem(override);
    if (problem) {
      throw new MediaError(
        'ffmpeg-missing',
        `${env} points to ${override}, which ${problem}. Set ${env} to the full path of an ${tool} executable, ` +
          `or unset it to use the ${tool} bundled with Reshoot.`,
        { file: override },
      );
    }
    return override;
  }
  const bundled = bundledPath(tool);
  if (typeof bundled !== 'string') {
    throw new MediaError(
      'ffmpeg-missing',
      `The bundled ${tool} is not installed for ${process.platform}-${process.arch} (${bundled.error}). ` +
        `Reinstall Reshoot's dependencies (npm ci), or install ${tool} and set ${env} to its full path.`,
    );
  }
  const problem = executableProblem(bundled);
  if (problem) {
    throw new MediaError(
      'ffmpeg-missing',
      `The bundled ${tool} at ${bundled} ${problem}. Reinstall Reshoot's dependencies (npm ci; its install step ` +
        `marks the binary executable), or install ${tool} and set ${env} to its full path.`,
      { file: bundled },
    );
  }
  return bundled;
}

/** Path of the ffmpeg executable: $FFMPEG_PATH, else the @ffmpeg-installer binary. Throws 'ffmpeg-missing'. */
export function ffmpegPath(): string {
  return resolveTool('ffmpeg');
}

/** Path of the ffprobe executable: $FFPROBE_PATH, else the @ffprobe-installer binary. Throws 'ffmpeg-missing'. */
export function ffprobePath(): string {
  return resolveTool('ffprobe');
}
