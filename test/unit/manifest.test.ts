// The UXP manifest against the documented schema (Premiere UXP docs, plugins/concepts/manifest; reference notes
// premiere-uxp.md §3, §12) and against the code and engine it has to agree with.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DEFAULT_PORT } from '../../engine/src/cli/serve';
import { decodePng } from '../../engine/src/media/png';

interface Size {
  width: number;
  height: number;
}

/** The manifest as the documented schema describes it; the tests below check that the file keeps to it. */
interface Manifest {
  manifestVersion: number;
  id: string;
  name: string;
  main?: string;
  version: string;
  host: { app: string; minVersion: string; maxVersion?: string };
  entrypoints: {
    type: string;
    id: string;
    label?: string | { default?: string };
    shortcut?: unknown;
    minimumSize?: Size;
    maximumSize?: Size;
    preferredDockedSize?: Size;
    preferredFloatingSize?: Size;
  }[];
  requiredPermissions: Record<string, unknown> & { network: { domains: string[] } };
  icons: { width: number; height: number; path: string; scale?: number[]; theme?: string[]; species?: string[] }[];
}

const ROOT = path.resolve(__dirname, '..', '..');
const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'manifest.json'), 'utf8')) as Manifest;
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };

const THEMES = ['all', 'lightest', 'light', 'medium', 'dark', 'darkest'];
const SPECIES = ['generic', 'toolbar', 'pluginList'];
const PERMISSIONS = [
  'clipboard',
  'localFileSystem',
  'network',
  'webview',
  'launchProcess',
  'allowCodeGenerationFromStrings',
  'enableUserInfo',
  'ipc',
  'enableAddon',
];

function semver(v: string): [number, number, number] {
  const m = /^(\d+)\.(\d+)\.(\d+)$/.exec(v);
  if (!m) throw new Error(`not x.y.z: ${v}`);
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}

function atLeast(v: string, min: string): boolean {
  const a = semver(v);
  const b = semver(min);
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i] > b[i];
  return true;
}

/** The keys of the `panels` object passed to entrypoints.setup() in a source file. */
function setupPanelKeys(source: string): string[] {
  const setup = source.indexOf('entrypoints.setup(');
  expect(setup).toBeGreaterThanOrEqual(0);
  const panels = /panels\s*:\s*\{/g;
  panels.lastIndex = setup;
  const open = panels.exec(source);
  if (!open) throw new Error('entrypoints.setup() has no panels object');
  // Only what sits directly inside `panels: { … }` names a panel; nested blocks (the hooks) are skipped.
  let depth = 0;
  let body = '';
  for (let i = open.index + open[0].length - 1; i < source.length; i++) {
    const c = source[i];
    if (c === '{') depth++;
    else if (c === '}' && --depth === 0) break;
    else if (depth === 1) body += c;
  }
  return [...body.matchAll(/(?:^|[,\s])(['"]?)([A-Za-z_$][\w$-]*)\1\s*:/g)].map((m) => m[2]);
}

describe('manifest.json', () => {
  it('has the keys UXP requires, with manifest version 5', () => {
    for (const key of ['manifestVersion', 'id', 'name', 'version', 'host', 'entrypoints'])
      expect(manifest).toHaveProperty(key);
    expect(manifest.manifestVersion).toBe(5);
    expect(manifest.id).toBe('com.reshoot.panel');
    expect(manifest.name).toBe('Reshoot');
    expect(manifest.main).toBe('index.html');
  });

  it('carries package.json version', () => {
    expect(manifest.version).toMatch(/^\d+\.\d+\.\d+$/);
    expect(manifest.version).toBe(pkg.version);
  });

  it('targets Premiere Pro 25.6 or later, as one host object (arrays are for development only)', () => {
    expect(Array.isArray(manifest.host)).toBe(false);
    expect(manifest.host.app).toBe('premierepro');
    expect(atLeast(manifest.host.minVersion, '25.6.0')).toBe(true);
    if (manifest.host.maxVersion !== undefined)
      expect(atLeast(manifest.host.maxVersion, manifest.host.minVersion)).toBe(true);
  });

  it('declares one panel entrypoint with unique ids, labels and consistent sizes', () => {
    const entrypoints = manifest.entrypoints;
    const ids = entrypoints.map((e) => e.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const e of entrypoints) {
      expect(['panel', 'command']).toContain(e.type);
      expect(typeof e.id).toBe('string');
      expect(typeof e.label === 'string' || typeof e.label?.default === 'string').toBe(true);
      // Keyboard shortcuts are not available in Premiere Pro.
      expect(e.shortcut).toBeUndefined();
    }
    const panels = entrypoints.filter((e) => e.type === 'panel');
    expect(panels).toHaveLength(1);
    const [panel] = panels;
    expect(panel.id).toBe('reshootPanel');
    expect(panel.label).toEqual({ default: 'Reshoot' });
    expect(panel.minimumSize).toEqual({ width: 260, height: 300 });
    expect(panel.preferredDockedSize).toEqual({ width: 320, height: 560 });
    for (const key of ['minimumSize', 'maximumSize', 'preferredDockedSize', 'preferredFloatingSize'] as const) {
      const size = panel[key];
      if (size === undefined) continue;
      expect(Object.keys(size).sort()).toEqual(['height', 'width']);
      expect(Number.isInteger(size.width) && Number.isInteger(size.height)).toBe(true);
    }
    // Both preferred sizes and both bounds must be there; a missing one fails here.
    const { minimumSize: min, maximumSize: max } = panel as Required<typeof panel>;
    for (const key of ['preferredDockedSize', 'preferredFloatingSize'] as const) {
      const size = panel[key]!;
      expect(size.width).toBeGreaterThanOrEqual(min.width);
      expect(size.height).toBeGreaterThanOrEqual(min.height);
      expect(size.width).toBeLessThanOrEqual(max.width);
      expect(size.height).toBeLessThanOrEqual(max.height);
    }
  });

  it('uses the same panel id as entrypoints.setup() in main-uxp.ts', () => {
    const source = fs.readFileSync(path.join(ROOT, 'panel', 'src', 'main-uxp.ts'), 'utf8');
    const panelIds = manifest.entrypoints.filter((e) => e.type === 'panel').map((e) => e.id);
    expect(setupPanelKeys(source).sort()).toEqual(panelIds.sort());
    // The hooks UXP calls on a v5 panel; hide/destroy are unreliable in Premiere, so mounting must not need them.
    expect(source).toMatch(/reshootPanel\s*:\s*\{[\s\S]*\bcreate\s*\([\s\S]*\bshow\s*\(/);
  });

  it('allows the network only to the engine on loopback, with scheme and port', () => {
    const domains = manifest.requiredPermissions.network.domains;
    expect(Array.isArray(domains)).toBe(true);
    expect(domains).toEqual(
      expect.arrayContaining([`http://127.0.0.1:${DEFAULT_PORT}`, `http://localhost:${DEFAULT_PORT}`]),
    );
    for (const domain of domains) {
      expect(domain).not.toBe('all');
      expect(domain).not.toContain('*');
      const url = new URL(domain);
      expect(['http:', 'ws:']).toContain(url.protocol);
      expect(['127.0.0.1', 'localhost']).toContain(url.hostname);
      expect(url.port).toBe(String(DEFAULT_PORT));
      // An origin, nothing more: no path, query or credentials.
      expect(domain).toBe(`${url.protocol}//${url.hostname}:${url.port}`);
    }
  });

  it('asks for no more permissions than the panel uses', () => {
    const permissions = manifest.requiredPermissions;
    for (const key of Object.keys(permissions)) expect(PERMISSIONS).toContain(key);
    expect(Object.keys(permissions).sort()).toEqual(['launchProcess', 'localFileSystem', 'network']);
    expect(['plugin', 'request', 'fullAccess']).toContain(permissions.localFileSystem);
    // Results are written next to the project and the token is read from the user's config folder, both
    // outside anything a picker or the plugin's own folders would cover.
    expect(permissions.localFileSystem).toBe('fullAccess');
    // "Reveal file" opens the result's folder; "" is how the manifest names folders. No schemes, no file types.
    expect(permissions.launchProcess).toEqual({ schemes: [], extensions: [''] });
  });

  it('documents the reason for every permission in the README', () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const start = readme.indexOf('## Premiere Pro panel');
    expect(start).toBeGreaterThanOrEqual(0);
    const next = readme.indexOf('\n## ', start + 1);
    const section = readme.slice(start, next < 0 ? undefined : next);
    for (const key of Object.keys(manifest.requiredPermissions)) expect(section).toContain(`\`${key}\``);
  });

  it('has its own icon for light and for dark themes (Premiere shows the one matching its theme)', () => {
    const pathFor = (theme: string) => manifest.icons.find((i) => i.theme?.includes(theme))?.path;
    expect(pathFor('light')).toBe('icons/icon-light.png');
    expect(pathFor('lightest')).toBe('icons/icon-light.png');
    expect(pathFor('dark')).toBe('icons/icon-dark.png');
    expect(pathFor('darkest')).toBe('icons/icon-dark.png');
    const light = fs.readFileSync(path.join(ROOT, 'panel', pathFor('light')!));
    expect(light.equals(fs.readFileSync(path.join(ROOT, 'panel', pathFor('dark')!)))).toBe(false);
  });

  it('lists icons in the documented schema, present in panel/icons at every scale', () => {
    const icons = manifest.icons;
    expect(icons.length).toBeGreaterThan(0);
    for (const icon of icons) {
      for (const key of Object.keys(icon))
        expect(['width', 'height', 'path', 'scale', 'theme', 'species']).toContain(key);
      expect(icon.path).toMatch(/^icons\/[\w.@-]+\.(png|jpe?g|svg)$/);
      for (const theme of icon.theme ?? []) expect(THEMES).toContain(theme);
      for (const species of icon.species ?? []) expect(SPECIES).toContain(species);
      for (const scale of icon.scale ?? [1]) {
        const rel = scale === 1 ? icon.path : icon.path.replace(/(\.\w+)$/, `@${scale}x$1`);
        const file = path.join(ROOT, 'panel', rel);
        expect(fs.existsSync(file)).toBe(true);
        const png = decodePng(fs.readFileSync(file));
        expect([png.width, png.height]).toEqual([icon.width * scale, icon.height * scale]);
        // "tiny committed PNGs"
        expect(fs.statSync(file).size).toBeLessThan(10 * 1024);
      }
    }
  });
});
