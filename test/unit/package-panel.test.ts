// The .ccx packager: a real plugin folder in a temp dir is packaged, and the archive is read back with a reader
// written from the ZIP specification here (independent of the writer: its own CRC, its own parsing of both the
// central directory and the local headers).
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { inflateRawSync } from 'node:zlib';
import { createZip, installHelp, PackageError, packagePanel, validatePluginFolder } from '../../scripts/package-panel';

const ROOT = path.resolve(__dirname, '..', '..');

/** Bit by bit, deliberately not the table-driven CRC the writer uses. */
function crc32Bitwise(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

interface ReadEntry {
  name: string;
  method: number;
  crc: number;
  data: Buffer;
  flags: number;
  externalAttributes: number;
}

function readZip(zip: Buffer): ReadEntry[] {
  // End of central directory: 22 bytes plus a comment of up to 65535, searched from the end.
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 22 - 0xffff); i--) {
    if (zip.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error('no end of central directory record');
  expect(zip.readUInt16LE(eocd + 4)).toBe(0); // this disk
  expect(zip.readUInt16LE(eocd + 6)).toBe(0); // disk holding the central directory
  const count = zip.readUInt16LE(eocd + 10);
  expect(zip.readUInt16LE(eocd + 8)).toBe(count);
  const cdSize = zip.readUInt32LE(eocd + 12);
  const cdOffset = zip.readUInt32LE(eocd + 16);
  expect(cdOffset + cdSize).toBe(eocd);
  expect(zip.readUInt16LE(eocd + 20)).toBe(0);
  expect(eocd + 22).toBe(zip.length);

  const entries: ReadEntry[] = [];
  let p = cdOffset;
  let expectedLocal = 0;
  for (let n = 0; n < count; n++) {
    expect(zip.readUInt32LE(p)).toBe(0x02014b50);
    const flags = zip.readUInt16LE(p + 8);
    const method = zip.readUInt16LE(p + 10);
    const crc = zip.readUInt32LE(p + 16);
    const compressed = zip.readUInt32LE(p + 20);
    const size = zip.readUInt32LE(p + 24);
    const nameLength = zip.readUInt16LE(p + 28);
    const extraLength = zip.readUInt16LE(p + 30);
    const commentLength = zip.readUInt16LE(p + 32);
    const externalAttributes = zip.readUInt32LE(p + 38);
    const localOffset = zip.readUInt32LE(p + 42);
    const name = zip.toString('utf8', p + 46, p + 46 + nameLength);
    p += 46 + nameLength + extraLength + commentLength;

    // Local entries are contiguous and in central-directory order, and repeat the central header's facts.
    expect(localOffset).toBe(expectedLocal);
    expect(zip.readUInt32LE(localOffset)).toBe(0x04034b50);
    expect(zip.readUInt16LE(localOffset + 6)).toBe(flags);
    expect(zip.readUInt16LE(localOffset + 8)).toBe(method);
    expect(zip.readUInt32LE(localOffset + 14)).toBe(crc);
    expect(zip.readUInt32LE(localOffset + 18)).toBe(compressed);
    expect(zip.readUInt32LE(localOffset + 22)).toBe(size);
    const localNameLength = zip.readUInt16LE(localOffset + 26);
    const localExtraLength = zip.readUInt16LE(localOffset + 28);
    expect(zip.toString('utf8', localOffset + 30, localOffset + 30 + localNameLength)).toBe(name);
    const start = localOffset + 30 + localNameLength + localExtraLength;
    const body = zip.subarray(start, start + compressed);
    expectedLocal = start + compressed;

    expect([0, 8]).toContain(method);
    const data = method === 8 ? inflateRawSync(body) : Buffer.from(body);
    expect(data.length).toBe(size);
    entries.push({ name, method, crc, data, flags, externalAttributes });
  }
  expect(expectedLocal).toBe(cdOffset);
  expect(p).toBe(eocd);
  return entries;
}

const MANIFEST = {
  manifestVersion: 5,
  id: 'com.reshoot.panel',
  name: 'Reshoot',
  version: '1.2.3',
  main: 'index.html',
  host: { app: 'premierepro', minVersion: '25.6.0' },
  entrypoints: [{ type: 'panel', id: 'reshootPanel', label: { default: 'Reshoot' } }],
  icons: [{ width: 24, height: 24, path: 'icons/icon.png', scale: [1, 2], theme: ['all'] }],
  requiredPermissions: { network: { domains: ['http://127.0.0.1:7865'] }, localFileSystem: 'fullAccess' },
};

describe('package-panel', () => {
  let tmp: string;
  let plugin: string;
  let out: string;
  const files: Record<string, Buffer> = {};

  function write(rel: string, data: Buffer | string): void {
    const file = path.join(plugin, rel);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, data);
  }

  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'reshoot-package-'));
    plugin = path.join(tmp, 'panel-uxp');
    out = path.join(tmp, 'out');
    files['manifest.json'] = Buffer.from(JSON.stringify(MANIFEST, null, 2));
    files['index.html'] = Buffer.from(
      '<!doctype html><html><head><link rel="stylesheet" href="index.css" /><link rel="icon" href="missing-but-not-a-stylesheet.png" />' +
        '<script src="https://example.com/remote.js"></script></head><body><div id="app"></div><script src="./index.js"></script></body></html>',
    );
    files['index.css'] = Buffer.from('body { margin: 0; }\n');
    // Repetitive text deflates; random bytes do not, so both storage methods are exercised.
    files['index.js'] = Buffer.from('console.log("reshoot");\n'.repeat(400));
    files['icons/icon.png'] = fs.readFileSync(path.join(ROOT, 'panel', 'icons', 'icon-dark.png'));
    files['icons/icon@2x.png'] = fs.readFileSync(path.join(ROOT, 'panel', 'icons', 'icon-dark@2x.png'));
    files['assets/noise.bin'] = crypto.randomBytes(2048);
    for (const [rel, data] of Object.entries(files)) write(rel, data);
    // Shipped nowhere: OS litter, source maps, earlier packages.
    write('.DS_Store', 'x');
    write('index.js.map', '{}');
    write('old.ccx', 'x');
  });

  afterEach(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('writes a ZIP with manifest.json at the root and every file byte for byte, CRCs valid', () => {
    const result = packagePanel({ pluginDir: plugin, outDir: out, expectedVersion: '1.2.3' });
    expect(result.file).toBe(path.join(out, 'reshoot-panel-1.2.3.ccx'));
    expect(result.version).toBe('1.2.3');
    const zip = fs.readFileSync(result.file);
    expect(result.bytes).toBe(zip.length);
    expect(fs.readdirSync(out)).toEqual(['reshoot-panel-1.2.3.ccx']);

    const entries = readZip(zip);
    const names = entries.map((e) => e.name);
    expect(names[0]).toBe('manifest.json');
    expect([...names].sort()).toEqual(Object.keys(files).sort());
    expect(result.entries).toEqual(names);
    for (const entry of entries) {
      expect(entry.data.equals(files[entry.name])).toBe(true);
      expect(entry.crc).toBe(crc32Bitwise(files[entry.name]));
      expect(entry.flags & 0x0001).toBe(0); // not encrypted
      expect(entry.externalAttributes >>> 16).toBe(0o100644);
    }
    expect(entries.find((e) => e.name === 'index.js')?.method).toBe(8);
    expect(entries.find((e) => e.name === 'assets/noise.bin')?.method).toBe(0);
    expect((JSON.parse(entries[0].data.toString('utf8')) as { version: string }).version).toBe('1.2.3');
  });

  it('says which export presets the package lacks, and ships the ones the plugin folder has', () => {
    const without = packagePanel({ pluginDir: plugin, outDir: out, expectedVersion: '1.2.3' });
    expect(without.missingPresets).toEqual([
      'presets/Reshoot ProRes 422 HQ.epr',
      'presets/Reshoot H.264 High Quality.epr',
    ]);
    write('presets/Reshoot ProRes 422 HQ.epr', '<?xml version="1.0"?><PremiereData Version="3"/>');
    const withOne = packagePanel({ pluginDir: plugin, outDir: out, expectedVersion: '1.2.3' });
    expect(withOne.missingPresets).toEqual(['presets/Reshoot H.264 High Quality.epr']);
    const names = readZip(fs.readFileSync(withOne.file)).map((e) => e.name);
    expect(names).toContain('presets/Reshoot ProRes 422 HQ.epr');
  });

  it('writes empty files, nested folders and non-ASCII names that a reader gets back intact', () => {
    const zip = createZip([
      { name: 'empty.txt', data: new Uint8Array(0) },
      { name: 'a/b/c/deep.txt', data: Buffer.from('deep') },
      { name: 'ü/naïve.txt', data: Buffer.from('utf8 name'), modified: new Date(2024, 4, 17, 13, 45, 30) },
    ]);
    const entries = readZip(zip);
    expect(entries.map((e) => [e.name, e.data.toString()])).toEqual([
      ['empty.txt', ''],
      ['a/b/c/deep.txt', 'deep'],
      ['ü/naïve.txt', 'utf8 name'],
    ]);
    expect(entries[0].crc).toBe(0);
    expect(entries[2].flags & 0x0800).toBe(0x0800); // UTF-8 name flag
    expect(entries[1].flags & 0x0800).toBe(0);
    // MS-DOS date and time of the third entry: 2024-05-17 13:45:30.
    const cd = zip.readUInt32LE(zip.length - 6);
    let p = cd;
    for (let i = 0; i < 2; i++) p += 46 + zip.readUInt16LE(p + 28);
    expect(zip.readUInt16LE(p + 12)).toBe((13 << 11) | (45 << 5) | 15);
    expect(zip.readUInt16LE(p + 14)).toBe(((2024 - 1980) << 9) | (5 << 5) | 17);
  });

  it('refuses entry names that would escape or collide', () => {
    for (const name of ['../evil', '/abs', 'a\\b', 'a//b', './a', '']) {
      expect(() => createZip([{ name, data: Buffer.from('x') }])).toThrow(PackageError);
    }
    expect(() =>
      createZip([
        { name: 'a', data: Buffer.from('1') },
        { name: 'a', data: Buffer.from('2') },
      ]),
    ).toThrow(/duplicate/);
  });

  it('refuses a folder whose main file is missing, and says which', () => {
    fs.rmSync(path.join(plugin, 'index.html'));
    expect(() => packagePanel({ pluginDir: plugin, outDir: out, expectedVersion: '1.2.3' })).toThrow(
      /main file index\.html is missing/,
    );
    expect(fs.existsSync(out)).toBe(false);
  });

  it('refuses an HTML entry whose script bundle or stylesheet is missing', () => {
    fs.rmSync(path.join(plugin, 'index.js'));
    expect(() => validatePluginFolder(plugin, '1.2.3')).toThrow(/index\.html loads index\.js, which is missing/);
    fs.rmSync(path.join(plugin, 'index.css'));
    expect(() => validatePluginFolder(plugin, '1.2.3')).toThrow(/index\.html loads index\.css, which is missing/);
  });

  it('refuses a manifest whose version differs from package.json', () => {
    expect(() => packagePanel({ pluginDir: plugin, outDir: out, expectedVersion: '1.2.4' })).toThrow(
      /version 1\.2\.3 differs from package\.json's 1\.2\.4/,
    );
    write('manifest.json', JSON.stringify({ ...MANIFEST, version: 'one' }));
    expect(() => validatePluginFolder(plugin, '1.2.3')).toThrow(/version "one" is not major\.minor\.patch/);
  });

  it('refuses a manifest that does not parse or lacks what UXP requires, listing every problem', () => {
    write('manifest.json', '{ "manifestVersion": 5, ');
    expect(() => validatePluginFolder(plugin, '1.2.3')).toThrow(/manifest\.json is not valid JSON/);

    write(
      'manifest.json',
      JSON.stringify({
        ...MANIFEST,
        manifestVersion: 6,
        host: [MANIFEST.host],
        entrypoints: [MANIFEST.entrypoints[0], MANIFEST.entrypoints[0]],
      }),
    );
    let message = '';
    try {
      validatePluginFolder(plugin, '1.2.3');
    } catch (err) {
      expect(err).toBeInstanceOf(PackageError);
      message = (err as Error).message;
    }
    expect(message).toMatch(/manifestVersion is 6/);
    expect(message).toMatch(/host is an array/);
    expect(message).toMatch(/entrypoint id "reshootPanel" is used twice/);

    fs.rmSync(path.join(plugin, 'manifest.json'));
    expect(() => validatePluginFolder(plugin, '1.2.3')).toThrow(/no manifest\.json in .*build the panel first/);
  });

  it('refuses missing icons, including the @2x variant a scale promises, and paths outside the folder', () => {
    fs.rmSync(path.join(plugin, 'icons', 'icon@2x.png'));
    expect(() => validatePluginFolder(plugin, '1.2.3')).toThrow(
      /icon icons\/icon@2x\.png \(icons\[0\], scale 2\) is missing/,
    );
    fs.rmSync(path.join(plugin, 'icons', 'icon.png'));
    expect(() => validatePluginFolder(plugin, '1.2.3')).toThrow(/icon icons\/icon\.png \(icons\[0\]\) is missing/);

    write('manifest.json', JSON.stringify({ ...MANIFEST, icons: [{ width: 24, height: 24, path: '../outside.png' }] }));
    expect(() => validatePluginFolder(plugin, '1.2.3')).toThrow(/must be a relative path inside the plugin folder/);
  });

  it('checks the repository manifest and icons the same way', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    // The repository's manifest with the files it names, staged as the build lays them out.
    const staged = path.join(tmp, 'staged');
    fs.mkdirSync(path.join(staged, 'icons'), { recursive: true });
    fs.copyFileSync(path.join(ROOT, 'manifest.json'), path.join(staged, 'manifest.json'));
    for (const icon of fs.readdirSync(path.join(ROOT, 'panel', 'icons'))) {
      fs.copyFileSync(path.join(ROOT, 'panel', 'icons', icon), path.join(staged, 'icons', icon));
    }
    fs.writeFileSync(path.join(staged, 'index.html'), '<script src="index.js"></script>');
    fs.writeFileSync(path.join(staged, 'index.js'), '');
    const result = packagePanel({ pluginDir: staged, outDir: out, expectedVersion: pkg.version });
    expect(path.basename(result.file)).toBe(`reshoot-panel-${pkg.version}.ccx`);
    expect(readZip(fs.readFileSync(result.file)).map((e) => e.name)).toEqual([
      'manifest.json',
      'icons/icon-dark.png',
      'icons/icon-dark@2x.png',
      'icons/icon-light.png',
      'icons/icon-light@2x.png',
      'index.html',
      'index.js',
    ]);
  });

  it('tells how to install the package on macOS and Windows', () => {
    const help = installHelp('/tmp/reshoot-panel-1.2.3.ccx');
    expect(help).toMatch(/double-click/);
    expect(help).toContain('UnifiedPluginInstallerAgent" --install "/tmp/reshoot-panel-1.2.3.ccx"');
    expect(help).toContain('UnifiedPluginInstallerAgent.exe" /install "/tmp/reshoot-panel-1.2.3.ccx"');
  });
});
