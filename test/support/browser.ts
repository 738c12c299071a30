// Chromium for the browser tests, found without anything installed by hand. In order:
//
//   1. CHROMIUM_PATH, when set: that file or an error (no fallback, so a typo cannot silently test another browser);
//   2. a system Chrome, Chromium or Edge: the usual install paths, then playwright-core's 'chrome' and 'msedge'
//      channels (which know each platform's standard locations);
//   3. the Chromium that the npm package @sparticuz/chromium ships (linux-x64), unpacked from its brotli files into
//      node_modules/.cache/reshoot-chromium/<version>/ on first use;
//   4. otherwise an error that says what to install or set.
//
// RESHOOT_TEST_BROWSER picks among them: `auto` (the default, the order above), `system` (1 and 2 only) or `bundled`
// (3 only, CHROMIUM_PATH ignored), so that the fresh-machine path can be tested on a machine that has a system browser.
//
// Only the package's files are used, not its JavaScript: that unpacks into fixed /tmp paths shared by every process
// and sets up an AWS Lambda environment. Here the unpacking goes to a private temporary folder that is renamed into
// place when complete, so jest workers running side by side never see half a browser.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import { chromium, type Browser, type LaunchOptions } from 'playwright-core';

const ROOT = path.resolve(__dirname, '../..');

/** What RESHOOT_TEST_BROWSER may say. */
export type BrowserChoice = 'auto' | 'system' | 'bundled';

/** A browser that can be launched, and why it is the one. */
export interface FoundBrowser {
  source: 'CHROMIUM_PATH' | 'system' | 'channel' | 'bundled';
  /** For display: a path, or `channel:chrome`. */
  name: string;
  executablePath?: string;
  channel?: 'chrome' | 'msedge';
  /** Extra environment for the browser process (the bundled one needs its libraries and fonts). */
  env?: Record<string, string>;
  why: string;
}

/** The flags every browser test launches with: headless, no sandbox, no network of its own (CI has none). */
export const BASE_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-dev-shm-usage',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

export function browserChoice(value = process.env.RESHOOT_TEST_BROWSER): BrowserChoice {
  const v = (value ?? '').trim().toLowerCase() || 'auto';
  if (v === 'auto' || v === 'system' || v === 'bundled') return v;
  throw new Error(`RESHOOT_TEST_BROWSER=${value} is not one of auto, system, bundled`);
}

function isExecutableFile(file: string): boolean {
  try {
    if (!fs.statSync(file).isFile()) return false;
    fs.accessSync(file, process.platform === 'win32' ? fs.constants.F_OK : fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Where Chrome, Chromium and Edge install themselves, most likely first. */
export function systemBrowserPaths(platform: NodeJS.Platform = process.platform): string[] {
  if (platform === 'darwin') {
    const apps = [
      'Google Chrome.app/Contents/MacOS/Google Chrome',
      'Chromium.app/Contents/MacOS/Chromium',
      'Microsoft Edge.app/Contents/MacOS/Microsoft Edge',
      'Google Chrome Canary.app/Contents/MacOS/Google Chrome Canary',
    ];
    return [
      ...apps.map((a) => path.join('/Applications', a)),
      ...apps.map((a) => path.join(os.homedir(), 'Applications', a)),
    ];
  }
  if (platform === 'win32') {
    const roots = [process.env.PROGRAMFILES, process.env['PROGRAMFILES(X86)'], process.env.LOCALAPPDATA].filter(
      (r): r is string => !!r,
    );
    const rel = [
      'Google\\Chrome\\Application\\chrome.exe',
      'Chromium\\Application\\chrome.exe',
      'Microsoft\\Edge\\Application\\msedge.exe',
    ];
    return roots.flatMap((r) => rel.map((p) => path.win32.join(r, p)));
  }
  return [
    '/usr/bin/chromium',
    '/usr/bin/chromium-browser',
    '/usr/lib/chromium/chromium',
    '/usr/bin/google-chrome',
    '/usr/bin/google-chrome-stable',
    '/opt/google/chrome/chrome',
    '/usr/bin/microsoft-edge',
    '/usr/bin/microsoft-edge-stable',
    '/snap/bin/chromium',
  ];
}

// ---- the npm-shipped Chromium ----

/** The folder of the installed @sparticuz/chromium package (its exports do not include package.json). */
function bundledPackageDir(): string {
  // build/cjs/index.cjs → the package folder. Resolving does not load it.
  return path.resolve(path.dirname(require.resolve('@sparticuz/chromium')), '../..');
}

/** Whether the npm-shipped build can run here at all; the reason when not. */
export function bundledSupported(
  platform: NodeJS.Platform = process.platform,
  arch: string = process.arch,
): { ok: true } | { ok: false; why: string } {
  return platform === 'linux' && arch === 'x64'
    ? { ok: true }
    : { ok: false, why: `@sparticuz/chromium ships a linux-x64 build only; this is ${platform}-${arch}` };
}

/**
 * Reads a tar archive (ustar or old GNU: regular files and folders only) into `dest`. Anything else, an absolute name
 * or a name with `..` is refused: the archive comes from a package, not from us.
 */
export function extractTar(tar: Buffer, dest: string): string[] {
  const written: string[] = [];
  const field = (h: Buffer, at: number, len: number) => h.toString('utf8', at, at + len).replace(/\0.*$/s, '');
  let off = 0;
  while (off + 512 <= tar.length) {
    const h = tar.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const sum = h.reduce((s, b, i) => s + (i >= 148 && i < 156 ? 32 : b), 0);
    const stored = parseInt(field(h, 148, 8).trim(), 8);
    if (sum !== stored) throw new Error(`tar header at ${off}: checksum ${stored}, computed ${sum}`);
    const magic = h.toString('latin1', 257, 263);
    let name = field(h, 0, 100);
    // POSIX ustar keeps the start of long names in `prefix`; old GNU uses those bytes for times.
    if (magic === 'ustar\0' && field(h, 345, 155)) name = `${field(h, 345, 155)}/${name}`;
    const sizeField = field(h, 124, 12).trim();
    if (!/^[0-7]*$/.test(sizeField)) throw new Error(`tar entry ${name}: size field is not octal`);
    const size = parseInt(sizeField || '0', 8);
    const mode = parseInt(field(h, 100, 8).trim() || '644', 8) & 0o777;
    const type = String.fromCharCode(h[156]);
    const parts = name.split('/').filter((p) => p !== '' && p !== '.');
    if (path.isAbsolute(name) || /^[A-Za-z]:/.test(name) || parts.includes('..') || parts.length === 0)
      throw new Error(`tar entry ${JSON.stringify(name)}: refusing an absolute, empty or .. name`);
    const target = path.join(dest, ...parts);
    if (type === '5') {
      fs.mkdirSync(target, { recursive: true });
    } else if (type === '0' || type === '\0') {
      if (off + 512 + size > tar.length) throw new Error(`tar entry ${name}: truncated`);
      fs.mkdirSync(path.dirname(target), { recursive: true });
      fs.writeFileSync(target, tar.subarray(off + 512, off + 512 + size), { mode: mode | 0o600 });
      written.push(parts.join('/'));
    } else {
      throw new Error(`tar entry ${name}: type ${JSON.stringify(type)} is not a regular file or folder`);
    }
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return written;
}

/** The environment the unpacked browser needs: NSS/NSPR/expat next to it, fonts from its own fontconfig. */
function bundledEnv(dir: string): Record<string, string> {
  const lib = path.join(dir, 'al2023', 'lib');
  return {
    LD_LIBRARY_PATH: [lib, ...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean)].join(':'),
    FONTCONFIG_PATH: path.join(dir, 'fonts'),
  };
}

/**
 * Unpacks the npm-shipped Chromium once per package version and returns its executable. Concurrent callers (jest
 * workers) each unpack into their own temporary folder; the first rename wins and the others use its result.
 */
export async function unpackBundledChromium(cacheRoot = path.join(ROOT, 'node_modules', '.cache', 'reshoot-chromium')) {
  const supported = bundledSupported();
  if (!supported.ok) throw new Error(supported.why);
  const pkg = bundledPackageDir();
  const version = (JSON.parse(fs.readFileSync(path.join(pkg, 'package.json'), 'utf8')) as { version: string }).version;
  const dir = path.join(cacheRoot, version);
  const exe = path.join(dir, 'chromium');
  if (isExecutableFile(exe) && fs.existsSync(path.join(dir, 'complete'))) return { dir, exe, version, unpacked: false };

  const bin = path.join(pkg, 'bin');
  fs.mkdirSync(cacheRoot, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(cacheRoot, `.${version}-${process.pid}-`));
  try {
    // The executable: 60 MB compressed, streamed rather than held in memory.
    await pipeline(
      fs.createReadStream(path.join(bin, 'chromium.br')),
      zlib.createBrotliDecompress(),
      fs.createWriteStream(path.join(tmp, 'chromium'), { mode: 0o755 }),
    );
    fs.chmodSync(path.join(tmp, 'chromium'), 0o755);
    const untar = (file: string, into: string) =>
      extractTar(zlib.brotliDecompressSync(fs.readFileSync(path.join(bin, file))), into);
    // SwiftShader's libraries sit beside the executable, where Chromium looks for them.
    untar('swiftshader.tar.br', tmp);
    untar('al2023.tar.br', path.join(tmp, 'al2023'));
    const fontsDir = path.join(tmp, 'fonts');
    untar('fonts.tar.br', fontsDir);
    // The shipped fonts.conf names /tmp/fonts (Lambda's layout); point it at this folder's copy instead. Paths are
    // those of the final folder, which the rename below makes true.
    fs.writeFileSync(
      path.join(fontsDir, 'fonts.conf'),
      `<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig>\n` +
        `  <dir>${path.join(dir, 'fonts', 'fonts')}</dir>\n  <cachedir>${path.join(dir, 'fonts-cache')}</cachedir>\n` +
        `</fontconfig>\n`,
    );
    fs.writeFileSync(path.join(tmp, 'complete'), `${version}\n`);
    try {
      fs.renameSync(tmp, dir);
      return { dir, exe, version, unpacked: true };
    } catch (err) {
      // Another process got there first (ENOTEMPTY/EEXIST/EPERM): use its copy if it is whole.
      if (isExecutableFile(exe) && fs.existsSync(path.join(dir, 'complete')))
        return { dir, exe, version, unpacked: false };
      throw err;
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

async function bundledBrowser(why: string): Promise<FoundBrowser> {
  const { dir, exe, version, unpacked } = await unpackBundledChromium();
  return {
    source: 'bundled',
    name: exe,
    executablePath: exe,
    env: bundledEnv(dir),
    why: `${why}; @sparticuz/chromium ${version}${unpacked ? ', unpacked just now' : ''}`,
  };
}

// ---- finding and launching ----

const NONE_FOUND =
  'No Chromium for the browser tests. Install one (Debian/Ubuntu: apt-get install chromium; or Google Chrome or ' +
  'Microsoft Edge), set CHROMIUM_PATH to a Chrome/Chromium executable, or on linux-x64 run npm ci so that the ' +
  'devDependency @sparticuz/chromium provides one (RESHOOT_TEST_BROWSER=bundled forces it).';

function isNotFound(err: unknown): boolean {
  return /is not found at|not found at|executable doesn't exist|ENOENT/i.test(String((err as Error)?.message ?? err));
}

export interface Launched {
  browser: Browser;
  found: FoundBrowser;
}

/**
 * Finds a browser as the header of this file says and launches it headless with BASE_ARGS and `extraArgs`. Logs once
 * which browser was used and why.
 */
export async function launchChromium(
  extraArgs: string[] = [],
  options: Omit<LaunchOptions, 'executablePath' | 'channel' | 'args' | 'env'> & {
    choice?: BrowserChoice;
    /** Where to look for a system browser, and which playwright channels to try (tests of this search). */
    searchPaths?: string[];
    channels?: ('chrome' | 'msedge')[];
  } = {},
): Promise<Launched> {
  const {
    choice = browserChoice(),
    searchPaths = systemBrowserPaths(),
    channels = ['chrome', 'msedge'],
    ...launchOptions
  } = options;
  const args = [...BASE_ARGS, ...extraArgs];
  const tried: string[] = [];
  const launch = async (found: FoundBrowser): Promise<Launched> => {
    const browser = await chromium.launch({
      headless: true,
      ...launchOptions,
      args,
      executablePath: found.executablePath,
      channel: found.channel,
      env: found.env ? { ...process.env, ...found.env } : undefined,
    });
    console.log(
      `browser tests: ${found.source} ${found.name} (${browser.version()}); ${found.why}` +
        (tried.length ? `; passed over: ${tried.join('; ')}` : ''),
    );
    return { browser, found };
  };

  const envPath = process.env.CHROMIUM_PATH;
  if (choice === 'bundled') {
    const asked = options.choice ? 'asked for by the test' : 'RESHOOT_TEST_BROWSER=bundled';
    return launch(await bundledBrowser(`${asked}${envPath ? ' (CHROMIUM_PATH ignored)' : ''}`));
  }
  if (envPath) {
    if (!isExecutableFile(envPath))
      throw new Error(`CHROMIUM_PATH=${envPath} is not an executable file; fix it or unset it to let the tests search`);
    return launch({ source: 'CHROMIUM_PATH', name: envPath, executablePath: envPath, why: 'CHROMIUM_PATH is set' });
  }
  const fallback = choice === 'auto';
  for (const p of searchPaths) {
    if (!isExecutableFile(p)) continue;
    try {
      return await launch({ source: 'system', name: p, executablePath: p, why: `found at a standard path` });
    } catch (err) {
      if (!fallback) throw err;
      tried.push(`${p} failed to launch: ${String((err as Error).message).split('\n')[0]}`);
    }
  }
  for (const channel of channels) {
    try {
      return await launch({
        source: 'channel',
        name: `channel:${channel}`,
        channel,
        why: `playwright-core found the '${channel}' channel`,
      });
    } catch (err) {
      if (!isNotFound(err) && !fallback) throw err;
      if (!isNotFound(err))
        tried.push(`channel ${channel} failed to launch: ${String((err as Error).message).split('\n')[0]}`);
    }
  }
  if (choice === 'system') throw new Error(`RESHOOT_TEST_BROWSER=system: ${NONE_FOUND}`);
  if (!bundledSupported().ok) throw new Error(NONE_FOUND);
  try {
    return await launch(
      await bundledBrowser(`no system Chrome, Chromium or Edge ${tried.length ? 'started' : 'found'}`),
    );
  } catch (err) {
    throw new Error(`${NONE_FOUND}\nThe npm-shipped Chromium failed: ${(err as Error).message}`, { cause: err });
  }
}
