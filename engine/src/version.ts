// The package version, reported by /v1/health and `reshoot --version`. Found by walking up from this file, which
// sits at a different depth in the sources (engine/src) and the build (dist/engine/src).
import * as fs from 'node:fs';
import * as path from 'node:path';

function findVersion(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (fs.existsSync(file)) {
      const pkg = JSON.parse(fs.readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'reshoot' && pkg.version) return pkg.version;
    }
    if (path.dirname(dir) === dir) return '0.0.0-unknown';
  }
}

export const VERSION = findVersion();
