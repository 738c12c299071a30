// `npm run package:panel`: turns the built panel folder (dist/panel-uxp) into dist/reshoot-panel-<version>.ccx,
// the file Creative Cloud Desktop and Adobe's Unified Plugin Installer Agent install. A .ccx is a plain ZIP of the
// plugin folder with manifest.json at its root, so it is written here on node:zlib rather than with a new
// dependency. The folder is checked first, because an installer that rejects a package says little about why.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { crc32 } from '../engine/src/media/png';
import { EXPORT_PRESETS, PRESETS_FOLDER } from '../panel/src/host/export-presets';

export class PackageError extends Error {
  override name = 'PackageError';
}

// ---------------------------------------------------------------------------------------------------------------
// ZIP writer (APPNOTE.TXT 6.3: local headers, central directory, end of central directory; no ZIP64 needed)
// ---------------------------------------------------------------------------------------------------------------

export interface ZipEntry {
  /** Path inside the archive, with forward slashes. */
  name: string;
  data: Uint8Array;
  /** Stored as MS-DOS local time (2-second resolution); defaults to 1980-01-01, the earliest DOS date. */
  modified?: Date;
}

const LOCAL_HEADER = 0x04034b50;
const CENTRAL_HEADER = 0x02014b50;
const END_OF_CENTRAL_DIRECTORY = 0x06054b50;
const METHOD_STORED = 0;
const METHOD_DEFLATED = 8;
/** Bit 11: the name is UTF-8. */
const FLAG_UTF8 = 0x0800;
/** "Made by" UNIX (3), spec 2.0, so that unzip honours the permission bits in the external attributes. */
const MADE_BY_UNIX = (3 << 8) | 20;
const REGULAR_FILE_0644 = (0o100644 << 16) >>> 0;
const MAX_U16 = 0xffff;
const MAX_U32 = 0xffffffff;

function dosDateTime(date: Date): { time: number; date: number } {
  const year = Math.min(Math.max(date.getFullYear(), 1980), 2107);
  const clamped = year !== date.getFullYear() ? new Date(year, 0, 1) : date;
  return {
    time: (clamped.getHours() << 11) | (clamped.getMinutes() << 5) | (clamped.getSeconds() >> 1),
    date: ((year - 1980) << 9) | ((clamped.getMonth() + 1) << 5) | clamped.getDate(),
  };
}

function checkEntryName(name: string): void {
  if (
    !name ||
    name.startsWith('/') ||
    name.includes('\\') ||
    name.split('/').some((part) => part === '' || part === '.' || part === '..')
  ) {
    throw new PackageError(
      `ZIP entry name "${name}" must be a relative path with forward slashes and no empty, "." or ".." parts`,
    );
  }
}

/** A ZIP archive of the entries in the given order; each is deflated unless deflating would not make it smaller. */
export function createZip(entries: readonly ZipEntry[]): Buffer {
  if (entries.length > MAX_U16) throw new PackageError(`too many files for a ZIP without ZIP64: ${entries.length}`);
  const seen = new Set<string>();
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const entry of entries) {
    checkEntryName(entry.name);
    if (seen.has(entry.name)) throw new PackageError(`duplicate ZIP entry "${entry.name}"`);
    seen.add(entry.name);
    const name = Buffer.from(entry.name, 'utf8');
    const deflated = deflateRawSync(entry.data, { level: 9 });
    const method = deflated.length < entry.data.length ? METHOD_DEFLATED : METHOD_STORED;
    const body =
      method === METHOD_DEFLATED
        ? deflated
        : Buffer.from(entry.data.buffer, entry.data.byteOffset, entry.data.byteLength);
    if (entry.data.length > MAX_U32 || offset > MAX_U32)
      throw new PackageError(`"${entry.name}" needs ZIP64, which this writer does not do`);
    const crc = crc32(entry.data);
    const when = dosDateTime(entry.modified ?? new Date(1980, 0, 1));
    const flags = /^[\x20-\x7e]*$/.test(entry.name) ? 0 : FLAG_UTF8;
    const versionNeeded = method === METHOD_DEFLATED ? 20 : 10;

    const local = Buffer.alloc(30);
    local.writeUInt32LE(LOCAL_HEADER, 0);
    local.writeUInt16LE(versionNeeded, 4);
    local.writeUInt16LE(flags, 6);
    local.writeUInt16LE(method, 8);
    local.writeUInt16LE(when.time, 10);
    local.writeUInt16LE(when.date, 12);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(entry.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(0, 28); // extra field length

    const header = Buffer.alloc(46);
    header.writeUInt32LE(CENTRAL_HEADER, 0);
    header.writeUInt16LE(MADE_BY_UNIX, 4);
    header.writeUInt16LE(versionNeeded, 6);
    header.writeUInt16LE(flags, 8);
    header.writeUInt16LE(method, 10);
    header.writeUInt16LE(when.time, 12);
    header.writeUInt16LE(when.date, 14);
    header.writeUInt32LE(crc, 16);
    header.writeUInt32LE(body.length, 20);
    header.writeUInt32LE(entry.data.length, 24);
    header.writeUInt16LE(name.length, 28);
    // extra length, comment length, disk number start, internal attributes: all 0 (offsets 30..37)
    header.writeUInt32LE(REGULAR_FILE_0644, 38);
    header.writeUInt32LE(offset, 42);

    parts.push(local, name, body);
    central.push(header, name);
    offset += local.length + name.length + body.length;
  }
  const centralDirectory = Buffer.concat(central);
  if (offset > MAX_U32) throw new PackageError('archive needs ZIP64, which this writer does not do');
  const end = Buffer.alloc(22);
  end.writeUInt32LE(END_OF_CENTRAL_DIRECTORY, 0);
  // disk numbers (offsets 4, 6) stay 0: a single-part archive
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(centralDirectory.length, 12);
  end.writeUInt32LE(offset, 16);
  end.writeUInt16LE(0, 20); // comment length
  return Buffer.concat([...parts, centralDirectory, end]);
}

// ---------------------------------------------------------------------------------------------------------------
// Plugin folder checks
// ---------------------------------------------------------------------------------------------------------------

export interface IconDefinition {
  width: number;
  height: number;
  path: string;
  scale?: number[];
  theme?: string[];
  species?: string[];
}

export interface PanelManifest {
  manifestVersion: number;
  id: string;
  name: string | { default: string };
  version: string;
  main?: string;
  host: { app: string; minVersion: string; maxVersion?: string };
  entrypoints: Array<{
    type: string;
    id: string;
    label: string | { default: string };
    icons?: IconDefinition[];
    icon?: IconDefinition | IconDefinition[];
  }>;
  icons?: IconDefinition[];
  requiredPermissions?: Record<string, unknown>;
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** A path from the manifest that must name something inside the plugin folder, or the reason it cannot. */
function insidePlugin(pluginDir: string, relative: string): string | null {
  if (typeof relative !== 'string' || relative === '') return null;
  if (path.isAbsolute(relative) || /^[a-z][a-z0-9+.-]*:/i.test(relative)) return null;
  const resolved = path.resolve(pluginDir, relative);
  const rel = path.relative(pluginDir, resolved);
  return rel === '' || rel.startsWith('..') || path.isAbsolute(rel) ? null : resolved;
}

const isFile = (file: string): boolean => fs.existsSync(file) && fs.statSync(file).isFile();

/** `icons/icon.png` at scale 2 is `icons/icon@2x.png` (manifest IconDefinition.scale). */
function scaledIconPath(iconPath: string, scale: number): string {
  const ext = path.posix.extname(iconPath);
  return `${iconPath.slice(0, iconPath.length - ext.length)}@${scale}x${ext}`;
}

function collectIcons(manifest: Record<string, unknown>): Array<{ where: string; icon: unknown }> {
  const found: Array<{ where: string; icon: unknown }> = [];
  const add = (where: string, value: unknown) => {
    if (value === undefined) return;
    if (Array.isArray(value)) value.forEach((icon, i) => found.push({ where: `${where}[${i}]`, icon }));
    else found.push({ where, icon: value });
  };
  add('icons', manifest.icons);
  if (Array.isArray(manifest.entrypoints)) {
    manifest.entrypoints.forEach((entry, i) => {
      if (!isObject(entry)) return;
      add(`entrypoints[${i}].icons`, entry.icons);
      add(`entrypoints[${i}].icon`, entry.icon);
    });
  }
  return found;
}

const REMOTE = /^(?:[a-z][a-z0-9+.-]*:|\/\/)/i;

/**
 * Local files an HTML entry loads: `<script src>` and `<link rel="stylesheet" href>`. Remote ones are not the
 * package's business.
 */
function htmlAssets(html: string): string[] {
  const found: string[] = [];
  const attr = (tag: string, name: string): string | undefined => {
    const m = new RegExp(`\\s${name}\\s*=\\s*(?:"([^"]*)"|'([^']*)'|([^\\s>]+))`, 'i').exec(tag);
    return m ? (m[1] ?? m[2] ?? m[3]) : undefined;
  };
  for (const [tag] of html.matchAll(/<(?:script|link)\b[^>]*>/gi)) {
    const isScript = /^<script/i.test(tag);
    if (!isScript && !/^stylesheet$/i.test(attr(tag, 'rel') ?? '')) continue;
    const ref = (attr(tag, isScript ? 'src' : 'href') ?? '').split(/[?#]/)[0];
    if (ref && !REMOTE.test(ref)) found.push(ref.replace(/^\.\//, ''));
  }
  return found;
}

/**
 * Checks a plugin folder before it is zipped, reporting every problem at once: manifest.json parses and has the
 * keys UXP requires, its version equals `expectedVersion` (package.json's), `main` and the scripts and stylesheets
 * it loads exist, and so does every icon file, including the @Nx variants its scales promise.
 */
export function validatePluginFolder(pluginDir: string, expectedVersion: string): PanelManifest {
  const manifestFile = path.join(pluginDir, 'manifest.json');
  if (!isFile(manifestFile)) {
    throw new PackageError(`no manifest.json in ${pluginDir}: build the panel first (npm run build)`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(manifestFile, 'utf8'));
  } catch (err) {
    throw new PackageError(`${manifestFile} is not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(parsed)) throw new PackageError(`${manifestFile} must hold a JSON object`);
  const m = parsed;
  const problems: string[] = [];

  if (m.manifestVersion !== 5)
    problems.push(`manifestVersion is ${JSON.stringify(m.manifestVersion)}; Premiere Pro supports 5`);
  if (typeof m.id !== 'string' || m.id.trim() === '') problems.push('id is missing');
  if (!(typeof m.name === 'string' || (isObject(m.name) && typeof m.name.default === 'string')))
    problems.push('name is missing');
  if (typeof m.version !== 'string' || !/^\d+\.\d+\.\d+$/.test(m.version)) {
    problems.push(`version ${JSON.stringify(m.version)} is not major.minor.patch`);
  } else if (m.version !== expectedVersion) {
    problems.push(`version ${m.version} differs from package.json's ${expectedVersion}; set both to the same version`);
  }
  if (Array.isArray(m.host)) {
    problems.push('host is an array, which UXP allows only during development; a .ccx targets one host');
  } else if (!isObject(m.host) || m.host.app !== 'premierepro' || typeof m.host.minVersion !== 'string') {
    problems.push('host must be { "app": "premierepro", "minVersion": "x.y.z" }');
  }
  if (!Array.isArray(m.entrypoints) || m.entrypoints.length === 0) {
    problems.push('entrypoints must list at least one panel or command');
  } else {
    const ids = m.entrypoints.map((e) => (isObject(e) ? e.id : undefined));
    ids.forEach((id, i) => {
      if (typeof id !== 'string' || id === '') problems.push(`entrypoints[${i}] has no id`);
      else if (ids.indexOf(id) !== i) problems.push(`entrypoint id "${id}" is used twice`);
    });
  }

  // UXP's own default when main is absent (manifest reference).
  const main = m.main === undefined ? 'main.js' : m.main;
  const mainFile = typeof main === 'string' ? insidePlugin(pluginDir, main) : null;
  if (typeof main !== 'string' || !mainFile) {
    problems.push(`main ${JSON.stringify(main)} must be a relative path inside the plugin folder`);
  } else if (!isFile(mainFile)) {
    problems.push(`main file ${main} is missing from ${pluginDir}`);
  } else if (/\.html?$/i.test(mainFile)) {
    for (const ref of htmlAssets(fs.readFileSync(mainFile, 'utf8'))) {
      const asset = insidePlugin(pluginDir, path.posix.join(path.posix.dirname(main), ref));
      if (!asset || !isFile(asset)) problems.push(`${main} loads ${ref}, which is missing from ${pluginDir}`);
    }
  }

  for (const { where, icon } of collectIcons(m)) {
    if (
      !isObject(icon) ||
      typeof icon.path !== 'string' ||
      typeof icon.width !== 'number' ||
      typeof icon.height !== 'number'
    ) {
      problems.push(`${where} needs width, height and path`);
      continue;
    }
    const iconFile = insidePlugin(pluginDir, icon.path);
    if (!iconFile) {
      problems.push(`${where}.path ${JSON.stringify(icon.path)} must be a relative path inside the plugin folder`);
      continue;
    }
    if (!isFile(iconFile)) problems.push(`icon ${icon.path} (${where}) is missing from ${pluginDir}`);
    const scales = Array.isArray(icon.scale) ? icon.scale : [];
    for (const scale of scales) {
      if (typeof scale !== 'number' || scale === 1) continue;
      const variant = scaledIconPath(icon.path, scale);
      if (!isFile(path.resolve(pluginDir, variant)))
        problems.push(`icon ${variant} (${where}, scale ${scale}) is missing from ${pluginDir}`);
    }
  }

  if (problems.length > 0) {
    throw new PackageError(`${manifestFile} cannot be packaged:\n  - ${problems.join('\n  - ')}`);
  }
  return m as unknown as PanelManifest;
}

// ---------------------------------------------------------------------------------------------------------------
// Packaging
// ---------------------------------------------------------------------------------------------------------------

/** Not shipped: OS litter, source maps (debugging aids that only add size) and earlier packages. */
function shipped(relative: string): boolean {
  const base = path.posix.basename(relative);
  return !relative.split('/').some((part) => part.startsWith('.')) && !base.endsWith('.map') && !base.endsWith('.ccx');
}

function listFiles(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const entry of fs
    .readdirSync(dir, { withFileTypes: true })
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const relative = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...listFiles(path.join(dir, entry.name), relative));
    else if (entry.isFile()) out.push(relative);
  }
  return out;
}

export interface PackageOptions {
  /** The plugin folder: manifest.json, index.html, index.js, icons/. */
  pluginDir: string;
  /** Where the .ccx goes. */
  outDir: string;
  /** package.json's version; the manifest must carry the same. */
  expectedVersion: string;
}

export interface PackageResult {
  file: string;
  version: string;
  /** Export presets the panel looks for (panel/src/host/export-presets.ts) that the package does not hold. */
  missingPresets: string[];
  /** Archive entry names, manifest.json first. */
  entries: string[];
  bytes: number;
}

export function packagePanel(options: PackageOptions): PackageResult {
  const pluginDir = path.resolve(options.pluginDir);
  const manifest = validatePluginFolder(pluginDir, options.expectedVersion);
  // manifest.json first: it is what an installer looks for, and it makes `unzip -l` read naturally.
  const names = listFiles(pluginDir)
    .filter(shipped)
    .sort((a, b) => (a === 'manifest.json' ? -1 : b === 'manifest.json' ? 1 : 0));
  const zip = createZip(
    names.map((name) => {
      const file = path.join(pluginDir, ...name.split('/'));
      return { name, data: fs.readFileSync(file), modified: fs.statSync(file).mtime };
    }),
  );
  fs.mkdirSync(options.outDir, { recursive: true });
  const file = path.join(path.resolve(options.outDir), `reshoot-panel-${manifest.version}.ccx`);
  // Written aside and renamed, so an installer never sees half a package.
  const partial = `${file}.${process.pid}.partial`;
  fs.writeFileSync(partial, zip);
  fs.renameSync(partial, file);
  const missingPresets = EXPORT_PRESETS.map((p) => `${PRESETS_FOLDER}/${p.file}`).filter((n) => !names.includes(n));
  return { file, version: manifest.version, entries: names, bytes: zip.length, missingPresets };
}

// ---------------------------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------------------------

function findRepoRoot(start: string): string {
  for (let dir = start; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'manifest.json'))) return dir;
    if (path.dirname(dir) === dir)
      throw new PackageError(`no package.json with a manifest.json beside it above ${start}`);
  }
}

export function installHelp(file: string): string {
  return [
    'Install it:',
    '  - double-click the file: Creative Cloud Desktop opens and installs it after a warning that it does not come',
    '    from the Marketplace; or',
    "  - from a terminal, with Adobe's Unified Plugin Installer Agent (admin rights may be needed):",
    '      macOS:   "/Library/Application Support/Adobe/Adobe Desktop Common/RemoteComponents/UPI/UnifiedPluginInstallerAgent/UnifiedPluginInstallerAgent.app/Contents/MacOS/UnifiedPluginInstallerAgent" --install ' +
      JSON.stringify(file),
    '      Windows: "C:\\Program Files\\Common Files\\Adobe\\Adobe Desktop Common\\RemoteComponents\\UPI\\UnifiedPluginInstallerAgent\\UnifiedPluginInstallerAgent.exe" /install ' +
      JSON.stringify(file),
    'Then in Premiere Pro: Window > UXP Plugins > Reshoot, with the engine running (npx reshoot serve).',
  ].join('\n');
}

export function main(): number {
  try {
    const root = findRepoRoot(__dirname);
    const version = (JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string })
      .version;
    const pluginDir = path.join(root, 'dist', 'panel-uxp');
    const built = path.join(pluginDir, 'manifest.json');
    if (isFile(built) && fs.readFileSync(built, 'utf8') !== fs.readFileSync(path.join(root, 'manifest.json'), 'utf8')) {
      throw new PackageError(
        `${built} is not the same as manifest.json: the panel build is stale, run npm run build again`,
      );
    }
    const result = packagePanel({ pluginDir, outDir: path.join(root, 'dist'), expectedVersion: version });
    const kib = (result.bytes / 1024).toFixed(1);
    console.log(`Wrote ${result.file} (${result.entries.length} files, ${kib} KiB): ${result.entries.join(', ')}`);
    if (result.missingPresets.length > 0) {
      // Not an error: everything but rendering through Premiere works without them (panel/presets/README.md).
      console.warn(
        `package:panel: warning: the package has no ${result.missingPresets.join(', ')}; clips that need rendering through Premiere (speed change, reverse, nested) will fail with "no usable export preset". panel/presets/README.md says how to make them.`,
      );
    }
    console.log(installHelp(result.file));
    return 0;
  } catch (err) {
    console.error(err instanceof PackageError ? `package:panel: ${err.message}` : err);
    return 1;
  }
}

if (require.main === module) process.exitCode = main();
