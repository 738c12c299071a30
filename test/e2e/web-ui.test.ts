// The web UI in real Chromium against a real `reshoot serve` on loopback with the generated oracle model: open the
// printed URL, probe a clip, run an edit with live progress, cancel a second one, play the result beside the
// original, read at the panel's 320 px, and check that a page of another origin cannot submit a job.
// Each state is pictured and checked with axe-core at 1280×800 and docked at 320×560 (test-output/e2e/web-ui/), and
// docked, the action and the new job stay in view after each click.
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Browser, BrowserContext, Page, Request as PageRequest } from 'playwright-core';
import type { Job } from '../../engine/src/api/schemas';
import { makeTestClip } from '../../engine/src/media';
import type { ClipSelection, HistoryEntry, Selection } from '../../panel/src/host/host';
import { launchChromium } from '../support/browser';
import { openPremierePanel } from '../support/premiere-panel';
import { startServe, stopChildren, type Served } from '../support/children';
import { DOCKED, WIDE, clickInView, expectInView, expectInViewDocked, panelChecks } from '../support/panel-checks';

const ROOT = path.resolve(__dirname, '../..');
const WEB_UI = path.join(ROOT, 'dist/panel-web/index.html');
const checks = panelChecks('web-ui');
const PROMPT = 'a blue car on a gray road';
const SOURCE_PROMPT = 'a red car on a gray road';

jest.setTimeout(90_000);

// Callbacks passed to page.evaluate/waitForFunction run in Chromium, but this file is compiled with the repository's
// Node-only settings (no DOM library, which would retype the engine's timers and fetch). These stand in for the
// few browser names the callbacks use, with just the members they use.
interface PageElement {
  id: string;
  tagName: string;
  className: string;
  textContent: string | null;
  outerHTML: string;
  offsetParent: unknown;
  getAttribute(name: string): string | null;
  getBoundingClientRect(): { right: number };
  scrollIntoView(): void;
}
type VideoEl = { readyState: number; duration: number; currentTime: number; paused: boolean };
type ImageEl = { naturalWidth: number };
type InputEl = { value: string; dispatchEvent(event: unknown): boolean };
/** window.harness of fixtures/premiere-harness.mts, as far as the test reads it. */
interface Harness {
  setSelection(sel: Selection): void;
  placed: {
    sel: Pick<ClipSelection, 'sequenceStartTicks' | 'sequenceEndTicks' | 'trackIndex' | 'name'>;
    resultPath: string;
    label: string;
  }[];
  history: HistoryEntry[];
  nextPick: string | null;
}
declare const document: {
  /** Typed like the DOM's: the caller names the kind of element its selector finds. */
  querySelector<E = PageElement>(selector: string): E | null;
  getElementById(id: string): PageElement | null;
  documentElement: { scrollWidth: number; clientWidth: number };
};
declare const window: {
  Event: new (type: string, init?: { bubbles?: boolean }) => unknown;
  scrollTo(x: number, y: number): void;
  sawPreview: boolean;
  harness: Harness;
};
declare const localStorage: {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
};
declare const MutationObserver: new (callback: () => void) => {
  observe(target: PageElement, options: { attributes?: boolean; attributeFilter?: string[] }): void;
};

type Engine = Served;

let home: string;
let clip: string;
let engine: Engine;
let browser: Browser;
let context: BrowserContext;
let page: Page;
const pageErrors: string[] = [];

function startEngine(port = 0): Promise<Engine> {
  return startServe({ home, port });
}

function stopped(proc: ChildProcess): Promise<void> {
  return proc.exitCode !== null || proc.signalCode !== null
    ? Promise.resolve()
    : new Promise((r) => proc.once('exit', () => r()));
}

async function api(method: string, route: string): Promise<unknown> {
  const res = await fetch(`${engine.origin}${route}`, { method, headers: { authorization: `Bearer ${engine.token}` } });
  return res.json();
}

// The engine's own answers, in the shapes of its contract (engine/src/api/schemas.ts).
async function listJobs(): Promise<Job[]> {
  return ((await api('GET', '/v1/jobs')) as { jobs: Job[] }).jobs;
}

async function getJob(id: string): Promise<Job> {
  return (await api('GET', `/v1/jobs/${id}`)) as Job;
}

/** The state on screen in `p`, pictured and checked with axe-core at both of the panel's sizes. */
async function checkState(name: string, p: Page = page): Promise<void> {
  await checks.checkState(p, name);
}

/** Every click on the panel: afterwards, docked at 320×560, the action is still on screen. */
function click(selector: string, p: Page = page): Promise<void> {
  return clickInView(p, selector);
}

async function jobPercent(id: string): Promise<number> {
  const text = (await page.textContent(`[data-job-id="${id}"] .job-pct`)) ?? '';
  const m = /(\d+)%/.exec(text);
  return m ? Number(m[1]) : 0;
}

async function waitForPercentAbove(id: string, min: number, timeout = 30_000): Promise<number> {
  await page.waitForFunction(
    ({ sel, m }) => {
      const t = document.querySelector(sel)?.textContent ?? '';
      const r = /(\d+)%/.exec(t);
      return !!r && Number(r[1]) > m;
    },
    { sel: `[data-job-id="${id}"] .job-pct`, m: min },
    { timeout, polling: 50 },
  );
  return jobPercent(id);
}

async function newestJobId(): Promise<string> {
  return (await page.getAttribute('#jobs article.job:first-child', 'data-job-id'))!;
}

beforeAll(async () => {
  if (!fs.existsSync(WEB_UI))
    throw new Error(`${WEB_UI} is missing: run npm run build (npm test does) before the e2e tests`);
  home = fs.mkdtempSync(path.join(os.tmpdir(), 'reshoot-e2e-'));
  clip = path.join(home, 'street.mp4');
  // allSettled, not all: when one of the three fails, the others' results (a running engine, a browser) must still
  // reach afterAll to be stopped. The engine child is tracked from its spawn anyway (stopChildren below).
  const [clipMade, started, launched] = await Promise.allSettled([
    makeTestClip({
      file: clip,
      width: 128,
      height: 72,
      fps: { num: 24, den: 1 },
      frames: 24,
      content: 'moving-square',
    }),
    startEngine(),
    launchChromium(['--autoplay-policy=no-user-gesture-required']),
  ]);
  if (started.status === 'fulfilled') engine = started.value;
  if (launched.status === 'fulfilled') browser = launched.value.browser;
  for (const r of [clipMade, started, launched]) if (r.status === 'rejected') throw r.reason;
  context = await browser.newContext({ viewport: WIDE, deviceScaleFactor: 1 });
  page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content.Security.Policy|Uncaught/i.test(m.text()))
      pageErrors.push(`console: ${m.text()}`);
  });
});

afterAll(async () => {
  try {
    await browser?.close();
  } finally {
    // Every engine this file started (the restarted one of the last test included), whether or not a handle reached
    // a variable.
    await stopChildren();
    if (home) fs.rmSync(home, { recursive: true, force: true });
    if (checks.seen.length) process.stdout.write(`axe-core:\n  ${checks.seen.join('\n  ')}\n`);
  }
});

it('opens the printed URL, connects to the engine and takes the token out of the address bar', async () => {
  await page.goto(engine.printedUrl);
  await page.waitForSelector('#engine-status[data-state="connected"]');
  const status = await page.textContent('#engine-status');
  expect(status).toContain('Engine connected');
  expect(status).toContain('oracle');
  expect(status).toContain('cpu');
  expect(page.url()).toBe(`${engine.origin}/`);
  expect(page.url()).not.toContain(engine.token);
  await checkState('01-connected-empty');
});

it('probes a clip, and marks the field at fault for client-side and engine-side problems', async () => {
  // A path that does not exist: the engine's problem lands on the path field.
  await page.fill('#source-path', path.join(home, 'missing.mp4'));
  await click('#probe');
  await page.waitForSelector('#source-path[aria-invalid="true"]');
  expect(await page.textContent('#clip-card')).toMatch(/missing\.mp4|not|No such/i);
  await checkState('02a-path-refused');

  await page.fill('#source-path', clip);
  await click('#probe');
  await page.waitForFunction(() => /24 frames/.test(document.querySelector('#probe-info')?.textContent ?? ''));
  const probe = (await page.textContent('#probe-info'))!;
  expect(probe).toContain('128×72');
  expect(probe).toContain('24 fps');
  expect(probe).toContain('1 s');
  expect(await page.textContent('#clip-card')).toContain('street.mp4');
  expect(await page.getAttribute('#source-path', 'aria-invalid')).toBe('false');

  // No prompt: the engine's own schema, run in the page, names the field; nothing is sent.
  const before = (await listJobs()).length;
  await click('#edit');
  await page.waitForSelector('#prompt[aria-invalid="true"]');
  expect(await page.textContent('.field.invalid .field-message')).toContain('prompt is empty');
  await expectInViewDocked(page, '#edit');
  await checkState('02b-prompt-missing');

  // An out point past the end of the media: the browser host knows the length from the probe and says so at once.
  await page.fill('#prompt', PROMPT);
  await page.fill('#source-out', '5');
  await page.press('#source-out', 'Tab');
  await page.waitForSelector('#source-out[aria-invalid="true"]');
  expect(await page.textContent('.range-message')).toContain(
    'Out is past the end of the clip (00:00:01:00, 24 frames)',
  );
  expect(await page.isDisabled('#edit')).toBe(true);
  await checkState('02c-range-refused');
  await page.fill('#source-out', '');
  await page.press('#source-out', 'Tab');
  await page.waitForSelector('#edit:not([disabled])');

  // A matte that does not exist passes the schema but not the engine: its 422 problem document marks the field.
  await click('#mask-choice [data-value="file"]');
  await page.fill('#mask-path', path.join(home, 'no-such-matte.png'));
  await click('#edit');
  await page.waitForSelector('#mask-path[aria-invalid="true"]');
  expect(await page.getAttribute('#form-problem', 'data-field')).toBe('mask.path');
  expect(await page.textContent('#form-problem')).toContain('Mask file not found');
  expect(await page.textContent('.field.invalid .field-message')).toContain('no-such-matte.png does not exist');
  await expectInViewDocked(page, '#edit');
  await checkState('02d-matte-refused');
  expect((await listJobs()).length).toBe(before);
  await click('#mask-choice [data-value="none"]');
});

it('draws a box mask on a still of the clip', async () => {
  await click('#mask-choice [data-value="box"]');
  const stage = await page.waitForSelector('#mask-stage img[src*="/v1/media/still"]');
  await page.waitForFunction(() => (document.querySelector<ImageEl>('#mask-stage img')?.naturalWidth ?? 0) > 0);
  // The form scrolls between the header and the action bar: the still must be in view to be drawn on.
  await stage.scrollIntoViewIfNeeded();
  const box = (await stage.boundingBox())!;
  await page.mouse.move(box.x + box.width * 0.25, box.y + box.height * 0.2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.5, { steps: 4 });
  await page.mouse.move(box.x + box.width * 0.75, box.y + box.height * 0.8, { steps: 4 });
  await page.mouse.up();
  const value = (await page.textContent('#mask-box-value'))!;
  expect(value).toMatch(/x 0\.2[45] · y 0\.(19|20|21) · w 0\.5[01] · h 0\.(59|60|61)/);
  await checkState('03-box-mask');
  await click('#mask-box-clear');
  await click('#mask-choice [data-value="auto"]');
  await expectInViewDocked(page, '#edit');
});

it('runs an edit with live progress, cancels a second one, and plays the result beside the original', async () => {
  await page.fill('#source-prompt', SOURCE_PROMPT);
  await click('#advanced-toggle');
  await page.fill('#steps', '10');
  await page.fill('#seed', '7');
  await checkState('04-ready');

  await click('#edit');
  await page.waitForSelector('#jobs article.job');
  const first = await newestJobId();
  await expectInViewDocked(page, '#edit', `#current-job[data-job-id="${first}"]`);
  // Previews arrive over SSE while the job runs; record them as they come, since the thumbnail turns into the
  // result's still once the job is done.
  await page.evaluate((id) => {
    const img = document.querySelector(`[data-job-id="${id}"] .job-thumb-img`)!;
    window.sawPreview = false;
    new MutationObserver(() => {
      if (img.getAttribute('src')?.startsWith('data:image/png')) window.sawPreview = true;
    }).observe(img, { attributes: true, attributeFilter: ['src'] });
  }, first);
  const p1 = await waitForPercentAbove(first, 0);
  const p2 = await waitForPercentAbove(first, p1);
  expect(p2).toBeGreaterThan(p1);
  const stage = (await page.textContent(`[data-job-id="${first}"] .job-stage`))!;
  expect(stage).toMatch(/Decoding|Encoding|Inverting|Editing|Rendering|Writing|Reading/);
  await page.waitForSelector(
    `[data-job-id="${first}"] .job-thumb-img.live, [data-job-id="${first}"][data-state="succeeded"]`,
    { timeout: 30_000 },
  );
  await checkState('05-running');

  // A second, long job queues behind the first.
  await page.fill('#steps', '200');
  await click('#edit');
  await page.waitForFunction(
    (id) => document.querySelector('#jobs article.job:first-child')?.getAttribute('data-job-id') !== id,
    first,
  );
  const second = await newestJobId();
  expect(second).not.toBe(first);
  await expectInViewDocked(page, '#edit', `#current-job[data-job-id="${second}"]`);

  // The first finishes; the viewer stays on the second, the last one started, until the first is asked for.
  await page.waitForSelector(`[data-job-id="${first}"][data-state="succeeded"]`, { timeout: 60_000 });
  await page.click(`[data-job-id="${first}"] button:has-text("Compare")`);
  expect(await page.evaluate(() => window.sawPreview)).toBe(true);
  await page.waitForSelector('#compare:not(.empty)');
  await page.waitForFunction(() => (document.querySelector<VideoEl>('#after-video')?.readyState ?? 0) >= 2, undefined, {
    timeout: 15_000,
  });
  const duration = await page.$eval('#after-video', (v: VideoEl) => v.duration);
  expect(duration).toBeGreaterThan(0.95);
  expect(duration).toBeLessThan(1.1);
  await page.waitForFunction(() => (document.querySelector<ImageEl>('#before img')?.naturalWidth ?? 0) === 128);
  expect(await page.textContent('#viewer')).toContain(PROMPT);

  // Playing moves the result's clock, and the "before" side follows it frame by frame.
  await click('#play');
  await page.waitForFunction(() => document.querySelector<VideoEl>('#after-video')!.currentTime > 0.3, undefined, {
    timeout: 10_000,
  });
  expect(await page.$eval('#after-video', (v: VideoEl) => v.paused)).toBe(false);
  await click('#play');
  await page.$eval('#scrub', (input: InputEl) => {
    input.value = '12';
    input.dispatchEvent(new window.Event('input', { bubbles: true }));
  });
  await page.waitForFunction(() => document.querySelector('#before img')?.getAttribute('alt') === 'Original frame 13');
  const t = await page.$eval('#after-video', (v: VideoEl) => v.currentTime);
  expect(Math.floor(t * 24)).toBe(12);
  expect(await page.textContent('#compare-clock')).toContain('frame 13 of 24');

  // "Open in a tab" shows the result file itself in a new tab (a browser cannot reveal a folder).
  const [tab] = await Promise.all([context.waitForEvent('page'), page.click('#open-result')]);
  await tab.waitForURL(new RegExp(`/v1/jobs/${first}/result\\?token=`));
  await tab.close();

  // The second job runs once the first is done; cancel it mid-way.
  const p3 = await waitForPercentAbove(second, 0, 30_000);
  expect(p3).toBeGreaterThan(0);
  await checkState('06-done-and-second-running');
  await click(`[data-job-id="${second}"] .job-cancel`);
  try {
    await page.waitForSelector(`[data-job-id="${second}"][data-state="canceled"]`);
  } catch (err) {
    // Say whether the engine or the page is behind, so a failure here can be explained from the CI log alone.
    const seen = await getJob(second).then(
      (j) => ({ state: j.state, progress: j.progress, error: j.error }),
      (e: Error) => ({ error: e.message }),
    );
    const card = await page
      .$eval(`[data-job-id="${second}"]`, (el: PageElement) => el.outerHTML)
      .catch(() => 'no card');
    const machine = `load ${os
      .loadavg()
      .map((v) => v.toFixed(1))
      .join(' ')}, free ${(os.freemem() / 2 ** 30).toFixed(1)} of ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`;
    throw new Error(
      `${(err as Error).message}\nmachine: ${machine}\nengine says: ${JSON.stringify(seen)}\ncard: ${card.slice(0, 600)}\npage errors: ${pageErrors.join(' | ')}\nengine log (tail): ${engine.stderr.join('').slice(-3000)}`,
      { cause: err },
    );
  }
  expect(await page.textContent(`[data-job-id="${second}"] .job-stage`)).toBe('Canceled');
  expect((await getJob(second)).state).toBe('canceled');
  expect((await getJob(first)).state).toBe('succeeded');
  await page.evaluate(() => window.scrollTo(0, 0));
  await checkState('07-done-before-after-and-canceled');

  // Preview: the first four frames at half size, shown in the same player.
  await page.fill('#steps', '10');
  await click('#preview');
  await page.waitForFunction(
    (id) => document.querySelector('#jobs article.job:first-child')?.getAttribute('data-job-id') !== id,
    second,
  );
  const preview = await newestJobId();
  await expectInViewDocked(page, '#preview', `#current-job[data-job-id="${preview}"]`);
  expect(await page.textContent(`[data-job-id="${preview}"] .badge`)).toBe('Preview');
  await page.waitForSelector(`[data-job-id="${preview}"][data-state="succeeded"]`, { timeout: 30_000 });
  await page.waitForFunction(() => /preview/.test(document.querySelector('.compare-sub')?.textContent ?? ''));
  expect(await page.textContent('.compare-sub')).toContain('4 frames');
  const previewJob = await getJob(preview);
  expect(previewJob.request.preview).toEqual({ frames: 4, scale: 0.5 });
  expect(previewJob.request.output).toBeUndefined();
  await page.waitForFunction(() => (document.querySelector<VideoEl>('#after-video')?.readyState ?? 0) >= 2);
  expect(await page.$eval('#after-video', (v: VideoEl) => v.duration)).toBeCloseTo(4 / 24, 2);
  await checkState('07a-preview-done');

  // The finished edit is in the history, with its seed and settings; the preview is not.
  const item = (await page.textContent(`#history [data-job-id="${first}"]`))!;
  expect(item).toContain(PROMPT);
  expect(item).toContain('seed 7');
  expect(item).toContain('10 steps');
  expect(await page.$(`#history [data-job-id="${preview}"]`)).toBeNull();
  await click(`#history [data-job-id="${first}"] button:has-text("Compare")`);
  await page.waitForFunction(() => !/preview/.test(document.querySelector('.compare-sub')?.textContent ?? ''));
  await expectInViewDocked(page, '#edit');
  await checkState('07d-history-compare');
});

it("offers the attention methods, and marks the engine's refusal of each on the oracle at its control", async () => {
  // The bodies the page posts, so the request itself can be checked, the refused one included.
  const sent: Record<string, unknown>[] = [];
  const onRequest = (r: PageRequest) => {
    if (r.method() === 'POST' && new URL(r.url()).pathname === '/v1/jobs')
      sent.push(r.postDataJSON() as Record<string, unknown>);
  };
  page.on('request', onRequest);
  try {
    // Off by default, and the mode, which applies only with it on, is out of the way.
    expect(await page.getAttribute('#cross-frame [data-value="off"]', 'aria-checked')).toBe('true');
    expect(await page.isVisible('#cross-frame-mode')).toBe(false);
    await click('#cross-frame [data-value="first"]');
    expect(await page.isVisible('#cross-frame-mode')).toBe(true);
    await click('#cross-frame-mode [data-value="replace"]');

    // The oracle's UNet has no self-attention: the engine refuses the job at submission with a 422 for
    // attention.crossFrame, and the page marks the control.
    const before = await listJobs();
    await click('#preview');
    await page.waitForSelector('#cross-frame[aria-invalid="true"]');
    expect(await page.getAttribute('#form-problem', 'data-field')).toBe('attention.crossFrame');
    expect(await page.textContent('#form-problem')).toContain('See the highlighted field.');
    expect(await page.textContent('.field.invalid .field-message')).toContain('self-attention');
    expect(sent.at(-1)?.attention).toEqual({ crossFrame: { anchors: 'first', mode: 'replace' } });
    expect((await listJobs()).length).toBe(before.length);
    await expectInViewDocked(page, '#preview');
    await checkState('07b-cross-frame-refused');

    await click('#cross-frame [data-value="off"]');
    expect(await page.getAttribute('#cross-frame', 'aria-invalid')).toBe('false');
    expect(await page.isVisible('#form-problem')).toBe(false);
    expect(await page.isVisible('#cross-frame-mode')).toBe(false);

    // Structure lock's presets are the contract's, in its order; with word swap, both go in the one attention object.
    // The engine checks structure first, so its refusal lands there; with structure off, word swap's does.
    expect(await page.$$eval('#structure .seg', (els: PageElement[]) => els.map((el) => el.textContent))).toEqual([
      'Off',
      'Reimagine',
      'Loose',
      'Balanced',
      'Keep structure',
    ]);
    expect(await page.getAttribute('#structure [data-value="off"]', 'aria-checked')).toBe('true');
    expect(await page.getAttribute('#word-swap [data-value="off"]', 'aria-checked')).toBe('true');
    await click('#structure [data-value="balanced"]');
    await click('#word-swap [data-value="on"]');
    await click('#preview');
    await page.waitForSelector('#structure[aria-invalid="true"]');
    expect(await page.getAttribute('#form-problem', 'data-field')).toBe('attention.structure');
    expect(sent.at(-1)?.attention).toEqual({ structure: 0.8, wordSwap: {} });
    await click('#structure [data-value="off"]');
    expect(await page.isVisible('#form-problem')).toBe(false);
    await click('#preview');
    await page.waitForSelector('#word-swap[aria-invalid="true"]');
    expect(await page.getAttribute('#form-problem', 'data-field')).toBe('attention.wordSwap');
    expect(await page.textContent('.field.invalid .field-message')).toContain('cross-attention');
    expect(sent.at(-1)?.attention).toEqual({ wordSwap: {} });
    expect((await listJobs()).length).toBe(before.length);

    // Off again: the mark and the summary go, and the request is the one it was before the options existed.
    await click('#word-swap [data-value="off"]');
    expect(await page.getAttribute('#word-swap', 'aria-invalid')).toBe('false');
    expect(await page.isVisible('#form-problem')).toBe(false);

    // TokenFlow: off, or one keyframe in 4, 8 or 16 frames; the oracle has no self-attention, so it is refused there.
    expect(await page.$$eval('#token-flow .seg', (els: PageElement[]) => els.map((el) => el.textContent))).toEqual([
      'Off',
      '1 in 4',
      '1 in 8',
      '1 in 16',
    ]);
    await click('#token-flow [data-value="8"]');
    await click('#preview');
    await page.waitForSelector('#token-flow[aria-invalid="true"]');
    expect(await page.getAttribute('#form-problem', 'data-field')).toBe('attention.tokenFlow');
    expect(await page.textContent('.field.invalid .field-message')).toContain('no self-attention');
    expect(sent.at(-1)?.attention).toEqual({ tokenFlow: { keyframeEvery: 8 } });
    await click('#token-flow [data-value="off"]');
    expect(await page.getAttribute('#token-flow', 'aria-invalid')).toBe('false');
    expect((await listJobs()).length).toBe(before.length);

    // Word emphasis is typed as word=scale. One that is not is marked at the field before anything is sent; a good one
    // goes as attention.reweight, and the oracle's refusal (no cross-attention) lands at the same field.
    await page.fill('#emphasis', 'blue=x');
    const posted = sent.length;
    await click('#preview');
    await page.waitForSelector('#emphasis[aria-invalid="true"]');
    expect(await page.getAttribute('#form-problem', 'data-field')).toBe('attention.reweight');
    expect(await page.textContent('.field.invalid .field-message')).toContain('word=scale pairs');
    expect(sent.length).toBe(posted);
    await page.fill('#emphasis', 'blue=2');
    expect(await page.getAttribute('#emphasis', 'aria-invalid')).toBe('false');
    await click('#preview');
    await page.waitForSelector('#emphasis[aria-invalid="true"]');
    expect(await page.getAttribute('#form-problem', 'data-field')).toBe('attention.reweight');
    expect(await page.textContent('.field.invalid .field-message')).toContain('this model has none');
    expect(sent.at(-1)?.attention).toEqual({ reweight: [{ word: 'blue', scale: 2 }] });
    await page.fill('#emphasis', '');

    // The automatic mask's source (the mask is Auto here since the box test): the contract's choices, shown only
    // under Auto, difference by default and then not sent. Attention is refused on the oracle at the control.
    expect(await page.getAttribute('#mask-choice [data-value="auto"]', 'aria-checked')).toBe('true');
    expect(await page.$$eval('#mask-from .seg', (els: PageElement[]) => els.map((el) => el.textContent))).toEqual([
      'Difference',
      'Attention',
      'Both',
    ]);
    expect(await page.getAttribute('#mask-from [data-value="difference"]', 'aria-checked')).toBe('true');
    expect(await page.isVisible('#mask-from')).toBe(true);
    for (const other of ['none', 'file']) {
      await click(`#mask-choice [data-value="${other}"]`);
      expect(await page.isVisible('#mask-from')).toBe(false);
    }
    await click('#mask-choice [data-value="auto"]');
    await click('#mask-from [data-value="attention"]');
    await click('#preview');
    await page.waitForSelector('#mask-from[aria-invalid="true"]');
    expect(await page.getAttribute('#form-problem', 'data-field')).toBe('mask.from');
    expect(sent.at(-1)?.mask).toEqual({ type: 'auto', from: 'attention' });
    expect(sent.at(-1)).not.toHaveProperty('attention');
    expect((await listJobs()).length).toBe(before.length);
    await expectInViewDocked(page, '#preview');
    await checkState('07c-mask-from-refused');
    await click('#mask-from [data-value="difference"]');
    expect(await page.getAttribute('#mask-from', 'aria-invalid')).toBe('false');
    expect(await page.isVisible('#form-problem')).toBe(false);
    await page.fill('#steps', '1');
    const newest = await newestJobId();
    await click('#preview');
    await page.waitForFunction(
      (id) => document.querySelector('#jobs article.job:first-child')?.getAttribute('data-job-id') !== id,
      newest,
    );
    const id = await newestJobId();
    expect(sent.at(-1)).not.toHaveProperty('attention');
    expect(sent.at(-1)?.mask).toEqual({ type: 'auto' });
    expect((await getJob(id)).request).not.toHaveProperty('attention');
    await page.waitForSelector(`[data-job-id="${id}"][data-state="succeeded"]`, { timeout: 30_000 });

    // "Reuse" brings a history entry's attention settings back (an SD job's; none can succeed on the oracle), a
    // strength between presets as the nearest one, and an entry from before the options existed turns them off.
    // Seeded into this origin's storage, read by a second tab.
    const entry = (jobId: string, attention: Partial<HistoryEntry['settings']> = {}) => ({
      jobId,
      createdAt: new Date().toISOString(),
      clipName: 'street.mp4',
      prompt: PROMPT,
      sourcePrompt: SOURCE_PROMPT,
      seed: 3,
      settings: { steps: 10, guidance: 7.5, method: 'inversion', mask: 'none', ...attention },
      resultPath: path.join(os.tmpdir(), 'not-there.mp4'),
    });
    const saved = await page.evaluate(() => localStorage.getItem('reshoot.history.v1'));
    await page.evaluate(
      (entries) => localStorage.setItem('reshoot.history.v1', JSON.stringify(entries)),
      [
        entry('sd-job', {
          crossFrame: { anchors: 'first+previous', mode: 'replace' },
          structure: 0.7,
          wordSwap: true,
          tokenFlow: 4,
          reweight: [
            { word: 'blue', scale: 2 },
            { word: 'car', scale: 0.5 },
          ],
          mask: 'auto mask from attention',
        }),
        entry('old-job'),
      ],
    );
    const tab = await page.context().newPage();
    try {
      await tab.goto(engine.printedUrl);
      await tab.waitForSelector('#history [data-job-id="sd-job"]');
      await click('#advanced-toggle', tab);
      await click('#history [data-job-id="sd-job"] button:has-text("Reuse")', tab);
      expect(await tab.getAttribute('#cross-frame [data-value="first+previous"]', 'aria-checked')).toBe('true');
      expect(await tab.getAttribute('#cross-frame-mode [data-value="replace"]', 'aria-checked')).toBe('true');
      expect(await tab.isVisible('#cross-frame-mode')).toBe(true);
      expect(await tab.getAttribute('#structure [data-value="balanced"]', 'aria-checked')).toBe('true');
      expect(await tab.getAttribute('#word-swap [data-value="on"]', 'aria-checked')).toBe('true');
      expect(await tab.getAttribute('#token-flow [data-value="4"]', 'aria-checked')).toBe('true');
      expect(await tab.inputValue('#emphasis')).toBe('blue=2, car=0.5');
      expect(await tab.getAttribute('#mask-choice [data-value="auto"]', 'aria-checked')).toBe('true');
      expect(await tab.getAttribute('#mask-from [data-value="attention"]', 'aria-checked')).toBe('true');
      expect(await tab.isVisible('#mask-from')).toBe(true);
      await checkState('07e-history-reused', tab);
      await click('#history [data-job-id="old-job"] button:has-text("Reuse")', tab);
      expect(await tab.getAttribute('#cross-frame [data-value="off"]', 'aria-checked')).toBe('true');
      expect(await tab.isVisible('#cross-frame-mode')).toBe(false);
      expect(await tab.getAttribute('#structure [data-value="off"]', 'aria-checked')).toBe('true');
      expect(await tab.getAttribute('#word-swap [data-value="off"]', 'aria-checked')).toBe('true');
      expect(await tab.getAttribute('#token-flow [data-value="off"]', 'aria-checked')).toBe('true');
      expect(await tab.inputValue('#emphasis')).toBe('');
      expect(await tab.getAttribute('#mask-choice [data-value="none"]', 'aria-checked')).toBe('true');
      expect(await tab.isVisible('#mask-from')).toBe(false);
    } finally {
      await tab.close();
      await page.evaluate((v) => {
        if (v === null) localStorage.removeItem('reshoot.history.v1');
        else localStorage.setItem('reshoot.history.v1', v);
      }, saved);
    }
  } finally {
    page.off('request', onRequest);
  }
});

it('reads at the docked panel width of 320 px', async () => {
  await page.setViewportSize(DOCKED);
  await page.evaluate(() => window.scrollTo(0, 0));
  const overflow = await page.evaluate(
    () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
  );
  expect(overflow).toBeLessThanOrEqual(0);
  // Every control stays inside the viewport.
  const outside = await page.$$eval('button:not(.hidden), input, textarea', (els: PageElement[]) =>
    els
      .filter((el) => el.offsetParent !== null && el.getBoundingClientRect().right > 320.5)
      .map((el) => el.id || el.className),
  );
  expect(outside).toEqual([]);
  // The panel shows one screenful at a time: its top, then the jobs and the player further down.
  await checkState('08a-narrow-top');
  await page.$eval('.jobs', (el: PageElement) => el.scrollIntoView());
  await checkState('08b-narrow-results');
  await page.setViewportSize(WIDE);
});

it('shows the light, dark and darkest themes with ?theme=, the same CSS Premiere switches by document.theme', async () => {
  const backgrounds: Record<string, string> = {};
  for (const theme of ['light', 'dark', 'darkest']) {
    const themed = await browser.newPage({ viewport: DOCKED });
    await themed.goto(`${engine.printedUrl}&theme=${theme}`);
    await themed.waitForSelector('#engine-status[data-state="connected"]');
    expect(await themed.evaluate(() => document.querySelector<{ className: string }>('body')!.className)).toBe(
      `theme-${theme}`,
    );
    backgrounds[theme] = await themed.evaluate(
      () =>
        (globalThis as unknown as { getComputedStyle(el: unknown): { backgroundColor: string } }).getComputedStyle(
          document.querySelector('body'),
        ).backgroundColor,
    );
    await checkState(`12-theme-${theme}`, themed);
    await themed.close();
  }
  expect(backgrounds).toEqual({
    light: 'rgb(232, 232, 232)',
    dark: 'rgb(35, 35, 35)',
    darkest: 'rgb(27, 27, 27)',
  });
});

it('keeps the token for the tab and the history across a reload', async () => {
  await page.reload();
  await page.waitForSelector('#engine-status[data-state="connected"]');
  await page.waitForSelector('#history .history-item');
  expect(await page.textContent('#history')).toContain(PROMPT);

  // A tab opened on the bare address has no token and says how to get one.
  const other = await browser.newPage({ viewport: WIDE });
  await other.goto(`${engine.origin}/`);
  await other.waitForSelector('#engine-status[data-state="no-token"]');
  expect(await other.textContent('#engine-status')).toContain('?token=');
  await checkState('09-token-missing', other);
  await other.close();
});

it('a page from another origin can neither submit a job nor read the API', async () => {
  const jobsBefore = (await listJobs()).length;
  const request = JSON.stringify({
    source: { path: clip, in: 0, out: 1 },
    prompt: 'stolen',
    sourcePrompt: '',
    steps: 1,
  });
  const evil = http.createServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end(`<!doctype html><title>elsewhere</title><pre id="out">running</pre><script>
      const engine = ${JSON.stringify(engine.origin)};
      const body = ${JSON.stringify(request)};
      async function attempt(name, run) {
        try { const res = await run(); let text = null; try { text = await res.text(); } catch (e) {}
          return { name, read: true, type: res.type, status: res.status, text };
        } catch (e) { return { name, read: false, error: String(e) }; }
      }
      (async () => {
        const results = [
          // A "simple" request: no preflight, so it reaches the engine; the Origin check must refuse it.
          await attempt('text/plain', () => fetch(engine + '/v1/jobs', { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body })),
          await attempt('no-cors', () => fetch(engine + '/v1/jobs', { method: 'POST', mode: 'no-cors', headers: { 'Content-Type': 'text/plain' }, body })),
          // JSON, even with the right token, needs a preflight, which the engine refuses.
          await attempt('json+token', () => fetch(engine + '/v1/jobs', { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ${engine.token}' }, body })),
          await attempt('list', () => fetch(engine + '/v1/jobs', { headers: { Authorization: 'Bearer ${engine.token}' } })),
        ];
        document.getElementById('out').textContent = JSON.stringify(results);
      })();
    </script>`);
  });
  await new Promise<void>((r) => evil.listen(0, '127.0.0.1', () => r()));
  try {
    const evilPage = await browser.newPage();
    await evilPage.goto(`http://127.0.0.1:${(evil.address() as AddressInfo).port}/`);
    await evilPage.waitForFunction(() => document.getElementById('out')?.textContent !== 'running');
    const results = JSON.parse((await evilPage.textContent('#out'))!) as {
      name: string;
      read: boolean;
      type?: string;
      status?: number;
      text?: string | null;
      error?: string;
    }[];
    await evilPage.close();
    expect(results.map((r) => r.name)).toEqual(['text/plain', 'no-cors', 'json+token', 'list']);
    for (const r of results) {
      // Either the fetch failed outright (CORS), or it got an opaque response with nothing to read.
      if (r.read) {
        expect(r).toMatchObject({ type: 'opaque', status: 0, text: '' });
      } else {
        expect(r.error).toMatch(/TypeError/);
      }
    }
    expect(results.find((r) => r.name === 'text/plain')!.read).toBe(false);
    expect(results.find((r) => r.name === 'json+token')!.read).toBe(false);
    expect(results.find((r) => r.name === 'list')!.read).toBe(false);
  } finally {
    await new Promise<void>((r) => evil.close(() => r()));
  }
  const after = await listJobs();
  expect(after.length).toBe(jobsBefore);
  expect(after.some((j) => j.request.prompt === 'stolen')).toBe(false);
  expect(engine.stderr.join('')).toMatch(/refused Origin "http:\/\/127\.0\.0\.1:\d+" on POST \/v1\/jobs/);
});

it('in Premiere mode: explains each selection, polls the job, places the result and places it again', async () => {
  // The shared UI mounted as main-uxp.ts mounts it, with a scripted host in place of the Premiere adapter
  // (test/support/premiere-panel.ts).
  const resultsFolder = path.join(home, 'Project', 'Reshoot Renders');
  fs.mkdirSync(resultsFolder, { recursive: true });
  const {
    context: panelContext,
    page: panel,
    requests,
  } = await openPremierePanel(browser, engine, {
    viewport: DOCKED,
    resultsFolder,
    onPageError: (m) => pageErrors.push(`premiere pageerror: ${m}`),
  });
  try {
    await panel.waitForSelector('#engine-status[data-state="connected"]');
    await panel.waitForFunction(() => /Nothing selected/.test(document.querySelector('#clip-card')?.textContent ?? ''));
    expect(await panel.isDisabled('#edit')).toBe(true);
    expect(await panel.$('#source-path')).toBeNull();
    expect(await panel.$('#compare')).toBeNull();
    await checkState('11-premiere-nothing-selected', panel);

    const messages: [Selection, string][] = [
      [{ kind: 'several', count: 3 }, '3 clips selected'],
      [{ kind: 'audio-only' }, 'Audio clip selected'],
      [{ kind: 'no-sequence' }, 'No sequence open'],
      [{ kind: 'no-project' }, 'No project open'],
    ];
    for (const [sel, text] of messages) {
      await panel.evaluate((s) => window.harness.setSelection(s), sel);
      await panel.waitForFunction((t) => (document.querySelector('#clip-card')?.textContent ?? '').includes(t), text);
      expect(await panel.isDisabled('#edit')).toBe(true);
      await checkState(`11-premiere-${sel.kind}`, panel);
    }
    // Disabled the way a widget reads it: by its attribute.
    expect(await panel.getAttribute('#edit', 'disabled')).toBe('');
    await panel.evaluate(() => window.harness.setSelection({ kind: 'several', count: 3 }));
    await panel.waitForFunction(() => /3 clips selected/.test(document.querySelector('#clip-card')?.textContent ?? ''));

    // One clip on V2 at 10 s on the timeline, playing its media from 0 s.
    const clipSel: ClipSelection = {
      kind: 'clip',
      name: 'street.mp4',
      mediaPath: clip,
      sourceIn: 0,
      sourceOut: 1,
      sequenceStart: 10,
      sequenceEnd: 11,
      sequenceStartTicks: String(10n * 254016000000n),
      sequenceEndTicks: String(11n * 254016000000n),
      fps: 24,
      frameWidth: 128,
      frameHeight: 72,
      frames: 24,
      trackIndex: 1,
      renderReason: 'speed 50%',
    };
    await panel.evaluate((s) => window.harness.setSelection(s), clipSel);
    await panel.waitForFunction(() =>
      /Premiere renders this clip first \(speed 50%\)/.test(document.querySelector('#clip-card')?.textContent ?? ''),
    );
    // No preset ships yet: the card says so and the editor picks one saved from Premiere.
    await panel.waitForFunction(() =>
      /^No render preset yet/.test(document.querySelector('#render-preset')?.textContent ?? ''),
    );
    await checkState('11-premiere-render-first', panel);
    await panel.evaluate(() => (window.harness.nextPick = '/Users/editor/Presets/ProRes HQ match.epr'));
    await click('#choose-preset', panel);
    await panel.waitForFunction(
      () => document.querySelector('#render-preset')?.textContent === 'Render preset: ProRes HQ match.epr',
    );
    await panel.evaluate((s) => window.harness.setSelection(s), { ...clipSel, renderReason: null });
    await panel.waitForFunction(() =>
      (document.querySelector('#clip-card')?.textContent ?? '').includes('00:00:10:00 – 00:00:11:00'),
    );
    const card = (await panel.textContent('#clip-card'))!;
    expect(card).toContain('street.mp4');
    expect(card).toContain('V2');
    expect(card).toContain('24 frames');
    expect(card).toContain('source 00:00:00:00 – 00:00:01:00');
    await checkState('11-premiere-clip', panel);

    await panel.fill('#prompt', PROMPT);
    await panel.fill('#source-prompt', SOURCE_PROMPT);
    await click('#advanced-toggle', panel);
    await panel.fill('#steps', '5');
    await panel.fill('#seed', '3');
    // UXP's own Spectrum buttons, in the roles Spectrum gives them; only the panel's toggles stay native buttons.
    const widget = (selector: string) =>
      panel.$eval(selector, (el: PageElement) => ({
        tag: el.tagName.toLowerCase(),
        variant: el.getAttribute('variant'),
        quiet: el.getAttribute('quiet') !== null,
        size: el.getAttribute('size'),
      }));
    expect(await widget('#edit')).toEqual({ tag: 'sp-button', variant: 'cta', quiet: false, size: null });
    expect(await widget('#preview')).toEqual({ tag: 'sp-button', variant: 'secondary', quiet: false, size: null });
    expect(await widget('#seed-dice')).toMatchObject({ tag: 'sp-action-button', size: 's' });
    expect(
      await panel.$$eval('button', (els: PageElement[]) =>
        els
          .filter((b) => !/\b(seg|link|section-toggle|current-job)\b/.test(b.className))
          .map((b) => b.id || b.className),
      ),
    ).toEqual([]);
    await click('#edit', panel);
    await panel.waitForSelector('#jobs article.job');
    const id = (await panel.getAttribute('#jobs article.job', 'data-job-id'))!;
    await expectInView(panel, '#edit');
    await expectInView(panel, `#current-job[data-job-id="${id}"]`);
    expect(await widget(`[data-job-id="${id}"] .job-cancel`)).toEqual({
      tag: 'sp-button',
      variant: 'warning',
      quiet: false,
      size: 's',
    });

    await panel.waitForFunction(
      (jid) => /[1-9]\d*%/.test(document.querySelector(`[data-job-id="${jid}"] .job-pct`)?.textContent ?? ''),
      id,
      { timeout: 30_000 },
    );
    await panel.$eval('.jobs', (el: PageElement) => el.scrollIntoView());
    await checkState('11b-premiere-running', panel);

    // Done: placed by itself, above the original, labelled with the prompt.
    await panel.waitForSelector(`[data-job-id="${id}"] .job-note.ok`, { timeout: 60_000 });
    expect(await panel.textContent(`[data-job-id="${id}"] .job-note`)).toBe('Placed on V3');
    const first = await panel.evaluate(() => window.harness.placed);
    expect(first).toHaveLength(1);
    expect(first[0].label).toBe(`Reshoot: ${PROMPT}`);
    expect(first[0].sel).toEqual({
      sequenceStartTicks: clipSel.sequenceStartTicks,
      sequenceEndTicks: clipSel.sequenceEndTicks,
      trackIndex: 1,
      name: 'street.mp4',
    });
    expect(path.dirname(first[0].resultPath)).toBe(resultsFolder);
    expect(fs.existsSync(first[0].resultPath)).toBe(true);
    const job = await getJob(id);
    expect(job.request.output?.folder).toBe(resultsFolder);
    // UXP has no EventSource: the panel polled the job instead of opening its event stream.
    expect(requests.some((r) => r.endsWith('/events'))).toBe(false);
    expect(requests.filter((r) => r === `/v1/jobs/${id}`).length).toBeGreaterThan(2);

    // "Place again" from the history reuses the clip's range and track.
    await click(`#history [data-job-id="${id}"] .history-place`, panel);
    await panel.waitForFunction(
      (jid) =>
        /new track, V4/.test(
          document.querySelector(`#history [data-job-id="${jid}"] .history-status`)?.textContent ?? '',
        ),
      id,
    );
    const again = await panel.evaluate(() => window.harness.placed);
    expect(again).toHaveLength(2);
    expect(again[1].sel).toEqual(again[0].sel);
    expect(again[1].resultPath).toBe(first[0].resultPath);
    expect((await panel.evaluate(() => window.harness.history))[0]).toMatchObject({
      jobId: id,
      prompt: PROMPT,
      seed: 3,
      clipName: 'street.mp4',
      settings: { steps: 5, method: 'inversion' },
    });
    await expectInView(panel, '#edit');
    await panel.$eval('.jobs', (el: PageElement) => el.scrollIntoView());
    await checkState('11c-premiere-placed', panel);
    await panel.evaluate(() => window.scrollTo(0, 0));
    await checkState('11d-premiere-top', panel);
  } finally {
    await panelContext.close();
  }
});

it('says how to start the engine when it is not running, and reconnects by itself', async () => {
  engine.proc.kill('SIGTERM');
  await stopped(engine.proc);
  await page.waitForSelector('#engine-status[data-state="not-running"]', { timeout: 15_000 });
  expect(await page.textContent('#engine-status')).toContain('npx reshoot serve');
  expect(await page.isDisabled('#edit')).toBe(true);
  await page.evaluate(() => window.scrollTo(0, 0));
  await checkState('10-engine-not-running');

  // Same home (same token) and same port: the page finds it again without a reload.
  engine = await startEngine(Number(new URL(engine.origin).port));
  await page.waitForSelector('#engine-status[data-state="connected"]', { timeout: 15_000 });
  await page.fill('#source-path', clip);
  await click('#probe');
  await page.waitForSelector('#edit:not([disabled])');
  await expectInViewDocked(page, '#edit');
  await checkState('10b-engine-back');
  expect(pageErrors).toEqual([]);
});
