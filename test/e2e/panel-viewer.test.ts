// The panel as an editor meets it docked in Premiere, 320×560, and in a browser tab at 1280×800, in real Chromium
// against a real `reshoot serve` with the generated oracle model: the action and the new job's progress stay in view
// after every click, the clip shows in the viewer as soon as it is chosen (filmstrip, in/out marks, source timecode),
// the box mask is drawn, moved and resized from the keyboard, the result is compared five ways and stays on the job
// the user is looking at, and axe-core finds no serious or critical violation in any state visited, at either size.
// Screenshots of each state, at both sizes, go to test-output/e2e/panel-viewer/.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import type { Job } from '../../engine/src/api/schemas';
import { makeTestClip } from '../../engine/src/media';
import type { ClipSelection, Selection } from '../../panel/src/host/host';
import { launchChromium } from '../support/browser';
import { openPremierePanel } from '../support/premiere-panel';
import { startServe, stopChildren, type Served } from '../support/children';
import {
  DOCKED,
  WIDE,
  clickInView,
  expectInView as inView,
  expectInViewDocked,
  panelChecks,
} from '../support/panel-checks';

const ROOT = path.resolve(__dirname, '../..');
const WEB_UI = path.join(ROOT, 'dist/panel-web/index.html');
const checks = panelChecks('panel-viewer');

jest.setTimeout(120_000);

// Callbacks passed to page.evaluate run in Chromium; this file is compiled without the DOM library (see
// web-ui.test.ts), so these declare the few browser names the callbacks use.
interface El {
  id: string;
  textContent: string | null;
  style: Record<string, string>;
  getAttribute(name: string): string | null;
  getBoundingClientRect(): { left: number; top: number; width: number; height: number };
}
interface Ctx2d {
  drawImage(src: unknown, x: number, y: number, w: number, h: number): void;
  getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray };
}
interface CanvasEl extends El {
  width: number;
  height: number;
  getContext(kind: '2d'): Ctx2d;
}
declare const document: {
  querySelector<E = El>(selector: string): E | null;
  querySelectorAll<E = El>(selector: string): E[];
  createElement(tag: 'canvas'): CanvasEl;
  activeElement: El | null;
};
declare const window: {
  getComputedStyle(el: unknown): Record<string, string>;
};
/** window.harness of fixtures/premiere-harness.mts, as far as this file drives it. */
interface Harness {
  setSelection(sel: Selection): void;
}
type InputEl = El & { value: string; dispatchEvent(e: unknown): boolean };
declare const Image: new () => { src: string; decode(): Promise<void> };
declare const Event: new (type: string, init?: { bubbles?: boolean }) => unknown;

let home: string;
let clip: string;
let ntscClip: string;
let engine: Served;
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];

async function api<T>(route: string): Promise<T> {
  const res = await fetch(`${engine.origin}${route}`, { headers: { authorization: `Bearer ${engine.token}` } });
  return (await res.json()) as T;
}

/** The state on screen, pictured and checked with axe-core docked, then in a browser tab at 1280×800. */
async function checkState(name: string): Promise<void> {
  await checks.checkState(page, name);
}

const expectInView = (selector: string) => inView(page, selector);
/** Every click of this suite: afterwards, docked at 320×560, the action is still on screen. */
const click = (selector: string) => clickInView(page, selector);

async function newestJobId(): Promise<string> {
  return (await page.getAttribute('#jobs article.job:first-child', 'data-job-id'))!;
}

/** The id of the job a click added to the top of the list, given the one on top before it. */
async function waitForNewJob(after: string | null): Promise<string> {
  await page.waitForFunction((prev) => {
    const id = document.querySelector('#jobs article.job:first-child')?.getAttribute('data-job-id');
    return !!id && id !== prev;
  }, after);
  return newestJobId();
}

beforeAll(async () => {
  if (!fs.existsSync(WEB_UI))
    throw new Error(`${WEB_UI} is missing: run npm run build (npm test does) before the e2e tests`);
  home = fs.mkdtempSync(path.join(os.tmpdir(), 'reshoot-viewer-'));
  clip = path.join(home, 'street.mp4');
  ntscClip = path.join(home, 'ntsc.mp4');
  const [ntscMade, clipMade, started, launched] = await Promise.allSettled([
    makeTestClip({ file: ntscClip, width: 64, height: 36, fps: { num: 30000, den: 1001 }, frames: 40 }),
    makeTestClip({
      file: clip,
      width: 128,
      height: 72,
      fps: { num: 24, den: 1 },
      frames: 24,
      content: 'moving-square',
    }),
    startServe({ home }),
    launchChromium(['--autoplay-policy=no-user-gesture-required']),
  ]);
  if (started.status === 'fulfilled') engine = started.value;
  if (launched.status === 'fulfilled') browser = launched.value.browser;
  for (const r of [ntscMade, clipMade, started, launched]) if (r.status === 'rejected') throw r.reason;
  const context = await browser.newContext({ viewport: DOCKED, deviceScaleFactor: 1 });
  page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(`pageerror: ${e.message}`));
});

afterAll(async () => {
  try {
    await browser?.close();
  } finally {
    await stopChildren();
    if (home) fs.rmSync(home, { recursive: true, force: true });
    // The axe summary of every state, for the CI log.
    if (checks.seen.length) process.stdout.write(`axe-core:\n  ${checks.seen.join('\n  ')}\n`);
  }
});

it('opens docked at 320×560 with the actions in view, a level-one heading and no serious axe violation', async () => {
  await page.goto(engine.printedUrl);
  await page.waitForSelector('#engine-status[data-state="connected"]');
  await expectInView('#preview');
  await expectInView('#edit');
  expect(await page.textContent('h1')).toBe('Reshoot');
  // The page itself never scrolls: only the content between the header and the action bar does.
  expect(await page.evaluate(() => document.querySelector<{ scrollHeight: number }>('html')!.scrollHeight)).toBe(
    DOCKED.height,
  );
  await checkState('01-empty');
  // Each section folds to its title, which is a button saying whether it is open.
  const toggle = page.locator('.history .section-toggle');
  expect(await toggle.getAttribute('aria-expanded')).toBe('true');
  await toggle.click();
  expect(await toggle.getAttribute('aria-expanded')).toBe('false');
  expect(await page.isVisible('.history .empty-note')).toBe(false);
  await expectInView('#preview');
  await expectInView('#edit');
  await checkState('01b-history-folded');
  await toggle.click();
  expect(await page.isVisible('.history .empty-note')).toBe(true);
  await expectInView('#edit');
  // Premiere's light and darkest themes have their own colours: they must pass too.
  for (const theme of ['light', 'darkest']) {
    await page.goto(`${engine.printedUrl}&theme=${theme}`);
    await page.waitForSelector('#engine-status[data-state="connected"]');
    await checkState(`01c-empty-${theme}`);
  }
  await page.goto(engine.printedUrl);
  await page.waitForSelector('#engine-status[data-state="connected"]');
});

it('shows the chosen clip in the viewer with a filmstrip, in and out marks and source timecode', async () => {
  // 29.97: drop-frame timecode, as Premiere shows it, with semicolons.
  await page.fill('#source-path', ntscClip);
  await click('#probe');
  await page.waitForFunction(() => /^In 00;00;00;00/.test(document.querySelector('#viewer-inout')?.textContent ?? ''));
  expect(await page.textContent('#viewer-inout')).toBe('In 00;00;00;00 · Out 00;00;01;10 · 40 frames');
  await page.fill('#source-path', clip);
  await click('#probe');
  await page.waitForFunction(
    () => (document.querySelector<{ naturalWidth: number }>('#before img')?.naturalWidth ?? 0) === 128,
  );
  expect(await page.getAttribute('#viewer', 'data-showing')).toBe('source');
  expect(await page.textContent('#viewer-inout')).toBe('In 00:00:00:00 · Out 00:00:01:00 · 24 frames');
  expect(await page.textContent('#compare-clock')).toBe('00:00:00:00 · frame 1 of 24');
  await page.waitForFunction(
    () =>
      Array.from(document.querySelectorAll<{ naturalWidth: number }>('#filmstrip img')).filter(
        (i) => i.naturalWidth > 0,
      ).length === 8,
  );

  // A range inside the media: the marks move to it and the clock counts the media's own frames.
  await page.fill('#source-in', '0.5');
  await page.press('#source-in', 'Tab');
  await page.waitForFunction(() => /^In 00:00:00:12/.test(document.querySelector('#viewer-inout')?.textContent ?? ''));
  expect(await page.textContent('#viewer-inout')).toBe('In 00:00:00:12 · Out 00:00:01:00 · 12 frames');
  const marks = await page.evaluate(() => ({
    in: document.querySelector('.mark-in')!.style.left,
    out: document.querySelector('.mark-out')!.style.left,
  }));
  expect(marks).toEqual({ in: '50%', out: '100%' });
  await page.$eval('#scrub', (input: InputEl) => {
    input.value = '3';
    input.dispatchEvent(new Event('input', { bubbles: true }));
  });
  expect(await page.textContent('#compare-clock')).toBe('00:00:00:15 · frame 4 of 12');
  await page.waitForFunction(() => document.querySelector('#before img')?.getAttribute('alt') === 'Original frame 4');
  await checkState('02-clip');
  // In and Out are typed as Premiere writes them, or in seconds; other text is refused with what to write.
  await page.fill('#source-out', '00:00:00:20');
  await page.press('#source-out', 'Tab');
  await page.waitForFunction(() =>
    /Out 00:00:00:20 · 8 frames/.test(document.querySelector('#viewer-inout')?.textContent ?? ''),
  );
  await page.fill('#source-out', '0:0:20');
  await page.press('#source-out', 'Tab');
  await page.waitForSelector('#source-out[aria-invalid="true"]');
  expect(await page.textContent('.range-message')).toContain(
    `Out "0:0:20" is not a time: write timecode in the clip's rate (00:00:01:12) or seconds (1.5)`,
  );
  await checkState('02b-range-refused');
  await page.fill('#source-out', '');
  await page.press('#source-out', 'Tab');
  await page.waitForFunction(() => !document.querySelector('#source-out[aria-invalid="true"]'));
  await page.fill('#source-in', '');
  await page.press('#source-in', 'Tab');
  await page.waitForFunction(() => /^In 00:00:00:00/.test(document.querySelector('#viewer-inout')?.textContent ?? ''));
});

it('moves a radio group choice with the arrow keys, one Tab stop per group', async () => {
  await page.focus('#source-prompt');
  await page.keyboard.press('Tab');
  expect(await page.evaluate(() => document.activeElement?.getAttribute('data-value'))).toBe('none');
  expect(await page.$$eval('#mask-choice .seg[tabindex="0"]', (els: El[]) => els.length)).toBe(1);
  await page.keyboard.press('ArrowRight');
  expect(await page.getAttribute('#mask-choice [data-value="auto"]', 'aria-checked')).toBe('true');
  expect(await page.evaluate(() => document.activeElement?.getAttribute('data-value'))).toBe('auto');
  await page.keyboard.press('End');
  expect(await page.getAttribute('#mask-choice [data-value="box"]', 'aria-checked')).toBe('true');
  await page.keyboard.press('ArrowRight');
  // It wraps, like native radio buttons.
  expect(await page.getAttribute('#mask-choice [data-value="none"]', 'aria-checked')).toBe('true');
  await page.keyboard.press('ArrowLeft');
  expect(await page.getAttribute('#mask-choice [data-value="box"]', 'aria-checked')).toBe('true');
  // Tab leaves the group instead of visiting its other options.
  await page.keyboard.press('Tab');
  expect(await page.evaluate(() => document.activeElement?.getAttribute('role'))).not.toBe('radio');
});

it('draws, moves and resizes the box from the keyboard and the pointer, and shows it over the clip', async () => {
  await page.waitForFunction(
    () => (document.querySelector<{ naturalWidth: number }>('#mask-stage img')?.naturalWidth ?? 0) > 0,
  );
  await page.focus('#mask-stage');
  await page.keyboard.press('Enter');
  expect(await page.textContent('#mask-box-value')).toBe('x 0.25 · y 0.25 · w 0.50 · h 0.50');
  for (let i = 0; i < 5; i++) await page.keyboard.press('ArrowRight');
  for (let i = 0; i < 10; i++) await page.keyboard.press('Shift+ArrowDown');
  await page.keyboard.press('Shift+ArrowLeft');
  expect(await page.textContent('#mask-box-value')).toBe('x 0.30 · y 0.25 · w 0.49 · h 0.60');
  // It cannot be pushed out of the frame.
  for (let i = 0; i < 40; i++) await page.keyboard.press('ArrowDown');
  expect(await page.textContent('#mask-box-value')).toBe('x 0.30 · y 0.40 · w 0.49 · h 0.60');

  // The viewer shows the same box over its own picture of the clip.
  const overlay = await page.evaluate(() => {
    const b = document.querySelector('#viewer-box')!.getBoundingClientRect();
    const p = document.querySelector('#viewer .pane-a')!.getBoundingClientRect();
    return { x: (b.left - p.left) / p.width, w: b.width / p.width, h: b.height / p.height };
  });
  expect(overlay.x).toBeCloseTo(0.3, 1);
  expect(overlay.w).toBeCloseTo(0.49, 1);
  expect(overlay.h).toBeCloseTo(0.6, 1);

  // Dragging inside the box moves it without changing its size; its corner resizes it.
  await page.locator('#mask-stage').scrollIntoViewIfNeeded();
  const stage = (await page.locator('#mask-stage img').boundingBox())!;
  const at = (x: number, y: number) => [stage.x + stage.width * x, stage.y + stage.height * y] as const;
  await page.mouse.move(...at(0.5, 0.7));
  await page.mouse.down();
  await page.mouse.move(...at(0.4, 0.6), { steps: 4 });
  await page.mouse.up();
  expect(await page.textContent('#mask-box-value')).toMatch(/^x 0\.(19|20|21) · y 0\.(29|30|31) · w 0\.49 · h 0\.60$/);
  await checkState('03-box');
  await page.keyboard.press('Delete');
  expect(await page.textContent('#mask-box-value')).toContain('Drag a rectangle');
  expect(await page.isVisible('#viewer-box')).toBe(false);
});

it('keeps the action and the new job in view at 320×560 after every click, with the live preview in the viewer', async () => {
  await click('#mask-choice [data-value="auto"]');
  await expectInView('#edit');
  await page.fill('#prompt', 'a blue car on a gray road');
  await page.fill('#source-prompt', 'a red car on a gray road');
  await click('#advanced-toggle');
  await expectInView('#preview');
  await page.fill('#steps', '10');
  await page.fill('#seed', '7');
  await click('#preview');
  const preview = await waitForNewJob(null);
  await expectInView('#preview');
  await expectInView(`#current-job[data-job-id="${preview}"]`);
  await page.waitForSelector(`#current-job[data-job-id="${preview}"][data-state="succeeded"]`, { timeout: 60_000 });
  expect(await page.textContent('#current-job .current-pct')).toBe('100%');
  // A preview that finished while followed shows in the viewer, since nothing else was pinned there.
  await page.waitForSelector(`#viewer[data-job-id="${preview}"][data-showing="result"]`);

  await page.fill('#steps', '30');
  await click('#edit');
  const edit = await waitForNewJob(preview);
  await expectInView('#edit');
  await expectInView(`#current-job[data-job-id="${edit}"]`);
  expect(await page.getAttribute('#viewer', 'data-showing')).toBe('live');
  // The live preview fills the viewer's frame, not a thumbnail.
  await page.waitForSelector('#viewer-stage.has-live #viewer-live[src^="data:image/png"]', { timeout: 60_000 });
  const live = (await page.locator('#viewer-live').boundingBox())!;
  const pane = (await page.locator('#viewer .pane-b').boundingBox())!;
  expect(live.width).toBeCloseTo(pane.width, 0);
  expect(live.width).toBeGreaterThan(250);
  await page.waitForFunction(
    (id) =>
      /[1-9]\d*%/.test(document.querySelector(`#current-job[data-job-id="${id}"] .current-pct`)?.textContent ?? ''),
    edit,
  );
  await expectInView(`#current-job[data-job-id="${edit}"]`);
  await page.locator('#viewer').scrollIntoViewIfNeeded();
  await checkState('04-running');
  await page.waitForSelector(`#current-job[data-job-id="${edit}"][data-state="succeeded"]`, { timeout: 90_000 });
  await page.waitForSelector(`#viewer[data-job-id="${edit}"][data-showing="result"]`);
  await expectInView('#edit');
});

it('compares the result five ways, drawing the difference and the matte from real pixels', async () => {
  await page.setViewportSize(WIDE);
  const id = (await page.getAttribute('#viewer', 'data-job-id'))!;
  const job = await api<Job>(`/v1/jobs/${id}`);
  expect(job.result?.mattePath).toMatch(/matte_%06d\.png$/);
  await page.waitForFunction(
    () => (document.querySelector<{ readyState: number }>('#after-video')?.readyState ?? 0) >= 2,
  );
  await page.waitForFunction(
    () => (document.querySelector<{ naturalWidth: number }>('#before img')?.naturalWidth ?? 0) > 0,
  );

  // A|B: side by side, A on the left.
  const a = (await page.locator('#viewer .pane-a').boundingBox())!;
  const b = (await page.locator('#viewer .pane-b').boundingBox())!;
  expect(b.x).toBeGreaterThanOrEqual(a.x + a.width - 1);
  await checkState('06-compare-ab');

  // Wipe: B over A, cut at the wipe position.
  await click('#compare-mode [data-value="wipe"]');
  await page.$eval('#wipe', (input: InputEl) => {
    input.value = '30';
    input.dispatchEvent(new Event('input', { bubbles: true }));
  });
  const over = (await page.locator('#viewer .pane-b').boundingBox())!;
  const under = (await page.locator('#viewer .pane-a').boundingBox())!;
  expect(over.x).toBeCloseTo(under.x, 0);
  expect(await page.$eval('#viewer .pane-b', (el: El) => el.style.clipPath)).toBe('inset(0px 0px 0px 30%)');
  await expectInViewDocked(page, '#edit');
  await checkState('07-compare-wipe');

  // Toggle: one at a time, from the button or B in the viewer.
  await click('#compare-mode [data-value="toggle"]');
  expect(await page.textContent('#toggle-ab')).toBe('Showing B · After');
  await click('#toggle-ab');
  expect(await page.getAttribute('#toggle-ab', 'aria-pressed')).toBe('false');
  expect(await page.$eval('#viewer .pane-b', (el: El) => window.getComputedStyle(el).visibility)).toBe('hidden');
  await expectInViewDocked(page, '#edit');
  await checkState('08-compare-toggle');

  // Difference: each pixel of the canvas is |A - B| of the frame on screen.
  await click('#compare-mode [data-value="difference"]');
  await page.waitForSelector('#viewer-canvas[data-frame="0"]');
  const diff = await page.evaluate(() => {
    const canvas = document.querySelector<CanvasEl>('#viewer-canvas')!;
    const { width: w, height: h } = canvas;
    const read = (src: unknown) => {
      const c = document.createElement('canvas');
      c.width = w;
      c.height = h;
      const ctx = c.getContext('2d');
      ctx.drawImage(src, 0, 0, w, h);
      return ctx.getImageData(0, 0, w, h).data;
    };
    const shown = canvas.getContext('2d').getImageData(0, 0, w, h).data;
    const before = read(document.querySelector('#before img'));
    const after = read(document.querySelector('#after-video'));
    let worst = 0;
    let sum = 0;
    for (let i = 0; i < shown.length; i += 4)
      for (let c = 0; c < 3; c++) {
        worst = Math.max(worst, Math.abs(shown[i + c] - Math.abs(before[i + c] - after[i + c])));
        sum += shown[i + c];
      }
    return { worst, mean: sum / ((shown.length / 4) * 3) };
  });
  expect(diff.worst).toBeLessThanOrEqual(2);
  // The oracle's edit changes the picture: the difference is not black everywhere.
  expect(diff.mean).toBeGreaterThan(1);
  await expectInViewDocked(page, '#edit');
  await checkState('09-compare-difference');

  // Matte: the result, tinted where the automatic mask let the edit change it.
  await click('#compare-mode [data-value="matte"]');
  await page.waitForSelector('#viewer-canvas[data-frame="0"][data-matte]');
  const matte = await page.evaluate(async () => {
    const canvas = document.querySelector<CanvasEl>('#viewer-canvas')!;
    const { width: w, height: h } = canvas;
    const read = (src: unknown) => {
      const c = document.createElement('canvas');
      c.width = w;
      c.height = h;
      const ctx = c.getContext('2d');
      ctx.drawImage(src, 0, 0, w, h);
      return ctx.getImageData(0, 0, w, h).data;
    };
    const img = new Image();
    img.src = canvas.getAttribute('data-matte')!;
    await img.decode();
    const mask = read(img);
    const plain = read(document.querySelector('#after-video'));
    const shown = canvas.getContext('2d').getImageData(0, 0, w, h).data;
    // The most edited pixel: its tint must be the matte's value blended over the result.
    let at = 0;
    for (let i = 0; i < mask.length; i += 4) if (mask[i] > mask[at]) at = i;
    const alpha = Math.round(mask[at] * 0.55) / 255;
    const expected = [255, 64, 160].map((t, c) => plain[at + c] + (t - plain[at + c]) * alpha);
    return { most: mask[at], error: Math.max(...expected.map((e, c) => Math.abs(e - shown[at + c]))) };
  });
  expect(matte.most).toBeGreaterThan(0);
  expect(matte.error).toBeLessThanOrEqual(3);
  await expectInViewDocked(page, '#edit');
  await checkState('10-compare-matte');
  await click('#compare-mode [data-value="ab"]');
});

it('stays on the result the user is scrubbing when another job finishes', async () => {
  await page.setViewportSize(DOCKED);
  const looked = (await page.getAttribute('#viewer', 'data-job-id'))!;
  // A long edit, then a preview queued behind it: the viewer follows the preview, and the user asks for the edit.
  await page.fill('#steps', '40');
  const top = await newestJobId();
  await click('#edit');
  const long = await waitForNewJob(top);
  expect(long).not.toBe(looked);
  await page.fill('#steps', '5');
  await click('#preview');
  const queued = await waitForNewJob(long);
  await expectInView(`#current-job[data-job-id="${queued}"]`);
  await page.waitForSelector(`#jobs [data-job-id="${long}"][data-state="succeeded"]`, { timeout: 90_000 });
  await page.click(`[data-job-id="${long}"] button:has-text("Compare")`);
  await page.waitForSelector(`#viewer[data-job-id="${long}"][data-showing="result"]`);
  // The user scrubs the long edit's result while the preview runs.
  await page.$eval('#scrub', (input: InputEl) => {
    input.value = '5';
    input.dispatchEvent(new Event('input', { bubbles: true }));
  });
  await page.waitForSelector(`#current-job[data-job-id="${queued}"][data-state="succeeded"]`, { timeout: 60_000 });
  await new Promise((r) => setTimeout(r, 500));
  expect(await page.getAttribute('#viewer', 'data-job-id')).toBe(long);
  expect(await page.textContent('#compare-clock')).toBe('00:00:00:05 · frame 6 of 24');
  await expectInView('#preview');
  // Asking for the other one shows it.
  await click(`[data-job-id="${queued}"] button:has-text("Compare")`);
  await page.waitForSelector(`#viewer[data-job-id="${queued}"]`);
  await expectInView('#edit');
  await checkState('05-result');
  expect(pageErrors).toEqual([]);
});

it('in Premiere mode: the selected clip shows under the clip card, and a preview is followed by polling', async () => {
  const resultsFolder = path.join(home, 'Project', 'Reshoot Renders');
  fs.mkdirSync(resultsFolder, { recursive: true });
  const main = page;
  const panel = await openPremierePanel(browser, engine, {
    viewport: DOCKED,
    resultsFolder,
    onPageError: (m) => pageErrors.push(`premiere pageerror: ${m}`),
  });
  page = panel.page;
  try {
    await page.waitForSelector('#engine-status[data-state="connected"]');
    const sel: ClipSelection = {
      kind: 'clip',
      name: 'street.mp4',
      mediaPath: clip,
      sourceIn: 0.5,
      sourceOut: 1,
      sequenceStart: 10,
      sequenceEnd: 10.5,
      sequenceStartTicks: String(10n * 254016000000n),
      sequenceEndTicks: String(105n * 25401600000n),
      fps: 24,
      frameWidth: 128,
      frameHeight: 72,
      frames: 12,
      trackIndex: 0,
      renderReason: null,
    };
    await page.evaluate((s) => (window as unknown as { harness: Harness }).harness.setSelection(s), sel);
    await page.waitForFunction(
      () => (document.querySelector<{ naturalWidth: number }>('#before img')?.naturalWidth ?? 0) === 128,
    );
    expect(await page.textContent('#viewer-inout')).toBe('In 00:00:00:12 · Out 00:00:01:00 · 12 frames');
    // No result player in Premiere (results go on the timeline), and the picture sits right under the clip card.
    expect(await page.$('#compare')).toBeNull();
    const order = await page.evaluate(() => ({
      source: document.querySelector('.section.source')!.getBoundingClientRect().top,
      viewer: document.querySelector('#viewer')!.getBoundingClientRect().top,
      form: document.querySelector('.section.form')!.getBoundingClientRect().top,
    }));
    expect(order.source).toBeLessThan(order.viewer);
    expect(order.viewer).toBeLessThan(order.form);
    await expectInView('#preview');
    await checks.checkState(page, '11-premiere-clip');

    await page.fill('#prompt', 'a blue car on a gray road');
    await click('#preview');
    const id = await waitForNewJob(null);
    await expectInView(`#current-job[data-job-id="${id}"]`);
    expect(await page.getAttribute('#viewer', 'data-showing')).toBe('live');
    await page.waitForFunction(() => /^Preview · /.test(document.querySelector('#viewer-badge')?.textContent ?? ''));
    await page.waitForSelector(`#current-job[data-job-id="${id}"][data-state="succeeded"]`, { timeout: 60_000 });
    // Polled to the end (UXP has no EventSource), then back to the clip.
    expect(panel.requests.some((r) => r.endsWith('/events'))).toBe(false);
    await page.waitForSelector('#viewer[data-showing="source"]');
    await expectInView('#edit');
    await checks.checkState(page, '12-premiere-preview-done');
  } finally {
    page = main;
    await panel.context.close();
  }
});
