// Bundles the panel UI twice, each into one self-contained script: dist/panel-web/ for the browser (served by the
// engine at its root URL) and dist/panel-uxp/ for Premiere Pro. UXP cannot resolve relative require() between
// source files when the entry is loaded from a <script>, so every module ends up in index.js; only the host's own
// modules stay external.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { build, type BuildOptions } from 'esbuild';
import { PRESETS_FOLDER } from '../panel/src/host/export-presets';

const ROOT = path.resolve(__dirname, path.basename(path.dirname(__dirname)) === 'dist' ? '../..' : '..');
const PANEL = path.join(ROOT, 'panel');

/**
 * Only the browser page gets a Content-Security-Policy: it runs on the engine's origin with a token in hand, so no
 * script, frame or connection from anywhere else. (UXP pages live at plugin:// URLs and talk to http://127.0.0.1,
 * which this policy would block.)
 */
const WEB_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "media-src 'self' blob:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
].join('; ');

export interface PanelBuildResult {
  web: string;
  uxp: string | null;
}

export async function buildPanel(outRoot = path.join(ROOT, 'dist')): Promise<PanelBuildResult> {
  const html = fs.readFileSync(path.join(PANEL, 'index.html'), 'utf8');
  const common: BuildOptions = {
    bundle: true,
    logLevel: 'warning',
    legalComments: 'none',
    // Labels like "128×72" and "·" stay readable in the output instead of becoming \u escapes.
    charset: 'utf8',
    absWorkingDir: ROOT,
  };

  // Both bundles carry the engine's api/ schemas, so the panel validates against the very contract of the engine it ships with.
  const web = path.join(outRoot, 'panel-web');
  fs.rmSync(web, { recursive: true, force: true });
  fs.mkdirSync(web, { recursive: true });
  await build({
    ...common,
    entryPoints: [path.join(PANEL, 'src/main-browser.ts')],
    outfile: path.join(web, 'index.js'),
    format: 'iife',
    platform: 'browser',
    target: ['chrome110', 'firefox115', 'safari16'],
    minify: true,
    sourcemap: 'linked',
  });
  await build({
    ...common,
    entryPoints: [path.join(PANEL, 'src/styles.css')],
    outfile: path.join(web, 'index.css'),
    minify: true,
  });
  fs.writeFileSync(
    path.join(web, 'index.html'),
    html.replace('<!-- reshoot:csp -->', `<meta http-equiv="Content-Security-Policy" content="${WEB_CSP}" />`),
  );

  const uxpEntry = path.join(PANEL, 'src/main-uxp.ts');
  if (!fs.existsSync(uxpEntry)) return { web, uxp: null };
  const uxp = path.join(outRoot, 'panel-uxp');
  fs.rmSync(uxp, { recursive: true, force: true });
  fs.mkdirSync(uxp, { recursive: true });
  await build({
    ...common,
    entryPoints: [uxpEntry],
    outfile: path.join(uxp, 'index.js'),
    format: 'cjs',
    platform: 'neutral',
    // UXP's JavaScript engine is a recent V8; es2020 keeps clear of syntax whose support there is undocumented.
    target: 'es2020',
    mainFields: ['browser', 'module', 'main'],
    external: ['premierepro', 'uxp', 'fs', 'os'],
    // Readable in the UXP Developer Tool's debugger, where source maps are not picked up reliably.
    minify: false,
  });
  await build({
    ...common,
    entryPoints: [path.join(PANEL, 'src/styles.css')],
    outfile: path.join(uxp, 'index.css'),
    minify: false,
  });
  fs.writeFileSync(path.join(uxp, 'index.html'), html.replace(/^[ \t]*<!-- reshoot:csp -->\r?\n/m, ''));
  const manifest = path.join(ROOT, 'manifest.json');
  if (fs.existsSync(manifest)) fs.copyFileSync(manifest, path.join(uxp, 'manifest.json'));
  const icons = path.join(PANEL, 'icons');
  if (fs.existsSync(icons)) fs.cpSync(icons, path.join(uxp, 'icons'), { recursive: true });
  // The export presets for clips rendered through Premiere (panel/src/host/export-presets.ts); only the .epr files.
  const presets = path.join(PANEL, PRESETS_FOLDER);
  const presetFiles = fs.existsSync(presets) ? fs.readdirSync(presets).filter((f) => f.endsWith('.epr')) : [];
  fs.rmSync(path.join(uxp, PRESETS_FOLDER), { recursive: true, force: true });
  if (presetFiles.length > 0) fs.mkdirSync(path.join(uxp, PRESETS_FOLDER), { recursive: true });
  for (const file of presetFiles) fs.copyFileSync(path.join(presets, file), path.join(uxp, PRESETS_FOLDER, file));
  return { web, uxp };
}

if (require.main === module) {
  const started = Date.now();
  buildPanel().then(
    (r) =>
      console.log(
        `panel built in ${Date.now() - started} ms: ${path.relative(ROOT, r.web)}${r.uxp ? `, ${path.relative(ROOT, r.uxp)}` : ' (no main-uxp.ts: UXP bundle skipped)'}`,
      ),
    (err) => {
      console.error(err instanceof Error ? err.message : err);
      process.exit(1);
    },
  );
}
