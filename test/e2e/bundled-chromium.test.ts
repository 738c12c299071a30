// The fresh-machine path of test/support/browser.ts: the Chromium that the npm package @sparticuz/chromium ships,
// unpacked by our own code and launched by playwright-core, renders and runs a real page. Forced here whatever the
// machine has installed, so that CI (which has /usr/bin/chromium) still proves that `npm ci && npm test` works
// without it. Also records what that build can play, since the web UI shows results in a <video>.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Browser } from 'playwright-core';
import {
  browserChoice,
  bundledSupported,
  extractTar,
  launchChromium,
  systemBrowserPaths,
  unpackBundledChromium,
} from '../support/browser';

jest.setTimeout(120_000);

// Browser-side names the page callbacks use (this file compiles without the DOM library).
declare const document: {
  getElementById(id: string): {
    getContext(kind: '2d'): {
      getImageData(x: number, y: number, w: number, h: number): { data: ArrayLike<number> };
      measureText(s: string): { width: number };
      font: string;
    };
    textContent: string | null;
  } | null;
  createElement(tag: 'video'): { canPlayType(type: string): string };
  fonts: { check(font: string): boolean };
};

const support = bundledSupported();

/** A ustar header block for `name` (regular file unless `type` says otherwise), with a valid checksum. */
function tarHeader(name: string, size: number, type = '0'): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 'utf8');
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
  h.write('00000000000\0', 136);
  h.write(type, 156);
  h.write('ustar\0', 257);
  h.write('00', 263);
  h.fill(32, 148, 156);
  const sum = h.reduce((s, b) => s + b, 0);
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return h;
}

function tarOf(entries: [name: string, body: string, type?: string][]): Buffer {
  const parts: Buffer[] = [];
  for (const [name, body, type] of entries) {
    const data = Buffer.from(body);
    parts.push(tarHeader(name, data.length, type), data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  return Buffer.concat([...parts, Buffer.alloc(1024)]);
}

describe('finding a browser', () => {
  const saved = { CHROMIUM_PATH: process.env.CHROMIUM_PATH, RESHOOT_TEST_BROWSER: process.env.RESHOOT_TEST_BROWSER };
  afterEach(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  it('takes CHROMIUM_PATH as given: a path that is not an executable file is an error, not a reason to look elsewhere', async () => {
    delete process.env.RESHOOT_TEST_BROWSER;
    process.env.CHROMIUM_PATH = path.join(os.tmpdir(), 'no-such-chromium');
    await expect(launchChromium()).rejects.toThrow(/CHROMIUM_PATH=.*no-such-chromium is not an executable file/);
    process.env.CHROMIUM_PATH = path.join(__dirname, 'bundled-chromium.test.ts');
    await expect(launchChromium()).rejects.toThrow(/is not an executable file/);
  });

  it('reads RESHOOT_TEST_BROWSER as auto, system or bundled, and refuses anything else', () => {
    expect(['', 'auto', 'AUTO', 'System', ' bundled '].map((v) => browserChoice(v))).toEqual([
      'auto',
      'auto',
      'auto',
      'system',
      'bundled',
    ]);
    expect(() => browserChoice('chrome')).toThrow(/RESHOOT_TEST_BROWSER=chrome is not one of auto, system, bundled/);
  });

  it("knows each platform's standard install paths", () => {
    expect(systemBrowserPaths('linux')).toEqual(
      expect.arrayContaining(['/usr/bin/chromium', '/usr/bin/google-chrome']),
    );
    expect(systemBrowserPaths('darwin')).toContain('/Applications/Google Chrome.app/Contents/MacOS/Google Chrome');
    expect(systemBrowserPaths('win32').some((p) => p.endsWith('\\Google\\Chrome\\Application\\chrome.exe'))).toBe(
      process.env.PROGRAMFILES !== undefined || process.env.LOCALAPPDATA !== undefined,
    );
    expect(bundledSupported('darwin', 'arm64')).toEqual({
      ok: false,
      why: '@sparticuz/chromium ships a linux-x64 build only; this is darwin-arm64',
    });
  });
});

describe('the tar reader that unpacks it', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reshoot-tar-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('writes regular files and folders, and refuses absolute names, .. and links', () => {
    expect(
      extractTar(
        tarOf([
          ['a/', '', '5'],
          ['a/b.txt', 'hello'],
        ]),
        dir,
      ),
    ).toEqual(['a/b.txt']);
    expect(fs.readFileSync(path.join(dir, 'a', 'b.txt'), 'utf8')).toBe('hello');
    expect(() => extractTar(tarOf([['../escape.txt', 'x']]), dir)).toThrow(/refusing/);
    expect(() => extractTar(tarOf([['a/../../escape.txt', 'x']]), dir)).toThrow(/refusing/);
    expect(() => extractTar(tarOf([['/etc/escape.txt', 'x']]), dir)).toThrow(/refusing/);
    expect(() => extractTar(tarOf([['link', '', '2']]), dir)).toThrow(/not a regular file or folder/);
    const bad = tarOf([['c.txt', 'x']]);
    bad[0] ^= 1;
    expect(() => extractTar(bad, dir)).toThrow(/checksum/);
    expect(fs.existsSync(path.join(path.dirname(dir), 'escape.txt'))).toBe(false);
  });
});

if (support.ok) {
  describe('the npm-shipped Chromium (linux-x64)', () => {
    let browser: Browser | undefined;
    afterAll(async () => {
      await browser?.close();
    });

    it('is what auto falls back to when no system browser is found or the one found does not start', async () => {
      const saved = {
        CHROMIUM_PATH: process.env.CHROMIUM_PATH,
        RESHOOT_TEST_BROWSER: process.env.RESHOOT_TEST_BROWSER,
      };
      delete process.env.CHROMIUM_PATH;
      delete process.env.RESHOOT_TEST_BROWSER;
      try {
        const none = await launchChromium([], { searchPaths: [], channels: [] });
        await none.browser.close();
        expect([none.found.source, none.found.why]).toEqual(['bundled', expect.stringMatching(/^no system Chrome/)]);
        // A "browser" that exits at once (as a distribution's stub script for a missing snap would).
        const broken = await launchChromium([], { searchPaths: ['/bin/false'], channels: [] });
        await broken.browser.close();
        expect(broken.found.source).toBe('bundled');
        await expect(launchChromium([], { choice: 'system', searchPaths: [], channels: [] })).rejects.toThrow(
          /RESHOOT_TEST_BROWSER=system: No Chromium for the browser tests\. Install one/,
        );
      } finally {
        for (const [k, v] of Object.entries(saved)) if (v !== undefined) process.env[k] = v;
      }
    });

    it('unpacks once per version, and concurrent unpackers end with one whole copy', async () => {
      const cacheRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'reshoot-chromium-cache-'));
      try {
        const [a, b] = await Promise.all([unpackBundledChromium(cacheRoot), unpackBundledChromium(cacheRoot)]);
        expect(a.exe).toBe(b.exe);
        expect([a.unpacked, b.unpacked].filter(Boolean).length).toBeGreaterThanOrEqual(1);
        // Only the final folder remains: no temporary folder of either unpacker.
        expect(fs.readdirSync(cacheRoot)).toEqual([a.version]);
        expect(fs.statSync(a.exe).mode & 0o111).not.toBe(0);
        for (const f of ['al2023/lib/libnss3.so', 'libGLESv2.so', 'fonts/fonts.conf', 'fonts/fonts/Open_Sans'])
          expect([f, fs.existsSync(path.join(a.dir, f))]).toEqual([f, true]);
        const again = await unpackBundledChromium(cacheRoot);
        expect(again.unpacked).toBe(false);
      } finally {
        fs.rmSync(cacheRoot, { recursive: true, force: true });
      }
    });

    it('launches headless and renders a page: canvas pixels, a click handler, its own fonts', async () => {
      const launched = await launchChromium([], { choice: 'bundled' });
      browser = launched.browser;
      expect(launched.found.source).toBe('bundled');
      expect(browser.version()).toMatch(/^147\./);
      const page = await browser.newPage({ viewport: { width: 200, height: 120 } });
      await page.setContent(`<!doctype html><body style="margin:0">
        <canvas id="c" width="100" height="50"></canvas><button id="b" style="font:16px sans-serif">Go</button>
        <p id="out">0</p>
        <script>
          const g = document.getElementById('c').getContext('2d');
          g.fillStyle = 'rgb(200, 30, 40)'; g.fillRect(0, 0, 50, 50);
          g.fillStyle = 'rgb(10, 120, 250)'; g.fillRect(50, 0, 50, 50);
          let n = 0;
          document.getElementById('b').addEventListener('click', () => { document.getElementById('out').textContent = String(++n * 21); });
        </script></body>`);
      const pixels = await page.evaluate(() => {
        const g = document.getElementById('c')!.getContext('2d');
        return [Array.from(g.getImageData(10, 10, 1, 1).data), Array.from(g.getImageData(80, 40, 1, 1).data)];
      });
      expect(pixels).toEqual([
        [200, 30, 40, 255],
        [10, 120, 250, 255],
      ]);
      await page.click('#b');
      await page.click('#b');
      expect(await page.textContent('#out')).toBe('42');
      // Text is laid out with the fonts it ships (Open Sans through its own fontconfig), and shows on screen.
      const text = await page.evaluate(() => {
        const g = document.getElementById('c')!.getContext('2d');
        g.font = '20px "Open Sans"';
        return { width: g.measureText('Reshoot').width, openSans: document.fonts.check('20px "Open Sans"') };
      });
      expect(text.width).toBeGreaterThan(40);
      expect(text.openSans).toBe(true);
      // Screenshots (the e2e suite takes one of every state) come back as PNG of the asked size.
      const png = await page.screenshot({ clip: { x: 0, y: 0, width: 200, height: 120 } });
      expect(png.subarray(1, 4).toString()).toBe('PNG');
      expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([200, 120]);
      await page.close();
    });

    it('says which video formats it can play (the web UI plays H.264 MP4 results)', async () => {
      browser ??= (await launchChromium([], { choice: 'bundled' })).browser;
      const page = await browser.newPage();
      const formats = {
        'H.264 MP4': 'video/mp4; codecs="avc1.640028"',
        'VP9 WebM': 'video/webm; codecs="vp9"',
        'AV1 MP4': 'video/mp4; codecs="av01.0.05M.08"',
      };
      const can = await page.evaluate((f) => {
        const v = document.createElement('video');
        return Object.fromEntries(Object.entries(f).map(([k, t]) => [k, v.canPlayType(t)]));
      }, formats);
      console.log(`npm-shipped Chromium ${browser.version()} canPlayType: ${JSON.stringify(can)}`);
      // The web UI's before/after player plays the engine's H.264 MP4 (test/e2e/web-ui.test.ts plays one); a build
      // without proprietary codecs would fail there, so say so here first.
      expect(can).toEqual({ 'H.264 MP4': 'probably', 'VP9 WebM': 'probably', 'AV1 MP4': 'probably' });
      await page.close();
    });
  });
} else {
  it(`the npm-shipped Chromium does not apply here: ${support.why}`, () => {
    expect(process.platform === 'linux' && process.arch === 'x64').toBe(false);
    expect(support.why).toMatch(/linux-x64 only/);
  });
}
